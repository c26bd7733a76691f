"""batch_hard_triplet against a float64 loop oracle written from spec/losses/triplet.md."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.losses.triplet import BatchHardTriplet, batch_hard_triplet
from tests.strategies import feature_batches

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-5)}


def dist(a, b, metric):
    if metric == "euclidean":
        return math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b, strict=True)))
    na = max(math.sqrt(sum(u * u for u in a)), 1e-12)
    nb = max(math.sqrt(sum(v * v for v in b)), 1e-12)
    return min(max(1.0 - sum(u * v for u, v in zip(a, b, strict=True)) / (na * nb), 0.0), 2.0)


def oracle(features, labels, *, margin, soft_margin, metric, anchors=None, candidates=None):
    """Loop over every anchor, then over every other row, in float64. Returns (loss, n_valid)."""
    f = features.detach().cpu().double().tolist()
    y = labels.cpu().tolist()
    n = len(f)
    anchors = [True] * n if anchors is None else anchors.cpu().tolist()
    candidates = [True] * n if candidates is None else candidates.cpu().tolist()
    losses = []
    for i in range(n):
        if not anchors[i]:
            continue
        pos = [
            dist(f[i], f[j], metric) for j in range(n) if candidates[j] and j != i and y[j] == y[i]
        ]
        neg = [dist(f[i], f[j], metric) for j in range(n) if candidates[j] and y[j] != y[i]]
        if not pos or not neg:
            continue
        x = max(pos) - min(neg)
        losses.append(math.log1p(math.exp(x)) if soft_margin else max(0.0, margin + x))
    return (sum(losses) / len(losses) if losses else 0.0), len(losses)


settings_st = st.fixed_dictionaries(
    {
        "margin": st.sampled_from([0.0, 0.3, 1.0]),
        "soft_margin": st.booleans(),
        "metric": st.sampled_from(["euclidean", "cosine"]),
    }
)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(
    batch=feature_batches(max_k=3, uneven=None), cfg=settings_st, masks=st.integers(0, 2**32 - 1)
)
def test_matches_oracle(device, dtype, batch, cfg, masks):
    f = batch.features.to(device, dtype)
    labels = batch.labels.to(device)
    gen = torch.Generator().manual_seed(masks)
    n = f.shape[0]
    anchors = candidates = None
    if masks % 3:
        anchors = (torch.rand(n, generator=gen) < 0.7).to(device)
        candidates = (torch.rand(n, generator=gen) < 0.8).to(device)
    got = batch_hard_triplet(f, labels, anchors=anchors, candidates=candidates, **cfg)
    want, _ = oracle(f, labels, anchors=anchors, candidates=candidates, **cfg)
    assert got.dim() == 0 and got.dtype == dtype
    torch.testing.assert_close(
        got.cpu().double(), torch.tensor(want, dtype=torch.float64), **TOL[dtype]
    )


@given(batch=feature_batches(uneven=None), cfg=settings_st, seed=st.integers(0, 2**32 - 1))
def test_invariant_to_batch_order(device, batch, cfg, seed):
    f, labels = batch.features.to(device), batch.labels.to(device)
    anchors = (batch.modality == 0).to(device)
    candidates = (batch.modality == 1).to(device)
    order = torch.randperm(f.shape[0], generator=torch.Generator().manual_seed(seed)).to(device)
    a = batch_hard_triplet(f, labels, anchors=anchors, candidates=candidates, **cfg)
    b = batch_hard_triplet(
        f[order], labels[order], anchors=anchors[order], candidates=candidates[order], **cfg
    )
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@given(batch=feature_batches(), soft=st.booleans(), shift=st.floats(-50, 50))
def test_euclidean_translation_invariant(device, batch, soft, shift):
    f, labels = batch.features.to(device), batch.labels.to(device)
    a = batch_hard_triplet(f, labels, soft_margin=soft)
    b = batch_hard_triplet(f + shift, labels, soft_margin=soft)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * (1 + abs(shift)))


@given(batch=feature_batches(), margin=st.floats(0, 2), scale=st.floats(0.01, 100))
def test_scale_behaviour(device, batch, margin, scale):
    f, labels = batch.features.to(device), batch.labels.to(device)
    # Euclidean hinge is positively homogeneous in (features, margin) jointly
    a = batch_hard_triplet(f * scale, labels, margin=margin * scale)
    b = batch_hard_triplet(f, labels, margin=margin) * scale
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # cosine ignores the length of each row
    scales = torch.linspace(1.0, scale, f.shape[0], dtype=f.dtype, device=device)[:, None]
    a = batch_hard_triplet(f * scales, labels, margin=margin, metric="cosine")
    b = batch_hard_triplet(f, labels, margin=margin, metric="cosine")
    torch.testing.assert_close(a, b)


@given(batch=feature_batches(max_k=3), margin=st.floats(0.0, 1.0))
def test_zero_when_separated_by_more_than_margin(device, batch, margin):
    # clusters of radius <= 0.5 around centres 10 apart per identity: d_an - d_ap > 8 > margin
    f = torch.tanh(batch.features) * 0.5 / math.sqrt(batch.features.shape[1])
    f[:, 0] += 10.0 * batch.labels.double()
    f, labels = f.to(device).requires_grad_(True), batch.labels.to(device)
    loss = batch_hard_triplet(f, labels, margin=margin)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(f.grad, torch.zeros_like(f.grad))


@given(batch=feature_batches(min_p=2, max_k=3), margin=st.floats(0.01, 1.0))
def test_positive_when_overlapping(device, batch, margin):
    # put the first identity on top of the second: a negative at distance 0 from some anchors
    f, labels = batch.features.clone(), batch.labels
    f[labels == 0] = f[labels == 1][: int((labels == 0).sum())]
    f, labels = f.to(device), labels.to(device)
    # every identity has >= 2 rows (two modalities), so each anchor of identity 0 is valid and
    # has a negative at distance 0: its term is >= margin
    loss = batch_hard_triplet(f, labels, margin=margin)
    assert loss.item() >= margin * int((labels == 0).sum()) / labels.numel() - 1e-12


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("soft", [False, True])
@given(batch=feature_batches(identical=True))
def test_identical_features(device, metric, soft, batch):
    f = batch.features.to(device).requires_grad_(True)
    loss = batch_hard_triplet(f, batch.labels.to(device), metric=metric, soft_margin=soft)
    # every distance is 0: each anchor contributes margin (hinge) or log 2 (soft)
    want = math.log(2.0) if soft else 0.3
    torch.testing.assert_close(loss.item(), want, rtol=1e-12, atol=1e-12)
    loss.backward()
    assert torch.isfinite(f.grad).all()


@given(batch=feature_batches(), cfg=settings_st)
def test_finite_gradients(device, batch, cfg):
    f = batch.features.to(device).requires_grad_(True)
    batch_hard_triplet(f, batch.labels.to(device), **cfg).backward()
    assert torch.isfinite(f.grad).all()


def test_gradient_matches_finite_differences(device):
    gen = torch.Generator().manual_seed(3)
    f = torch.randn(12, 5, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    labels = torch.arange(4).repeat_interleave(3).to(device)
    for metric in ("euclidean", "cosine"):
        for soft in (False, True):
            assert torch.autograd.gradcheck(
                lambda x, m=metric, s=soft: batch_hard_triplet(
                    x, labels, metric=m, soft_margin=s, margin=5.0
                ),
                (f,),
            )


def test_no_valid_anchor_is_a_connected_zero(device):
    f = torch.randn(4, 3, device=device, requires_grad=True)
    cases = [
        dict(labels=torch.arange(4)),  # no positives at all (K = 1)
        dict(labels=torch.tensor([0, 0, 1, 1]), anchors=torch.zeros(4, dtype=torch.bool)),
        dict(labels=torch.tensor([0, 0, 1, 1]), candidates=torch.tensor([1, 0, 0, 0]).bool()),
    ]
    for case in cases:
        case = {k: v.to(device) for k, v in case.items()}
        loss = batch_hard_triplet(f, **case)
        assert loss.item() == 0.0 and loss.requires_grad
        (grad,) = torch.autograd.grad(loss, f)
        assert torch.equal(grad, torch.zeros_like(grad))


def test_positive_is_never_the_anchor_itself(device):
    # anchor 0 has no other row of its identity: it is skipped, not paired with itself
    f = torch.tensor([[0.0], [5.0], [5.1], [0.05]], device=device)
    labels = torch.tensor([0, 1, 1, 2], device=device)
    got = batch_hard_triplet(f, labels, margin=1.0)
    # only anchors 1 and 2 are valid: 1 + 0.1 - 4.95 < 0 and 1 + 0.1 - 5.05 < 0
    assert got.item() == 0.0
    got = batch_hard_triplet(f, labels, margin=5.0)
    torch.testing.assert_close(
        got.item(), ((5 + 0.1 - 4.95) + (5 + 0.1 - 5.05)) / 2, atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_low_precision_close_to_float32(device, metric):
    gen = torch.Generator().manual_seed(7)
    f = torch.randn(24, 32, generator=gen).to(device)
    labels = torch.arange(6).repeat(4).to(device)
    ref = batch_hard_triplet(f, labels, metric=metric)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        auto = batch_hard_triplet(f, labels, metric=metric)
    # inputs are not rounded under autocast (no matmul before the loss): float32 result
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, ref)
    for low in (torch.float16, torch.bfloat16):
        got = batch_hard_triplet(f.to(low), labels, metric=metric)
        assert got.dtype == torch.float32
        # only the inputs are rounded to `low` (relative 2^-11 / 2^-8); computed in float32
        tol = 8 * torch.finfo(low).eps
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)


def test_module_matches_function(device):
    gen = torch.Generator().manual_seed(5)
    f = torch.randn(8, 4, generator=gen).to(device)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3], device=device)
    module = BatchHardTriplet(0.5, soft_margin=False, metric="cosine")
    assert "margin=0.5" in repr(module)
    anchors = torch.arange(8, device=device) % 2 == 0
    torch.testing.assert_close(
        module(f, labels, anchors=anchors),
        batch_hard_triplet(f, labels, margin=0.5, metric="cosine", anchors=anchors),
    )
    # the module's defaults are the function's (margin 0.3, hard margin, euclidean)
    f = f * 0.05  # small distances: the margin decides the value
    torch.testing.assert_close(BatchHardTriplet()(f, labels), batch_hard_triplet(f, labels))


def _bad(device, **kw):
    args = dict(
        features=torch.zeros(4, 2), labels=torch.tensor([0, 0, 1, 1]), anchors=None, candidates=None
    )
    args.update(kw)
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in args.items()}


@pytest.mark.parametrize(
    ("kwargs", "options", "message"),
    [
        (
            dict(labels=torch.tensor([0, 0, 1])),
            {},
            "labels: expected shape (4,) to match features, got (3,)",
        ),
        (
            dict(labels=torch.tensor([0.0, 0, 1, 1])),
            {},
            "labels: expected an integer tensor, got dtype torch.float32",
        ),
        (
            dict(labels=torch.tensor([2, 2, 2, 2])),
            {},
            "labels: expected at least 2 identities in the batch, got 1 (label 2)",
        ),
        (
            dict(features=torch.tensor([[0.0, 1], [2, 3], [float("nan"), 0], [1, 1]])),
            {},
            "features: expected finite values, found NaN or inf (first in row 2)",
        ),
        (
            dict(features=torch.zeros(4)),
            {},
            "features: expected shape (n, d) with d >= 1, got (4,)",
        ),
        (
            dict(anchors=torch.tensor([1, 0, 1, 0])),
            {},
            "anchors: expected a bool tensor, got torch.int64",
        ),
        (
            dict(candidates=torch.ones(5, dtype=torch.bool)),
            {},
            "candidates: expected shape (4,) to match features, got (5,)",
        ),
        ({}, {"margin": -0.1}, "margin: expected a finite number >= 0, got -0.1"),
        ({}, {"metric": "manhattan"}, "metric: expected 'euclidean' or 'cosine', got 'manhattan'"),
    ],
)
def test_bad_input(device, kwargs, options, message):
    with pytest.raises(VireidError) as info:
        batch_hard_triplet(**_bad(device, **kwargs), **options)
    assert str(info.value) == message


def test_module_bad_config():
    with pytest.raises(VireidError, match=r"^margin: expected a finite number >= 0, got nan$"):
        BatchHardTriplet(float("nan"))
