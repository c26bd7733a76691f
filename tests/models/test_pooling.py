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
    with pytest.raises(VireidError) as info:
        gem_stripes(torch.ones(1, 1, 0, 2, device=device), 2, 3.0)
    assert str(info.value) == "feature map: expected h, w >= 1, got (1, 1, 0, 2)"


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


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 10.0])
def test_second_derivatives(device, p):
    """The written-out gradient is itself differentiable (gradient penalties, Hessian-vector
    products): checked against finite differences of the first gradient."""
    gen = torch.Generator().manual_seed(3)
    # values away from 0, where max(x, 0) has its kink; the second column negative
    x = torch.rand(2, 3, 4, 2, generator=gen, dtype=torch.float64) + 0.1
    x[..., 1] *= -1
    x = x.to(device).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: gem_stripes(t, 2, p), (x,))


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, 10.0])
def test_band_power_mean_fast_path_equals_the_plain_formula(device, p):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 6, 2, generator=gen, dtype=torch.float64).to(device)
    x[0, 0, :2] = 0.0
    w = torch.randn(2, 3, 3, generator=gen, dtype=torch.float64).to(device)
    fast, plain = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    scale = pooling.band_scale(x, 3, p)
    got = pooling._BandPowerMeanFastBackward.apply(fast, 3, p, scale)
    want = pooling.band_power_mean_plain(plain, 3, p, scale)
    torch.testing.assert_close(got, want, rtol=1e-15, atol=0)
    (got * w).sum().backward()
    (want * w).sum().backward()
    torch.testing.assert_close(fast.grad, plain.grad, rtol=1e-12, atol=1e-14)


# --- large maps: the power never overflows (the max-scaled form, spec "Scaling") -------------


