"""GeM pooling against a float64 loop oracle written from spec/models/pooling.md."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.models import pooling
from reference.models.pooling import gem, gem_stripes, gem_stripes_many


def oracle_gem_stripes(x: torch.Tensor, stripes: int, p: float) -> torch.Tensor:
    """Plain loops in float64: the spec's formula, one stripe, one channel at a time."""
    xs = x.detach().cpu().to(torch.float64).tolist()
    b, c, h, w = x.shape
    rows = h // stripes
    out = torch.zeros(b, c, stripes, dtype=torch.float64)
    for n in range(b):
        for ch in range(c):
            for s in range(stripes):
                total = 0.0
                for i in range(s * rows, (s + 1) * rows):
                    for j in range(w):
                        total += max(xs[n][ch][i][j], 0.0) ** p
                out[n, ch, s] = (total / (rows * w) + 1e-12) ** (1.0 / p)
    return out


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    if dtype == torch.float64:
        return {"rtol": 1e-10, "atol": 1e-12}
    return {"rtol": 2e-5, "atol": 1e-6}


@st.composite
def maps(draw):
    b = draw(st.integers(1, 3))
    c = draw(st.integers(1, 4))
    stripes = draw(st.integers(1, 4))
    h = stripes * draw(st.integers(1, 3))
    w = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    gen = torch.Generator().manual_seed(seed)
    kind = draw(st.sampled_from(["relu", "signed", "zeros", "ties"]))
    x = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)
    if kind == "relu":
        x = x.clamp(min=0)
    elif kind == "zeros":
        x = torch.zeros_like(x)
    elif kind == "ties":
        x = torch.randint(0, 3, (b, c, h, w), generator=gen).to(torch.float64)
    p = draw(st.one_of(st.sampled_from([1.0, 2.0, 3.0, 10.0]), st.floats(1.0, 12.0)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return x.to(dtype), stripes, p


@given(maps())
def test_gem_stripes_matches_the_float64_oracle(device, case):
    x, stripes, p = case
    got = gem_stripes(x.to(device), stripes, p)
    assert got.dtype == x.dtype and got.shape == (*x.shape[:2], stripes)
    want = oracle_gem_stripes(x, stripes, p)
    torch.testing.assert_close(got.cpu().to(torch.float64), want, **tolerance(x.dtype))


@given(maps())
def test_whole_map_gem_is_the_one_stripe_case(device, case):
    x, _, p = case
    torch.testing.assert_close(
        gem(x.to(device), p).cpu().to(torch.float64),
        oracle_gem_stripes(x, 1, p)[..., 0],
        **tolerance(x.dtype),
    )


def test_p_one_is_average_pooling(device):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 5, 6, 3, generator=gen, dtype=torch.float64).to(device)
    want = F.adaptive_avg_pool2d(x, 1).flatten(1)
    torch.testing.assert_close(gem(x, 1.0), want, rtol=0, atol=2e-12)
    # stripes: average of each band of 2 rows
    bands = F.adaptive_avg_pool2d(x, (3, 1))[..., 0]
    torch.testing.assert_close(gem_stripes(x, 3, 1), bands, rtol=0, atol=2e-12)


@pytest.mark.parametrize("p", [50.0, 200.0, 1000.0])
def test_large_p_approaches_max_pooling(device, p):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 4, 4, 3, generator=gen, dtype=torch.float64).to(device) + 0.5
    top = x.amax(dim=(2, 3))
    got = gem(x, p)
    n = x.shape[2] * x.shape[3]
    # mean of the p-th powers lies in [max^p / n, max^p]
    assert bool((got <= top * (1 + 1e-12)).all())
    assert bool((got >= top * n ** (-1.0 / p) * (1 - 1e-12)).all())
    if p == 1000.0:
        torch.testing.assert_close(got, top, rtol=3e-3, atol=0)


def test_gem_is_monotone_in_p(device):
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(3, 4, 3, 3, generator=gen, dtype=torch.float64).to(device)
    values = [gem(x, p) for p in (1.0, 2.0, 3.0, 10.0)]
    for low, high in itertools.pairwise(values):
        assert bool((low <= high + 1e-12).all())  # power-mean inequality


def test_constant_map_gives_the_constant(device):
    x = torch.full((1, 2, 6, 2), 0.7, dtype=torch.float64, device=device)
    for p in (1.0, 3.0, 10.0):
        torch.testing.assert_close(gem_stripes(x, 3, p), torch.full_like(x[..., :3, 0], 0.7))


def test_gradient_is_finite_at_zero(device):
    x = torch.zeros(1, 2, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
    gem(x, 3.0).sum().backward()
    assert bool(torch.isfinite(x.grad).all())


def test_gradcheck(device):
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(1, 2, 4, 2, generator=gen, dtype=torch.float64) + 0.1).to(device)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: gem_stripes(t, 2, 3.0), (x,))


