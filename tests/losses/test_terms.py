from __future__ import annotations

import inspect

import pytest
import torch

from reference.errors import VireidError
from reference.losses.terms import LossTerms, loss_of_terms


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


def test_loss_of_terms_reduces_and_says_its_options(device):
    calls = []

    def parts_terms(x, y, *, scale: float = 2.0):
        calls.append(scale)
        return {"a": x * scale, "b": y * scale}

    loss = loss_of_terms(parts_terms, "parts_loss", "the parts")
    x, y = torch.tensor(1.0, device=device), torch.tensor(4.0, device=device)
    assert float(loss(x, y)) == 5.0  # mean of 2 and 8
    assert float(loss(x, y, scale=1.0, reduction="sum")) == 5.0
    params = inspect.signature(loss).parameters
    assert list(params) == ["x", "y", "scale", "reduction"]
    assert params["reduction"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["reduction"].default == "mean"
    assert (loss.__name__, loss.__doc__, loss.__module__) == ("parts_loss", "the parts", __name__)
    calls.clear()
    with pytest.raises(VireidError, match=r"^reduction: expected 'mean' or 'sum', got 'max'$"):
        loss(x, y, reduction="max")
    assert calls == []  # checked before the terms are computed


def test_loss_of_terms_with_its_own_reductions(device):
    seen = []

    def parts_terms(x, y, *, scale: float = 2.0):
        return {"a": x * scale, "b": y * scale}

    def first(x, y, scale):
        seen.append(("first", scale))
        return x * scale

    def largest(**arguments):
        seen.append(("largest", sorted(arguments)))
        return torch.stack(list(parts_terms(**arguments).values())).max()

    loss = loss_of_terms(parts_terms, "parts_loss", "doc", {"first": first, "largest": largest})
    x, y = torch.tensor(1.0, device=device), torch.tensor(4.0, device=device)
    assert float(loss(x, y)) == 2.0 and seen == [("first", 2.0)]  # the first is the default
    assert float(loss(x, y=y, reduction="largest", scale=0.5)) == 2.0
    assert seen[-1] == ("largest", ["scale", "x", "y"])  # by name, defaults filled in
    params = inspect.signature(loss).parameters
    assert list(params) == ["x", "y", "scale", "reduction"]
    assert params["reduction"].default == "first"
    seen.clear()
    with pytest.raises(
        VireidError, match=r"^reduction: expected 'first' or 'largest', got 'mean'$"
    ):
        loss(x, y, reduction="mean")
    assert seen == []


def test_loss_terms_are_frozen():
    import dataclasses

    terms = LossTerms(terms={"id": torch.tensor(1.0)}, weights={"id": 1.0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        terms.weights = {}  # type: ignore[misc]
