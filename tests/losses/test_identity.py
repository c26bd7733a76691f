"""identity_loss against a float64 loop oracle written from spec/losses/identity.md."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.losses.identity import IdentityLoss, identity_loss

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}


def oracle(logits, labels, epsilon):
    """Loop over rows and classes in float64: mean_i -sum_c q_ic log softmax(z_i)_c."""
    z = logits.detach().cpu().double().tolist()
    y = labels.cpu().tolist()
    total = 0.0
    for row, label in zip(z, y, strict=True):
        c = len(row)
        top = max(row)
        log_norm = top + math.log(sum(math.exp(v - top) for v in row))
        for k, v in enumerate(row):
            q = (1.0 - epsilon) * (k == label) + epsilon / c
            total -= q * (v - log_norm)
    return total / len(z)


@st.composite
def problems(draw, max_n=8, max_c=6):
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(1, max_c))
    seed = draw(st.integers(0, 2**32 - 1))
    gen = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([0.0, 1.0, 10.0, 50.0]))
    logits = torch.randn(n, c, generator=gen, dtype=torch.float64) * scale
    labels = torch.randint(0, c, (n,), generator=gen)
    return logits, labels


epsilons = st.sampled_from([0.0, 0.1, 0.5, 0.99])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(problem=problems(), epsilon=epsilons)
def test_matches_oracle(device, dtype, problem, epsilon):
    logits, labels = problem
    logits = logits.to(device, dtype)
    got = identity_loss(logits, labels.to(device), epsilon=epsilon)
    assert got.dim() == 0 and got.dtype == dtype
    want = torch.tensor(oracle(logits, labels, epsilon), dtype=torch.float64)
    torch.testing.assert_close(got.cpu().double(), want, **TOL[dtype])


@given(problem=problems(), epsilon=epsilons)
def test_gradient_is_softmax_minus_target(device, problem, epsilon):
    logits, labels = problem
    z = logits.to(device).requires_grad_(True)
    identity_loss(z, labels.to(device), epsilon=epsilon).backward()
    n, c = logits.shape
    target = torch.full((n, c), epsilon / c, dtype=torch.float64)
    target[torch.arange(n), labels] += 1.0 - epsilon
    want = (torch.softmax(logits, dim=1) - target) / n
    torch.testing.assert_close(z.grad.cpu(), want, rtol=1e-10, atol=1e-12)


@given(problem=problems(), epsilon=epsilons, shift=st.floats(-100, 100), seed=st.integers(0, 99))
def test_row_shift_and_order_invariance(device, problem, epsilon, shift, seed):
    logits, labels = problem
    logits, labels = logits.to(device), labels.to(device)
    base = identity_loss(logits, labels, epsilon=epsilon)
    shifts = torch.linspace(-shift, shift, logits.shape[0], dtype=logits.dtype, device=device)
    torch.testing.assert_close(
        identity_loss(logits + shifts[:, None], labels, epsilon=epsilon), base, rtol=1e-9, atol=1e-9
    )
    order = torch.randperm(logits.shape[0], generator=torch.Generator().manual_seed(seed))
    order = order.to(device)
    torch.testing.assert_close(
        identity_loss(logits[order], labels[order], epsilon=epsilon), base, rtol=1e-12, atol=1e-12
    )


@given(problem=problems(), epsilon=epsilons)
def test_bounded_below_by_target_entropy(device, problem, epsilon):
    # Gibbs: -sum q log p >= -sum q log q, with equality at p = q
    logits, labels = problem
    n, c = logits.shape
    q_true, q_other = 1.0 - epsilon + epsilon / c, epsilon / c
    entropy = -(
        q_true * math.log(q_true) + ((c - 1) * q_other * math.log(q_other) if q_other else 0)
    )
    loss = identity_loss(logits.to(device), labels.to(device), epsilon=epsilon).item()
    assert loss >= entropy - 1e-12
    if 0 < epsilon and c > 1:
        at_target = torch.full((n, c), math.log(q_other), dtype=torch.float64)
        at_target[torch.arange(n), labels] = math.log(q_true)
        got = identity_loss(at_target.to(device), labels.to(device), epsilon=epsilon).item()
        assert math.isclose(got, entropy, rel_tol=1e-12, abs_tol=1e-12)


def test_confident_correct_logits_give_zero_without_smoothing(device):
    logits = torch.tensor([[100.0, 0.0], [0.0, 100.0]], dtype=torch.float64, device=device)
    labels = torch.tensor([0, 1], device=device)
    assert identity_loss(logits, labels).item() < 1e-40
    # with smoothing the loss cannot reach zero: the target keeps eps / C on the wrong class
    assert identity_loss(logits, labels, epsilon=0.1).item() > 4.9


def test_uniform_logits_give_log_c(device):
    for epsilon in (0.0, 0.1):
        loss = identity_loss(
            torch.zeros(3, 7, device=device),
            torch.tensor([0, 3, 6], device=device),
            epsilon=epsilon,
        )
        assert math.isclose(loss.item(), math.log(7), rel_tol=1e-6)


def test_low_precision_close_to_float32(device):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(16, 10, generator=gen) * 3).to(device)
    labels = torch.randint(0, 10, (16,), generator=gen).to(device)
    ref = identity_loss(logits, labels, epsilon=0.1)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        auto = identity_loss(logits, labels, epsilon=0.1)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, ref)
    for low in (torch.float16, torch.bfloat16):
        got = identity_loss(logits.to(low), labels, epsilon=0.1)
        assert got.dtype == torch.float32
        # logits rounded to `low` change each log-probability by about |z| * eps(low)
        tol = 4 * float(logits.abs().max()) * torch.finfo(low).eps
        torch.testing.assert_close(got, ref, rtol=0, atol=tol)


def test_module_matches_function(device):
    logits = torch.randn(4, 3, device=device)
    labels = torch.tensor([0, 1, 2, 0], device=device)
    module = IdentityLoss(0.1)
    assert repr(module) == "IdentityLoss(epsilon=0.1)"
    torch.testing.assert_close(module(logits, labels), identity_loss(logits, labels, epsilon=0.1))


@pytest.mark.parametrize(
    ("logits", "labels", "epsilon", "message"),
    [
        (
            torch.zeros(3, 2),
            torch.tensor([0, 1]),
            0.0,
            "labels: expected shape (3,) to match logits, got (2,)",
        ),
        (
            torch.zeros(2, 3),
            torch.tensor([0, 3]),
            0.0,
            "labels: expected class indices in 0..2 (logits have 3 columns), got [3]",
        ),
        (
            torch.zeros(2, 3),
            torch.tensor([-1, 5]),
            0.0,
            "labels: expected class indices in 0..2 (logits have 3 columns), got [-1, 5]",
        ),
        (
            torch.zeros(2, 3),
            torch.tensor([0.0, 1.0]),
            0.0,
            "labels: expected an integer tensor, got dtype torch.float32",
        ),
        (
            torch.tensor([[0.0, float("nan")]]),
            torch.tensor([0]),
            0.0,
            "logits: expected finite values, found NaN or inf (first in row 0)",
        ),
        # finiteness is read off the sum of the log-probabilities: a -inf logit away from the
        # label leaves the unsmoothed loss finite and must still be refused, as must +inf
        (
            torch.tensor([[0.0, 1.0], [0.0, -float("inf")]]),
            torch.tensor([0, 0]),
            0.0,
            "logits: expected finite values, found NaN or inf (first in row 1)",
        ),
        (
            torch.tensor([[0.0, 1.0], [2.0, 3.0], [float("inf"), 0.0]]),
            torch.tensor([0, 1, 1]),
            0.1,
            "logits: expected finite values, found NaN or inf (first in row 2)",
        ),
        (
            torch.zeros(0, 3),
            torch.zeros(0, dtype=torch.int64),
            0.0,
            "logits: expected at least one row, got shape (0, 3)",
        ),
        (
            torch.zeros(3),
            torch.tensor([0, 1, 2]),
            0.0,
            "logits: expected shape (n, d) with d >= 1, got (3,)",
        ),
        (
            torch.zeros(2, 3),
            torch.tensor([0, 1]),
            1.0,
            "epsilon: expected a label-smoothing weight in [0, 1), got 1.0",
        ),
        (
            torch.zeros(2, 3),
            torch.tensor([0, 1]),
            -0.1,
            "epsilon: expected a label-smoothing weight in [0, 1), got -0.1",
        ),
    ],
)
def test_bad_input(device, logits, labels, epsilon, message):
    with pytest.raises(VireidError) as info:
        identity_loss(logits.to(device), labels.to(device), epsilon=epsilon)
    assert str(info.value) == message


def test_labels_are_checked_before_the_finiteness_of_the_logits(device):
    # identity_loss reads the logits' finiteness in the forward pass, after every label check:
    # a batch with both faults names the labels
    logits = torch.tensor([[0.0, float("nan")], [1.0, 2.0]], device=device)
    with pytest.raises(VireidError) as info:
        identity_loss(logits, torch.tensor([0, 2], device=device))
    assert str(info.value) == (
        "labels: expected class indices in 0..1 (logits have 2 columns), got [2]"
    )


def test_module_default_is_no_label_smoothing():
    assert repr(IdentityLoss()) == "IdentityLoss(epsilon=0.0)"
