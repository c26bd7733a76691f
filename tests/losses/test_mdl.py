"""MDL (spec/losses/mdl.md): a float64 loop oracle, properties, and bad input."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.losses.directional import directional_triplet
from reference.losses.mdl import (
    ALL_DIRECTIONS,
    BASE_DIRECTIONS,
    CROSS_BASE_DIRECTIONS,
    DEFAULT_DIRECTIONS,
    mdl_loss,
    mdl_terms,
)
from tests.strategies import feature_batches

SHORT = ("V", "I", "DV", "DI")
FOUR = (0, 1, 2, 3)


# --- oracle, written from the spec: loops over every anchor and every candidate -----------------


def _dist(u: list[float], v: list[float], metric: str) -> float:
    if metric == "euclidean":
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v, strict=True)))
    nu = max(math.sqrt(sum(a * a for a in u)), 1e-12)
    nv = max(math.sqrt(sum(b * b for b in v)), 1e-12)
    cos = sum(a * b for a, b in zip(u, v, strict=True)) / (nu * nv)
    return min(max(1.0 - cos, 0.0), 2.0)


def oracle_direction(x, y, m, a, b, *, margin=0.3, soft=False, metric="euclidean") -> float:
    rows = x.detach().cpu().double().tolist()
    ys, ms = y.tolist(), m.tolist()
    terms = []
    for i in range(len(rows)):
        if ms[i] != a:
            continue
        pos = [
            _dist(rows[i], rows[j], metric)
            for j in range(len(rows))
            if ms[j] == b and ys[j] == ys[i] and j != i
        ]
        neg = [
            _dist(rows[i], rows[j], metric)
            for j in range(len(rows))
            if ms[j] == b and ys[j] != ys[i]
        ]
        assert pos and neg, "the oracle is only defined when every anchor has both"
        gap = max(pos) - min(neg)
        terms.append(math.log1p(math.exp(gap)) if soft else max(0.0, margin + gap))
    return sum(terms) / len(terms)


def oracle_mdl(x, y, m, directions, *, reduction="mean", **kw) -> float:
    total = sum(oracle_direction(x, y, m, a, b, **kw) for a, b in directions)
    return total / len(directions) if reduction == "mean" else total


def _on(batch, device):
    return (
        batch.features.to(device),
        batch.labels.to(device),
        batch.modality.to(device),
    )


directions_st = st.lists(st.sampled_from(CROSS_BASE_DIRECTIONS + ALL_DIRECTIONS), min_size=1)
directions_st = directions_st.map(lambda ds: tuple(dict.fromkeys(ds)))


# --- the named direction sets --------------------------------------------------------------------


def test_direction_sets():
    assert BASE_DIRECTIONS == ((0, 1), (1, 0))
    assert DEFAULT_DIRECTIONS == CROSS_BASE_DIRECTIONS
    assert len(CROSS_BASE_DIRECTIONS) == 8 and len(set(CROSS_BASE_DIRECTIONS)) == 8
    # every ordered pair whose bases (tag mod 2) differ, and nothing else
    assert set(CROSS_BASE_DIRECTIONS) == {(a, b) for a in FOUR for b in FOUR if a % 2 != b % 2}
    assert set(ALL_DIRECTIONS) == {(a, b) for a in FOUR for b in FOUR if a != b}


# --- the oracle ----------------------------------------------------------------------------------


@given(
    feature_batches(modalities=FOUR),
    directions_st,
    st.sampled_from(["euclidean", "cosine"]),
    st.booleans(),
    st.sampled_from([0.0, 0.3, 1.0]),
    st.sampled_from(["mean", "sum"]),
)
def test_matches_loop_oracle_float64(device, batch, directions, metric, soft, margin, reduction):
    _check_oracle(batch, directions, metric, soft, margin, reduction, device)


def _check_oracle(batch, directions, metric, soft, margin, reduction, device):
    if batch.k == 1:  # same-modality directions need a second row of each identity
        directions = tuple(d for d in directions if d[0] != d[1]) or BASE_DIRECTIONS
    x, y, m = _on(batch, device)
    kw = {"margin": margin, "soft_margin": soft, "metric": metric}
    got = mdl_loss(x, y, m, directions=directions, reduction=reduction, **kw)
    want = oracle_mdl(
        x, y, m, directions, reduction=reduction, margin=margin, soft=soft, metric=metric
    )
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(want, rel=1e-9, abs=1e-9)
    terms = mdl_terms(x, y, m, directions=directions, **kw)
    assert list(terms) == [f"{SHORT[a]}->{SHORT[b]}" for a, b in directions]
    for (a, b), value in zip(directions, terms.values(), strict=True):
        want = oracle_direction(x, y, m, a, b, margin=margin, soft=soft, metric=metric)
        assert float(value) == pytest.approx(want, rel=1e-9, abs=1e-9)


@given(feature_batches(modalities=FOUR, min_p=2, max_p=3))
def test_float32_within_tolerance_of_float64_oracle(device, batch):
    x, y, m = _on(batch, device)
    got = mdl_loss(x.float(), y, m)
    assert got.dtype == torch.float32
    scale = 1.0 + float(x.norm(dim=1).max())
    assert float(got) == pytest.approx(oracle_mdl(x, y, m, DEFAULT_DIRECTIONS), abs=1e-5 * scale)


# --- properties ----------------------------------------------------------------------------------


@given(feature_batches(modalities=FOUR, shuffle=False), st.integers(0, 2**32 - 1))
def test_invariant_to_batch_order(device, batch, seed):
    x, y, m = _on(batch, device)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(device)
    a = mdl_loss(x, y, m)
    b = mdl_loss(x[order], y[order], m[order])
    assert float(b) == pytest.approx(float(a), rel=1e-12, abs=1e-12)


@given(feature_batches(modalities=FOUR), st.floats(-50, 50), st.integers(0, 7))
def test_invariant_to_translation_euclidean(device, batch, shift, axis):
    x, y, m = _on(batch, device)
    t = torch.zeros(x.shape[1], dtype=x.dtype, device=device)
    t[axis % x.shape[1]] = shift
    t += 0.5 * shift
    a = mdl_loss(x, y, m)
    b = mdl_loss(x + t, y, m)
    assert float(b) == pytest.approx(float(a), rel=1e-9, abs=1e-9 * (1 + abs(shift)))


@given(feature_batches(modalities=FOUR), st.floats(0.01, 100))
def test_scale_without_margin_is_linear(device, batch, c):
    x, y, m = _on(batch, device)
    a = mdl_loss(x, y, m, margin=0.0)
    b = mdl_loss(c * x, y, m, margin=0.0)
    assert float(b) == pytest.approx(c * float(a), rel=1e-9, abs=1e-12)


@given(feature_batches(modalities=FOUR), directions_st, st.sampled_from(["mean", "sum"]))
def test_zero_when_identities_are_separated_beyond_the_margin(device, batch, directions, red):
    if batch.k == 1:
        directions = tuple(d for d in directions if d[0] != d[1]) or BASE_DIRECTIONS
    x, y, m = _on(batch, device)
    # each identity inside a ball of radius 0.1 * sqrt(d) <= 0.29, centres 3 apart on axis 0
    x = 0.1 * torch.tanh(x)
    x[:, 0] += 3.0 * y.to(x.dtype)
    loss = mdl_loss(x, y, m, directions=directions, reduction=red, margin=0.3)
    assert float(loss) == 0.0


@given(feature_batches(modalities=FOUR, identical=True), st.sampled_from(["mean", "sum"]))
def test_identical_features_give_the_margin_and_finite_gradients(device, batch, reduction):
    x, y, m = _on(batch, device)
    x = x.clone().requires_grad_(True)
    loss = mdl_loss(x, y, m, margin=0.3, reduction=reduction)
    n_dir = 1 if reduction == "mean" else len(DEFAULT_DIRECTIONS)
    assert float(loss.detach()) == pytest.approx(0.3 * n_dir, rel=1e-12)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    soft = mdl_loss(x, y, m, soft_margin=True)
    assert float(soft.detach()) == pytest.approx(math.log(2.0), rel=1e-12)


@given(feature_batches(modalities=FOUR, identical=False), directions_st)
def test_at_least_the_margin_when_identities_overlap(device, batch, directions):
    if batch.k == 1:
        directions = tuple(d for d in directions if d[0] != d[1]) or BASE_DIRECTIONS
    x, y, m = _on(batch, device)
    # give every identity the points of identity 0, modality by modality: each anchor then has a
    # negative at most as far as its hardest positive, so every term is at least the margin
    x2 = torch.empty_like(x)
    for pid in y.unique().tolist():
        for tag in FOUR:
            x2[(y == pid) & (m == tag)] = x[(y == 0) & (m == tag)]
    loss = mdl_loss(x2, y, m, directions=directions, margin=0.3)
    assert float(loss) >= 0.3 - 1e-12


def test_gradient_matches_finite_differences(device):
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(2).repeat(4).to(device)
    m = torch.arange(4).repeat_interleave(6).to(device)
    x = torch.randn(24, 4, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    for soft in (False, True):
        assert torch.autograd.gradcheck(
            lambda f, soft=soft: mdl_loss(f, y, m, soft_margin=soft, margin=1.0),
            (x,),
            fast_mode=True,
        )


@given(feature_batches(modalities=FOUR, dims=(2, 16)))
def test_bfloat16_autocast_within_stated_tolerance(device, batch):
    """Stated tolerance: |L_bf16 - L_f32| <= 2**-6 * (1 + max row norm).

    Rounding features to bfloat16 moves each row by at most 2**-8 of its norm; each per-anchor
    term is 1-Lipschitz in its two distances, each of which moves by at most twice that.
    """
    x, y, m = _on(batch, device)
    x32 = x.float()
    ref = mdl_loss(x32, y, m)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        got = mdl_loss(x32.bfloat16(), y, m)
    assert torch.isfinite(got)
    tol = 2**-6 * (1.0 + float(x32.norm(dim=1).max()))
    assert abs(float(got) - float(ref)) <= tol


# --- bad input -----------------------------------------------------------------------------------


def _small(device):
    x = torch.tensor([0.0, 1.0, 3.0, 5.0, 0.0, 2.0, 1.0, 3.0], device=device)[:, None]
    y = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1], device=device)
    m = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1], device=device)
    return x, y, m


def _raises(message: str):
    return pytest.raises(VireidError, match="^" + re.escape(message) + "$")


def test_missing_modality_for_a_direction(device):
    x, y, m = _small(device)
    with _raises("modality: MDL direction V->DI needs rows of modality DI (3); the batch has V, I"):
        mdl_loss(x, y, m)
    with _raises("modality: MDL direction DV->I needs rows of modality DV (2); the batch has V, I"):
        mdl_loss(x, y, m, directions=((2, 1),))


def test_identity_without_counterpart(device):
    x, y, m = _small(device)
    y = torch.tensor([0, 0, 1, 1, 0, 0, 0, 2], device=device)
    with _raises(
        "labels: MDL direction V->I: identity 1 has 2 row(s) of modality V "
        "but no row of modality I to be its positive"
    ):
        mdl_loss(x, y, m, directions=BASE_DIRECTIONS)


def test_candidate_modality_with_one_identity(device):
    x = torch.arange(6.0, device=device)[:, None]
    y = torch.tensor([0, 0, 0, 0, 1, 1], device=device)
    m = torch.tensor([0, 0, 1, 1, 2, 2], device=device)
    with _raises(
        "labels: MDL direction V->I needs at least 2 identities in modality I "
        "(for negatives), got 1"
    ):
        mdl_loss(x, y, m, directions=BASE_DIRECTIONS)


def test_one_identity(device):
    x, y, m = _small(device)
    with _raises("labels: expected at least 2 identities in the batch, got 1 (label 0)"):
        mdl_loss(x, torch.zeros_like(y), m, directions=BASE_DIRECTIONS)


def test_mismatched_lengths(device):
    x, y, m = _small(device)
    with _raises("labels: expected shape (8,) to match features, got (7,)"):
        mdl_loss(x, y[:7], m, directions=BASE_DIRECTIONS)
    with _raises("modality: expected shape (8,), got (7,)"):
        mdl_loss(x, y, m[:7], directions=BASE_DIRECTIONS)


def test_nan_and_inf_features(device):
    x, y, m = _small(device)
    x[3, 0] = float("nan")
    with _raises("features: expected finite values, found NaN or inf (first in row 3)"):
        mdl_loss(x, y, m, directions=BASE_DIRECTIONS)
    x[3, 0], x[5, 0] = 0.0, float("inf")
    with _raises("features: expected finite values, found NaN or inf (first in row 5)"):
        mdl_terms(x, y, m, directions=BASE_DIRECTIONS)


def test_bad_directions_and_reduction(device):
    x, y, m = _small(device)
    with _raises("directions: expected (from, to) pairs of modality tags 0..3, got (0, 5)"):
        mdl_loss(x, y, m, directions=((0, 5),))
    with _raises("directions: expected (from, to) pairs of modality tags 0..3, got 'VI'"):
        mdl_loss(x, y, m, directions=["VI"])
    with _raises("directions: expected (from, to) pairs of modality tags 0..3, got ('V', 'I')"):
        mdl_loss(x, y, m, directions=(("V", "I"),))
    with _raises("directions: expected (from, to) pairs of modality tags 0..3, got (0.0, 1)"):
        mdl_loss(x, y, m, directions=((0.0, 1),))
    with _raises("directions: expected a sequence of (from, to) pairs, got 'VI'"):
        mdl_loss(x, y, m, directions="VI")
    with _raises("directions: expected a sequence of (from, to) pairs, got 1"):
        mdl_terms(x, y, m, directions=1)
    with _raises("directions: expected at least one (from, to) pair, got none"):
        mdl_loss(x, y, m, directions=())
    with _raises("directions: each direction may appear once, got [(0, 1), (0, 1)]"):
        mdl_loss(x, y, m, directions=((0, 1), (0, 1)))
    with _raises("reduction: expected 'mean' or 'sum', got 'max'"):
        mdl_loss(x, y, m, directions=BASE_DIRECTIONS, reduction="max")
    with _raises("margin: expected a finite number >= 0, got -0.1"):
        mdl_loss(x, y, m, directions=BASE_DIRECTIONS, margin=-0.1)
    with _raises("margin: expected a finite number >= 0, got inf"):
        directional_triplet(x, y, m, (0, 1), margin=float("inf"))
    with _raises("metric: expected 'euclidean' or 'cosine', got 'manhattan'"):
        mdl_terms(x, y, m, directions=BASE_DIRECTIONS, metric="manhattan")


def test_bad_tags_and_labels(device):
    x, y, m = _small(device)
    with _raises(
        "modality: unknown modality tag(s) [4]; expected values in 0 (V), 1 (I), 2 (DV), 3 (DI)"
    ):
        mdl_loss(x, y, torch.full_like(m, 4), directions=BASE_DIRECTIONS)
    with _raises("labels: expected an integer tensor, got dtype torch.float32"):
        mdl_loss(x, y.float(), m, directions=BASE_DIRECTIONS)
