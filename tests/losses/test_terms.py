from __future__ import annotations

import pytest
import torch

from reference.errors import VireidError
from reference.losses.terms import LossTerms


def test_total_is_weighted_sum_and_terms_stay_unweighted(device):
    a = torch.tensor(2.0, device=device, requires_grad=True)
    b = torch.tensor(3.0, device=device)
    terms = LossTerms(terms={"id": a, "tri": b}, weights={"id": 0.5, "tri": 2.0})
    assert float(terms.total.detach()) == pytest.approx(0.5 * 2.0 + 2.0 * 3.0)
    assert terms.as_floats() == {"id": 2.0, "tri": 3.0, "total": 7.0}
    terms.total.backward()
    assert float(a.grad) == 0.5


def test_mismatched_names_and_shapes():
    with pytest.raises(VireidError, match="terms and weights must name the same losses"):
        LossTerms(terms={"id": torch.tensor(1.0)}, weights={"tri": 1.0})
    with pytest.raises(VireidError, match=r"terms\['id'\]: expected a scalar tensor"):
        LossTerms(terms={"id": torch.ones(2)}, weights={"id": 1.0})
    with pytest.raises(VireidError, match="at least one term"):
        LossTerms(terms={}, weights={})
