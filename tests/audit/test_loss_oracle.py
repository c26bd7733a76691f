"""The float64 loop oracles of the loss audit, on cases computed by hand and against the
reference losses on generated batches."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.audit.loss_audit import LOSSES, build_batch, oracle_value, reference_value
from reference.audit.loss_oracle import LossChoices, distance, hetero_center, identity, triplet


def test_triplet_on_a_line():
    # rows 0, 1 (label 0) at 0 and 1; rows 2, 3 (label 1) at 3 and 5
    x = torch.tensor([[0.0], [1.0], [3.0], [5.0]], dtype=torch.float64)
    y = [0, 0, 1, 1]
    # anchors: 0: max(0.3 + 1 - 3) = 0; 1: 0.3 + 1 - 2 = 0 (relu); 2: 0.3 + 2 - 2 = 0.3;
    # 3: 0.3 + 2 - 4 = 0 -> mean 0.075
    assert triplet(x, y, None, LossChoices()).item() == pytest.approx(0.075, abs=1e-15)
    assert triplet(x, y, None, LossChoices(reduction="sum")).item() == pytest.approx(0.3)
    # squared: anchor 2: 0.3 + 4 - 4 = 0.3; anchor 1: 0.3 + 1 - 4 < 0; anchor 3: 0.3 + 4 - 16
    assert triplet(x, y, None, LossChoices(distance="squared")).item() == pytest.approx(0.075)
    # outside: relu(gap) + 0.3 per anchor: anchors' gaps -2, -1, 0, -2 -> 0.3 each
    assert triplet(x, y, None, LossChoices(margin="outside")).item() == pytest.approx(0.3)


def test_distance_has_a_zero_gradient_at_zero():
    a = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    distance(a, torch.zeros(3, dtype=torch.float64), squared=False).backward()
    assert a.grad.tolist() == [0.0, 0.0, 0.0]


def test_hetero_center_by_hand():
    # identity 0: V at 0, I at 1; identity 1: V at 4, I at 4.5 (1-d)
    x = torch.tensor([[0.0], [1.0], [4.0], [4.5]], dtype=torch.float64)
    value = hetero_center(x, [0, 0, 1, 1], [0, 1, 0, 1], LossChoices()).item()
    # centers: (0,V)=0: 0.3 + 1 - 4 <0; (0,I)=1: 0.3 + 1 - 3 < 0; (1,V)=4: 0.3 + 0.5 - 3 < 0;
    # (1,I)=4.5: 0.3 + 0.5 - 3.5 < 0 -> 0
    assert value == 0.0


def test_identity_is_the_cross_entropy():
    z = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    expected = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.e / (1 + math.e))) / 2
    assert identity(z, [0, 1], None, LossChoices()).item() == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("loss", sorted(LOSSES))
@given(
    p=st.integers(2, 3),
    k=st.integers(2, 2),
    seed=st.integers(0, 2**32 - 1),
    order=st.sampled_from(["canonical", "shuffled"]),
)
def test_oracle_agrees_with_the_reference(loss, p, k, seed, order):
    info = LOSSES[loss]
    batch = build_batch(info, "tags", p, k, 3, 1.0, seed, order)
    ref_value, ref_grad = reference_value(info, batch)
    value, grad = oracle_value(info, batch, LossChoices())
    assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-12)
    assert grad == pytest.approx(ref_grad, rel=1e-10, abs=1e-12)
