"""pairwise_distances against a float64 loop oracle written from spec/losses/distances.md."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.losses.distances import (
    COSINE_EPS,
    NEAR,
    check_features,
    paired_distances,
    paired_distances_plain,
    paired_unchecked,
    pairwise_distances,
    row_difference_distances,
)
from tests.strategies import feature_batches

# float64: a few ulps of the distance; float32: the same in float32 ulps (no expansion, so no
# sqrt(eps) cancellation term).
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}


def oracle(x, y, metric):
    """Plain loops in float64 over every (i, j) pair."""
    x = x.detach().cpu().double().tolist()
    y = x if y is None else y.detach().cpu().double().tolist()
    out = torch.zeros(len(x), len(y), dtype=torch.float64)
    for i, a in enumerate(x):
        for j, b in enumerate(y):
            if metric == "euclidean":
                out[i, j] = math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b, strict=True)))
            else:
                na = max(math.sqrt(sum(u * u for u in a)), COSINE_EPS)
                nb = max(math.sqrt(sum(v * v for v in b)), COSINE_EPS)
                cos = sum(u * v for u, v in zip(a, b, strict=True)) / (na * nb)
                out[i, j] = min(max(1.0 - cos, 0.0), 2.0)
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@given(batch=feature_batches(), split=st.integers(0, 100))
def test_matches_oracle(device, dtype, metric, batch, split):
    f = batch.features.to(device, dtype)
    cut = split % (f.shape[0] + 1)
    x, y = f[:cut], f[cut:]
    got = pairwise_distances(x, y, metric=metric)
    assert got.shape == (x.shape[0], y.shape[0]) and got.dtype == dtype
    torch.testing.assert_close(got.cpu().double(), oracle(x, y, metric), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(
    seed=st.integers(0, 2**32 - 1),
    offset=st.sampled_from([0.0, 1.0, 1e3]),
    gap=st.sampled_from([0.0, 1e-6, 1e-3, 1.0]),
    d=st.integers(1, 64),
)
def test_relative_accuracy_near_duplicates(device, dtype, seed, offset, gap, d):
    # pairs of rows (v, v + gap * noise) far from the origin: the expansion alone would cancel
    # catastrophically; every entry must keep a small *relative* error
    gen = torch.Generator().manual_seed(seed)
    base = offset + torch.randn(6, d, generator=gen, dtype=torch.float64) * 10
    near = base + gap * torch.randn(6, d, generator=gen, dtype=torch.float64)
    x = torch.cat([base, near]).to(dtype)
    want = oracle(x, x, "euclidean")
    got = pairwise_distances(x.to(device)).cpu().double()
    rtol = 1e-12 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(got, want, rtol=rtol, atol=0.0)
    got = pairwise_distances(x[:6].to(device), x[6:].to(device)).cpu().double()
    torch.testing.assert_close(got, want[:6, 6:], rtol=rtol, atol=0.0)


def test_near_duplicate_gradient_matches_finite_differences(device):
    gen = torch.Generator().manual_seed(2)
    base = 100.0 + torch.randn(3, 4, generator=gen, dtype=torch.float64)
    x = torch.cat([base, base + 1e-4 * torch.randn(3, 4, generator=gen, dtype=torch.float64)])
    x = x.to(device).requires_grad_(True)
    # off-diagonal entries only: the diagonal is a 0 with a subgradient, not differentiable
    off = ~torch.eye(6, dtype=torch.bool, device=device)
    assert torch.autograd.gradcheck(lambda a: pairwise_distances(a)[off], (x,), eps=1e-7)


@given(batch=feature_batches(), shift=st.floats(-10, 10))
def test_paired_distances(device, batch, shift):
    x = batch.features.to(device).requires_grad_(True)
    y = torch.flip(batch.features, dims=[0]).to(device) + shift
    got = paired_distances(x, y)
    want = oracle(x, y, "euclidean").diagonal()
    torch.testing.assert_close(got.detach().cpu(), want, rtol=1e-12, atol=1e-12)
    got.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.equal(
        paired_distances(x, x), torch.zeros(x.shape[0], dtype=x.dtype, device=device)
    )


def test_paired_distances_bad_input(device):
    x = torch.zeros(3, 2, device=device)
    with pytest.raises(VireidError, match=r"^y: expected shape \(3, 2\) like x, got \(2, 2\)$"):
        paired_distances(x, torch.zeros(2, 2, device=device))
    with pytest.raises(
        VireidError, match=r"^y: expected finite values, found NaN or inf \(first in row 0\)$"
    ):
        paired_distances(x, torch.full((3, 2), float("nan"), device=device))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@given(batch=feature_batches())
def test_self_distances_symmetric_zero_diagonal(device, metric, batch):
    x = batch.features.to(device)
    d = pairwise_distances(x, metric=metric)
    torch.testing.assert_close(d.cpu(), oracle(x, None, metric).fill_diagonal_(0.0), **TOL[x.dtype])
    assert torch.equal(d, d.T)
    assert torch.equal(d.diagonal(), torch.zeros_like(d.diagonal()))


@given(batch=feature_batches(), shift=st.floats(-100, 100), scale=st.floats(0.01, 100))
def test_euclidean_translation_invariant_and_scale_equivariant(device, batch, shift, scale):
    x = batch.features.to(device)
    d = pairwise_distances(x)
    torch.testing.assert_close(pairwise_distances(x + shift), d, rtol=1e-9, atol=1e-9 * abs(shift))
    torch.testing.assert_close(pairwise_distances(x * scale), d * scale, rtol=1e-12, atol=1e-12)


@given(batch=feature_batches(), scale=st.floats(0.01, 100))
def test_cosine_invariant_to_positive_row_scaling(device, batch, scale):
    x = batch.features.to(device)
    scales = torch.linspace(1.0, scale, x.shape[0], dtype=x.dtype, device=device)[:, None]
    d = pairwise_distances(x, metric="cosine")
    torch.testing.assert_close(pairwise_distances(x * scales, metric="cosine"), d)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@given(batch=feature_batches(identical=True))
def test_identical_features_finite_zero_gradient(device, metric, batch):
    x = batch.features.to(device).requires_grad_(True)
    d = pairwise_distances(x, x + 0.0, metric=metric)
    assert torch.equal(d, torch.zeros_like(d)) if metric == "euclidean" else d.max() < 1e-12
    d.sum().backward()
    assert torch.isfinite(x.grad).all()
    if metric == "euclidean":
        assert torch.equal(x.grad, torch.zeros_like(x.grad))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_zero_rows_finite_gradient(device, metric):
    x = torch.zeros(3, 4, device=device, requires_grad=True)
    y = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]], device=device)
    d = pairwise_distances(x, y, metric=metric)
    expected = [[1.0, 0.0]] * 3 if metric == "euclidean" else [[1.0, 1.0]] * 3
    torch.testing.assert_close(d, torch.tensor(expected, device=device))
    d.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_gradient_matches_finite_differences(device):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    y = torch.randn(4, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    for metric in ("euclidean", "cosine"):
        assert torch.autograd.gradcheck(
            lambda a, b, m=metric: pairwise_distances(a, b, metric=m), (x, y)
        )


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(device, metric, low):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 16, generator=gen).to(device)
    ref = pairwise_distances(x, metric=metric)
    got = pairwise_distances(x.to(low), metric=metric)
    assert got.dtype == torch.float32
    # only the input rounding differs: relative error ~ the low dtype's eps times sqrt(d)
    tol = 4 * torch.finfo(low).eps
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        auto = pairwise_distances(x, metric=metric)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, ref)


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "message"),
    [
        (torch.zeros(3), None, {}, "x: expected shape (n, d) with d >= 1, got (3,)"),
        (torch.zeros(3, 0), None, {}, "x: expected shape (n, d) with d >= 1, got (3, 0)"),
        (
            torch.zeros(3, 2, dtype=torch.int64),
            None,
            {},
            "x: expected a floating-point tensor, got dtype torch.int64",
        ),
        ([[0.0]], None, {}, "x: expected a torch.Tensor, got <class 'list'>"),
        (
            torch.zeros(3, 2),
            torch.zeros(2, 3),
            {},
            "y: expected 2 columns like x, got shape (2, 3)",
        ),
        (
            torch.zeros(3, 2),
            torch.zeros(2, 2),
            {"metric": "l1"},
            "metric: expected 'euclidean' or 'cosine', got 'l1'",
        ),
        (
            torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]),
            None,
            {},
            "x: expected finite values, found NaN or inf (first in row 1)",
        ),
        (
            torch.zeros(3, 2),
            torch.tensor([[float("inf"), 0.0]]),
            {},
            "y: expected finite values, found NaN or inf (first in row 0)",
        ),
    ],
)
def test_bad_input(device, x, y, kwargs, message):
    if isinstance(x, torch.Tensor):
        x = x.to(device)
    if y is not None:
        y = y.to(device)
    with pytest.raises(VireidError) as info:
        pairwise_distances(x, y, **kwargs)
    assert str(info.value) == message


# --- the written-out gradients of the few-row helpers ------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(batch=feature_batches())
def test_row_difference_distances_match_oracle(device, dtype, batch):
    x = batch.features.to(device, dtype)
    got = row_difference_distances(x)
    assert got.dtype == dtype
    torch.testing.assert_close(got.cpu().double(), oracle(x, None, "euclidean"), **TOL[dtype])
    # every entry from a difference: equal rows (the diagonal among them) are exactly 0
    assert torch.equal(got.diagonal(), torch.zeros_like(got.diagonal()))


def _with_coincident_rows(device):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    x[3] = x[1]  # a zero distance: the subgradient 0 must come out, never NaN
    return x.to(device)


def test_written_out_gradients_match_finite_differences(device):
    x = _with_coincident_rows(device)
    off = ~torch.eye(5, dtype=torch.bool, device=device)
    off[1, 3] = off[3, 1] = False  # finite differences are not defined at the kink
    a = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: row_difference_distances(t)[off], (a,))
    b = x[[0, 2, 4, 1, 3]].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s, t: paired_distances(s, t), (a, b))


def test_written_out_gradients_at_zero_distance(device):
    x = _with_coincident_rows(device)
    a = x.clone().requires_grad_(True)
    row_difference_distances(a)[1, 3].backward()
    assert torch.equal(a.grad, torch.zeros_like(a.grad))
    a.grad = None
    b = x.clone().requires_grad_(True)
    paired_distances(a, b).sum().backward()
    assert torch.equal(a.grad, torch.zeros_like(x)) and torch.equal(b.grad, torch.zeros_like(x))


def test_paired_distances_second_derivatives(device):
    """The written-out gradient gives way to autograd under create_graph (gradient penalties,
    Hessian-vector products): second derivatives checked against finite differences."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    y = torch.randn(5, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    assert torch.autograd.gradgradcheck(paired_distances, (x, y))
    # a first gradient without a graph still takes the written-out path, with the same values
    (fast,) = torch.autograd.grad(paired_distances(x, y).sum(), x)
    (graph,) = torch.autograd.grad(paired_distances(x, y).sum(), x, create_graph=True)
    torch.testing.assert_close(fast, graph.detach(), rtol=1e-12, atol=1e-12)