@st.composite
def large_maps(draw):
    """float32 maps whose largest value is 10 ** e, e in [-8, 30] with e * p <= 300: powers up
    to 1e300, far past float32 (3.4e38), within float64, where the unscaled oracle computes
    them (p = 12.5 at 1e25 would overflow the oracle itself: e <= 24 there). Other values spread
    over several orders of magnitude below it, some negative, some bands all zero."""
    b, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    stripes = draw(st.integers(1, 3))
    h, w = stripes * draw(st.integers(1, 3)), draw(st.integers(1, 3))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    p = draw(st.sampled_from([3.0, 10.0, 12.5]))
    top = 10.0 ** draw(st.integers(-8, min(30, int(300 // p))))
    spread = draw(st.sampled_from([1.0, 4.0, 12.0]))  # orders of magnitude below the top
    x = torch.rand(b, c, h, w, generator=gen, dtype=torch.float64)
    x = 10.0 ** (-spread * x) * torch.sign(torch.randn(b, c, h, w, generator=gen)).double()
    x = x / x.abs().amax() * top
    if draw(st.booleans()):
        x[:, :, : h // stripes] = 0.0  # the first stripe all zero: GeM = eps ** (1/p)
    return x.to(torch.float32), stripes, p


@given(large_maps())
def test_large_values_are_finite_and_match_the_float64_oracle(device, case):
    x, stripes, p = case
    want = oracle_gem_stripes(x, stripes, p)  # float64 loops, no scaling: powers up to 1e300
    assert bool(torch.isfinite(want).all())
    for counts in ([stripes], [1, stripes]):
        got = gem_stripes_many(x.to(device), counts, p)[-1]
        assert bool(torch.isfinite(got).all())
        torch.testing.assert_close(got.cpu().double(), want, rtol=2e-5, atol=0)


@pytest.mark.parametrize("top", [1e4, 1e10, 1e20, 1e30])
def test_large_value_gradient_matches_the_float64_chain(device, top):
    """float32 at p = 10, values up to 1e30: the gradient is finite and equals autograd's
    gradient of the unscaled chain clamp -> pow -> mean computed in float64."""
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(2, 3, 6, 2, generator=gen, dtype=torch.float64) * top
    x[0, 0, :2] = -1.0
    weights = torch.randn(2, 3, 6, generator=gen, dtype=torch.float64)
    fast = x.to(torch.float32).to(device).requires_grad_(True)
    got = gem_stripes_many(fast, [1, 2, 6], 10.0)
    loss = sum((v * weights.to(device, torch.float32)[..., : v.shape[-1]]).sum() for v in got)
    loss.backward()
    chain = x.to(torch.float32).double().requires_grad_(True)
    want = 0
    for n in (1, 2, 6):
        bands = chain.clamp(min=0).reshape(2, 3, n, -1)
        pooled = (bands.pow(10.0).mean(-1) + 1e-12) ** 0.1
        want = want + (pooled * weights[..., :n]).sum()
    want.backward()
    assert bool(torch.isfinite(fast.grad).all())
    torch.testing.assert_close(fast.grad.cpu().double(), chain.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        (torch.float32, 3e38),  # float32's largest values: GeM is the value itself
        (torch.float32, 1e-30),  # tiny: eps dominates, GeM = eps ** (1/p)
        (torch.float64, 1e300),
        (torch.float16, 6e4),  # float16 overflows from 65504; the pooling runs in float32
        (torch.bfloat16, 1e38),
    ],
)
def test_extreme_constant_maps(device, dtype, value):
    x = torch.full((1, 2, 4, 2), value, dtype=dtype, device=device)
    v = float(x[0, 0, 0, 0])  # the value as the dtype holds it
    low = dtype in (torch.float16, torch.bfloat16)
    for p in (1.0, 3.0, 10.0):
        # (v ** p + eps) ** (1/p), written so that Python's float power cannot overflow
        want = v * (1 + 1e-12 * v**-p) ** (1 / p) if v >= 1 else (v**p + 1e-12) ** (1 / p)
        for pooled in gem_stripes_many(x, [1, 2], p):
            assert pooled.dtype == dtype and bool(torch.isfinite(pooled).all())
            torch.testing.assert_close(
                pooled.double().cpu(),
                torch.full_like(pooled.double().cpu(), want),
                rtol=1e-2 if low else 2e-6,
                atol=0,
            )


def test_baseline_regdb_embeddings_are_finite_on_a_huge_map(device):
    """The regression case: baseline-regdb (GeM p = 10) in eval mode on a map with values near
    1e9 (after one step on tiny images the map reached 4e10, where max ** 10 overflows float32)
    gives finite embeddings, equal to the same model's in float64."""
    from reference.models.build import build_model
    from reference.training.config import load_preset

    model = build_model(load_preset("baseline-regdb", ["model.num_classes=4"]).model).eval()
    last = model.backbone.shared.layer4[-1].bn3  # the last BN before the final ReLU
    with torch.no_grad():
        last.weight.mul_(1e9)
        last.bias.fill_(1e8)
    model = model.to(device)
    images = torch.rand(4, 3, 32, 16, generator=torch.Generator().manual_seed(0)).to(device)
    modality = torch.tensor([0, 0, 1, 1], device=device)
    with torch.no_grad():
        fmap = model.feature_map(images, modality)
        assert bool(torch.isfinite(fmap).all())
        assert bool(torch.isinf(fmap.amax().pow(10.0)))  # the unscaled power would overflow
        got = model(images, modality).embedding
        want = model.double()(images.double(), modality).embedding
    assert bool(torch.isfinite(got).all())
    torch.testing.assert_close(got.double(), want, rtol=1e-3, atol=1e-4)


def test_under_autocast_the_pooled_values_stay_in_float32(device):
    """Under autocast the pooling runs and returns in float32 (on CUDA the unscaled power ran in
    float32 too); a bfloat16 map whose 10th powers overflow float32 gives finite values."""
    x = torch.tensor([[[[1e30, 0.0], [1e30, 1e30]]]], dtype=torch.bfloat16, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        got = gem(x, 10.0)
    assert got.dtype == torch.float32
    want = 0.75**0.1 * float(x[0, 0, 0, 0])
    torch.testing.assert_close(got.double().cpu(), torch.full((1, 1), want, dtype=torch.float64))
