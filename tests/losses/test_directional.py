"""The directional batch-hard triplet ``T(A->B)`` (spec/losses/mdl.md), the term MDL and MML
share: the loop oracle of ``test_mdl.py``, and the fast path against the plain formula."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.losses.directional import directional_triplet
from reference.losses.mdl import ALL_DIRECTIONS
from reference.losses.triplet import batch_hard_triplet
from tests.losses.test_mdl import FOUR, _on, oracle_direction
from tests.strategies import feature_batches


def test_directional_triplet_is_one_term(device):
    gen = torch.Generator().manual_seed(3)
    y = torch.arange(3).repeat_interleave(2).repeat(4).to(device)
    m = torch.arange(4).repeat_interleave(6).to(device)
    x = torch.randn(24, 5, generator=gen, dtype=torch.float64).to(device)
    for a, b in (*ALL_DIRECTIONS, (0, 0), (3, 3)):
        got = directional_triplet(x, y, m, (a, b))
        assert float(got) == pytest.approx(oracle_direction(x, y, m, a, b), rel=1e-12)


@given(
    feature_batches(modalities=FOUR),
    st.sampled_from((*ALL_DIRECTIONS, (0, 0), (1, 1), (2, 2), (3, 3))),
    st.sampled_from(["euclidean", "cosine"]),
    st.booleans(),
)
def test_same_value_as_batch_hard_triplet_with_masks(device, batch, direction, metric, soft):
    """T(A->B) is the shared batch-hard triplet restricted by anchor and candidate masks."""
    a, b = direction
    assume(a != b or batch.k > 1)  # else no positive: one raises, the other returns 0
    x, y, m = _on(batch, device)
    got = directional_triplet(x, y, m, direction, metric=metric, soft_margin=soft)
    want = batch_hard_triplet(
        x, y, metric=metric, soft_margin=soft, anchors=m == a, candidates=m == b
    )
    assert float(got) == pytest.approx(float(want), rel=1e-12, abs=1e-12)


def test_missing_modality_message_names_the_term_and_every_present_modality(device):
    # V has 2 rows, I only one, DV none: the message lists V and I and names the term
    x = torch.zeros(3, 2, device=device)
    y = torch.tensor([0, 1, 0], device=device)
    m = torch.tensor([0, 0, 1], device=device)
    with pytest.raises(VireidError) as info:
        directional_triplet(x, y, m, (0, 2))
    assert str(info.value) == (
        "modality: direction V->DV needs rows of modality DV (2); the batch has V, I"
    )
    with pytest.raises(VireidError) as info:
        directional_triplet(x, y, m, (0, 2), what="MDL direction V->DV")
    assert str(info.value).startswith("modality: MDL direction V->DV needs rows of modality DV")