def test_paired_distances_fast_path_equals_the_plain_formula(device):
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64).to(device)
    y = torch.randn(6, 3, generator=gen, dtype=torch.float64).to(device)
    y[2] = x[2]  # a zero distance: both give the 0 subgradient there
    w = torch.randn(6, generator=gen, dtype=torch.float64).to(device)
    fast = [t.clone().requires_grad_(True) for t in (x, y)]
    plain = [t.clone().requires_grad_(True) for t in (x, y)]
    got, want = paired_unchecked(*fast), paired_distances_plain(*plain)
    torch.testing.assert_close(got, want, rtol=1e-15, atol=0)
    (got * w).sum().backward()
    (want * w).sum().backward()
    for a, b in zip(fast, plain, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-15)


def test_near_threshold_is_the_spec_value():
    # spec/losses/distances.md: entries with sq <= NEAR * (|a|^2 + |b|^2) are recomputed from
    # differences, NEAR = 1/4 (where the expansion may have cancelled more than two bits)
    assert NEAR == 0.25


def test_one_element_features_are_checked_for_finiteness():
    # a single NaN entry is refused like any other (only an empty tensor skips the check)
    with pytest.raises(VireidError) as info:
        check_features(torch.tensor([[float("nan")]]))
    assert str(info.value) == "features: expected finite values, found NaN or inf (first in row 0)"
    check_features(torch.zeros(0, 3))