@pytest.mark.parametrize(
    ("p", "message"),
    [
        (0.5, "gem_p: expected a finite number >= 1, got 0.5"),
        (math.inf, "gem_p: expected a finite number >= 1, got inf"),
        (math.nan, "gem_p: expected a finite number >= 1, got nan"),
        (True, "gem_p: expected a finite number >= 1, got True"),
        ("3", "gem_p: expected a finite number >= 1, got '3'"),
    ],
)
def test_bad_p(device, p, message):
    with pytest.raises(VireidError) as info:
        gem(torch.ones(1, 1, 2, 2, device=device), p)
    assert str(info.value) == message


def test_bad_maps(device):
    with pytest.raises(VireidError) as info:
        gem_stripes(torch.ones(1, 1, 5, 2, device=device), 2, 3.0)
    assert str(info.value) == "feature map: height 5 is not divisible into 2 equal stripes"
    with pytest.raises(VireidError) as info:
        gem(torch.ones(1, 2, 2, device=device), 3.0)
    assert str(info.value) == "feature map: expected a (B, C, h, w) tensor, got (1, 2, 2)"
    with pytest.raises(VireidError) as info:
        gem_stripes(torch.ones(1, 1, 4, 2, device=device), 0, 3.0)
    assert str(info.value) == "stripes: expected an integer >= 1, got 0"


@given(maps(), st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_many_stripe_counts_at_once_equal_one_at_a_time(device, case, extra):
    x, stripes, p = case
    h = x.shape[2]
    counts = [stripes, *(n for n in extra if h % n == 0)]
    got = gem_stripes_many(x.to(device), counts, p)
    assert len(got) == len(counts)
    for n, value in zip(counts, got, strict=True):
        want = oracle_gem_stripes(x, n, p)
        torch.testing.assert_close(value.cpu().double(), want, **tolerance(x.dtype))


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, 10.0])
def test_gradient_matches_the_clamp_pow_mean_chain(device, p):
    """The fused backward is autograd's gradient of clamp -> pow -> mean, zeros included
    (torch's clamp passes no gradient at 0, so the gradient there is 0 for every p)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 6, 2, generator=gen, dtype=torch.float64)
    x[0, 0, :2] = 0.0
    weights = torch.randn(2, 3, 6, generator=gen, dtype=torch.float64)
    fast = x.clone().to(device).requires_grad_(True)
    chain = x.clone().to(device).requires_grad_(True)
    w = weights.to(device)
    loss = sum((v * w[..., : v.shape[-1]]).sum() for v in gem_stripes_many(fast, [1, 2, 6], p))
    loss.backward()
    want = 0
    for n in (1, 2, 6):
        bands = chain.clamp(min=0).reshape(2, 3, n, -1)
        pooled = bands.mean(-1) + 1e-12 if p == 1.0 else (bands.pow(p).mean(-1) + 1e-12) ** (1 / p)
        want = want + (pooled * w[..., :n]).sum()
    want.backward()
    torch.testing.assert_close(fast.grad, chain.grad, rtol=1e-12, atol=1e-14)
    assert bool((fast.grad[0, 0, :2] == 0).all())
    assert bool((fast.grad[x > 0] != 0).all())


def test_many_bad_counts(device):
    x = torch.ones(1, 1, 6, 2, device=device)
    with pytest.raises(VireidError) as info:
        gem_stripes_many(x, [2, 4, 5], 3.0)
    assert str(info.value) == "feature map: height 6 is not divisible into 4 equal stripes"
    with pytest.raises(VireidError) as info:
        gem_stripes_many(x, [], 3.0)
    assert str(info.value) == "stripes: expected at least one stripe count, got none"
    with pytest.raises(VireidError) as info:
        gem_stripes_many(x, [3, True], 3.0)
    assert str(info.value) == "stripes: expected an integer >= 1, got True"


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_second_derivatives(device, p):
    """The written-out gradient is itself differentiable (gradient penalties, Hessian-vector
    products): checked against finite differences of the first gradient."""
    gen = torch.Generator().manual_seed(3)
    # values away from 0, where max(x, 0) has its kink; the second column negative
    x = torch.rand(2, 3, 4, 2, generator=gen, dtype=torch.float64) + 0.1
    x[..., 1] *= -1
    x = x.to(device).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: gem_stripes(t, 2, p), (x,))


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_band_power_mean_fast_path_equals_the_plain_formula(device, p):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 6, 2, generator=gen, dtype=torch.float64).to(device)
    x[0, 0, :2] = 0.0
    w = torch.randn(2, 3, 3, generator=gen, dtype=torch.float64).to(device)
    fast, plain = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got = pooling._BandPowerMeanFastBackward.apply(fast, 3, p)
    want = pooling.band_power_mean_plain(plain, 3, p)
    torch.testing.assert_close(got, want, rtol=1e-15, atol=0)
    (got * w).sum().backward()
    (want * w).sum().backward()
    torch.testing.assert_close(fast.grad, plain.grad, rtol=1e-12, atol=1e-14)