def test_cosine_distance_of_opposite_rows_is_at_most_2():
    # 1 - a.b of unit rows can round to 2 + 2e-7 for opposite rows: the distance stays in [0, 2]
    x = torch.randn(200, 7, generator=torch.Generator().manual_seed(0))
    dist = pairwise_distances(x, -x, metric="cosine")
    assert dist.max().item() == 2.0 and dist.min().item() >= 0.0


def test_paired_gradient_is_zero_where_the_distance_is_zero():
    # docstring/spec: the gradient is 0 where the distance is 0, also when the difference is
    # not exactly 0 but its square underflows (1e-30 in float32)
    x = torch.tensor([[1e-30, 0.0], [2.0, 1.0], [3.0, 4.0]], requires_grad=True)
    y = torch.tensor([[0.0, 0.0], [2.0, 1.0], [0.0, 0.0]], requires_grad=True)
    dist = paired_distances(x, y)
    assert dist.tolist() == [0.0, 0.0, 5.0]
    dist.sum().backward()
    assert torch.equal(x.grad, torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.6, 0.8]]))
    assert torch.equal(y.grad, -x.grad)


@pytest.mark.parametrize("cross", [False, True])
def test_exact_path_in_several_chunks_equals_one_chunk(device, monkeypatch, cross):
    # near-duplicate rows send many pairs down the exact path; a chunk of 3 pairs splits them
    from reference.losses import distances

    gen = torch.Generator().manual_seed(3)
    base = torch.randn(4, 8, generator=gen, dtype=torch.float64)
    x = base.repeat(3, 1) + 1e-9 * torch.randn(12, 8, generator=gen, dtype=torch.float64)
    x = x.to(device)
    y = x.flip(0) if cross else None
    whole = pairwise_distances(x, y)
    monkeypatch.setattr(distances, "_CHUNK_ELEMENTS", 3 * x.shape[1])
    chunked = pairwise_distances(x, y)
    assert torch.equal(chunked, whole)
    near = (whole < 1e-6).sum()
    assert near > 3 * 4  # the exact path really ran in several chunks
