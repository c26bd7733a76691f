"""MML (spec/losses/mml.md): a float64 loop oracle, properties, and bad input."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.losses.mml import ALL_MODALITIES, mml_loss, mml_terms
from tests.strategies import feature_batches

SHORT = ("V", "I", "DV", "DI")
FOUR = (0, 1, 2, 3)


# --- oracle, written from the spec: for each modality, loop over its anchors and rows -----------


def _dist(u: list[float], v: list[float], metric: str) -> float:
    if metric == "euclidean":
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v, strict=True)))
    nu = max(math.sqrt(sum(a * a for a in u)), 1e-12)
    nv = max(math.sqrt(sum(b * b for b in v)), 1e-12)
    return min(max(1.0 - sum(a * b for a, b in zip(u, v, strict=True)) / (nu * nv), 0.0), 2.0)


def oracle_modality(x, y, m, tag, *, margin=0.3, soft=False, metric="euclidean") -> float:
    rows = [
        (r, int(lab))
        for r, lab, t in zip(
            x.detach().cpu().double().tolist(), y.tolist(), m.tolist(), strict=True
        )
        if t == tag
    ]
    total = 0.0
    for i, (anchor, pid) in enumerate(rows):
        hardest_pos, hardest_neg = -math.inf, math.inf
        for j, (other, qid) in enumerate(rows):
            d = _dist(anchor, other, metric)
            if qid == pid and j != i:
                hardest_pos = max(hardest_pos, d)
            elif qid != pid:
                hardest_neg = min(hardest_neg, d)
        assert math.isfinite(hardest_pos) and math.isfinite(hardest_neg)
        gap = hardest_pos - hardest_neg
        total += math.log1p(math.exp(gap)) if soft else max(0.0, margin + gap)
    return total / len(rows)


def oracle_mml(x, y, m, tags=FOUR, *, reduction="mean", **kw) -> float:
    total = sum(oracle_modality(x, y, m, t, **kw) for t in tags)
    return total / len(tags) if reduction == "mean" else total


def _on(batch, device):
    return batch.features.to(device), batch.labels.to(device), batch.modality.to(device)


# MML needs K >= 2: a row is never its own positive
batches = feature_batches(modalities=FOUR).filter(lambda b: b.k >= 2)


# --- the oracle ----------------------------------------------------------------------------------


@given(
    batches,
    st.sampled_from(["euclidean", "cosine"]),
    st.booleans(),
    st.sampled_from([0.0, 0.3, 1.0]),
    st.sampled_from(["mean", "sum"]),
)
def test_matches_loop_oracle_float64(device, batch, metric, soft, margin, reduction):
    x, y, m = _on(batch, device)
    kw = {"margin": margin, "soft_margin": soft, "metric": metric}
    got = mml_loss(x, y, m, reduction=reduction, **kw)
    assert got.dtype == torch.float64
    want = oracle_mml(x, y, m, reduction=reduction, margin=margin, soft=soft, metric=metric)
    assert float(got) == pytest.approx(want, rel=1e-9, abs=1e-9)
    terms = mml_terms(x, y, m, **kw)
    assert list(terms) == list(SHORT)
    for tag, value in zip(FOUR, terms.values(), strict=True):
        want = oracle_modality(x, y, m, tag, margin=margin, soft=soft, metric=metric)
        assert float(value) == pytest.approx(want, rel=1e-9, abs=1e-9)


@given(
    feature_batches(modalities=FOUR, min_p=2, max_p=3).filter(lambda b: b.k >= 2),
    st.lists(st.sampled_from(FOUR), min_size=1, max_size=4, unique=True),
)
def test_subsets_and_modalities_present(device, batch, tags):
    x, y, m = _on(batch, device)
    got = mml_loss(x, y, m, modalities=tuple(tags))
    assert float(got) == pytest.approx(oracle_mml(x, y, m, tuple(tags)), rel=1e-9, abs=1e-9)
    keep = torch.isin(m, torch.tensor(tags, device=device))
    present = mml_loss(x[keep], y[keep], m[keep], modalities=None)
    assert float(present) == pytest.approx(float(got), rel=1e-12, abs=1e-12)


def test_a_modality_with_one_row_is_present_not_dropped(device):
    # modalities=None takes every modality with a row: a lone DI row is reported, not skipped
    y = torch.tensor([0, 0, 1, 1] * 3 + [0], device=device)
    m = torch.tensor([0] * 4 + [1] * 4 + [2] * 4 + [3], device=device)
    x = torch.randn(13, 4, dtype=torch.float64, device=device)
    message = (
        "labels: MML modality DI: identity 0 has 1 row(s) of modality DI but no other row of "
        "modality DI to be its positive"
    )
    with pytest.raises(VireidError, match=re.escape(message)):
        mml_terms(x, y, m, modalities=None)
    assert list(mml_terms(x, y, m, modalities=(0, 1, 2))) == ["V", "I", "DV"]


@given(batches)
def test_float32_within_tolerance_of_float64_oracle(device, batch):
    x, y, m = _on(batch, device)
    got = mml_loss(x.float(), y, m)
    assert got.dtype == torch.float32
    scale = 1.0 + float(x.norm(dim=1).max())
    assert float(got) == pytest.approx(oracle_mml(x, y, m), abs=1e-5 * scale)


def test_two_mode_case_is_the_mean_of_the_two_base_terms(device):
    gen = torch.Generator().manual_seed(1)
    y = torch.arange(3).repeat_interleave(3).repeat(2).to(device)
    m = torch.arange(2).repeat_interleave(9).to(device)
    x = torch.randn(18, 6, generator=gen, dtype=torch.float64).to(device)
    two = mml_loss(x, y, m, modalities=(0, 1))
    want = 0.5 * (oracle_modality(x, y, m, 0) + oracle_modality(x, y, m, 1))
    assert float(two) == pytest.approx(want, rel=1e-12)


# --- properties ----------------------------------------------------------------------------------


@given(feature_batches(modalities=FOUR, shuffle=False).filter(lambda b: b.k >= 2), st.integers())
def test_invariant_to_batch_order(device, batch, seed):
    x, y, m = _on(batch, device)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed % 2**32))
    order = order.to(device)
    a, b = mml_loss(x, y, m), mml_loss(x[order], y[order], m[order])
    assert float(b) == pytest.approx(float(a), rel=1e-12, abs=1e-12)


@given(batches, st.floats(-50, 50))
def test_invariant_to_translation_euclidean(device, batch, shift):
    x, y, m = _on(batch, device)
    t = shift * torch.linspace(-1, 1, x.shape[1], dtype=x.dtype, device=device)
    a, b = mml_loss(x, y, m), mml_loss(x + t, y, m)
    assert float(b) == pytest.approx(float(a), rel=1e-9, abs=1e-9 * (1 + abs(shift)))


@given(batches, st.floats(0.01, 100))
def test_scale_without_margin_is_linear(device, batch, c):
    x, y, m = _on(batch, device)
    a, b = mml_loss(x, y, m, margin=0.0), mml_loss(c * x, y, m, margin=0.0)
    assert float(b) == pytest.approx(c * float(a), rel=1e-9, abs=1e-12)


@given(batches, st.sampled_from(["mean", "sum"]))
def test_zero_when_identities_are_separated_beyond_the_margin(device, batch, reduction):
    x, y, m = _on(batch, device)
    x = 0.1 * torch.tanh(x)  # each identity within radius 0.1 * sqrt(8) < 0.3
    x[:, 0] += 3.0 * y.to(x.dtype)
    assert float(mml_loss(x, y, m, reduction=reduction)) == 0.0


@given(batches)
def test_at_least_the_margin_when_identities_overlap(device, batch):
    x, y, m = _on(batch, device)
    # every identity gets identity 0's points: some negative is at distance 0 from each anchor
    x2 = torch.empty_like(x)
    for pid in y.unique().tolist():
        for tag in FOUR:
            x2[(y == pid) & (m == tag)] = x[(y == 0) & (m == tag)]
    assert float(mml_loss(x2, y, m, margin=0.3)) >= 0.3 - 1e-12


@given(feature_batches(modalities=FOUR, identical=True).filter(lambda b: b.k >= 2))
def test_identical_features_give_the_margin_and_finite_gradients(device, batch):
    x, y, m = _on(batch, device)
    x = x.clone().requires_grad_(True)
    loss = mml_loss(x, y, m)
    assert float(loss.detach()) == pytest.approx(0.3, rel=1e-12)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    total = mml_loss(x, y, m, reduction="sum", soft_margin=True)
    assert float(total.detach()) == pytest.approx(4 * math.log(2.0), rel=1e-12)


def test_gradient_matches_finite_differences(device):
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(2).repeat_interleave(2).repeat(4).to(device)
    m = torch.arange(4).repeat_interleave(4).to(device)
    x = torch.randn(16, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    for soft in (False, True):
        assert torch.autograd.gradcheck(
            lambda f, soft=soft: mml_loss(f, y, m, soft_margin=soft, margin=1.0),
            (x,),
            fast_mode=True,
        )


@given(feature_batches(modalities=FOUR, dims=(2, 16)).filter(lambda b: b.k >= 2))
def test_bfloat16_autocast_within_stated_tolerance(device, batch):
    """Stated tolerance: |L_bf16 - L_f32| <= 2**-6 * (1 + max row norm) (see test_mdl.py)."""
    x, y, m = _on(batch, device)
    x32 = x.float()
    ref = mml_loss(x32, y, m)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        got = mml_loss(x32.bfloat16(), y, m)
    assert torch.isfinite(got)
    assert abs(float(got) - float(ref)) <= 2**-6 * (1.0 + float(x32.norm(dim=1).max()))


@given(batches)
def test_autocast_of_float32_features_changes_nothing(device, batch):
    x, y, m = _on(batch, device)
    x32 = x.float()
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        got = mml_loss(x32, y, m)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(mml_loss(x32, y, m)), rel=1e-6, abs=1e-6)


# --- bad input -----------------------------------------------------------------------------------


def _raises(message: str):
    return pytest.raises(VireidError, match="^" + re.escape(message) + "$")


def _small(device):
    y = torch.tensor([0, 0, 1, 1] * 4, device=device)
    m = torch.tensor([0] * 4 + [1] * 4 + [2] * 4 + [3] * 4, device=device)
    x = torch.arange(16.0, device=device)[:, None]
    return x, y, m


def test_missing_modality(device):
    x, y, m = _small(device)
    keep = m != 3
    with _raises("modality: MML modality DI needs rows of modality DI (3); the batch has V, I, DV"):
        mml_loss(x[keep], y[keep], m[keep])
    assert ALL_MODALITIES == FOUR


def test_identity_with_a_single_row_in_a_modality(device):
    x, y, m = _small(device)
    y = y.clone()
    y[9] = 2  # DV now holds identity 0 once, identity 1 twice and identity 2 once
    with _raises(
        "labels: MML modality DV: identity 0 has 1 row(s) of modality DV "
        "but no other row of modality DV to be its positive"
    ):
        mml_loss(x, y, m)


def test_modality_with_one_identity(device):
    x, y, m = _small(device)
    y = y.clone()
    y[4:8] = 0
    with _raises(
        "labels: MML modality I needs at least 2 identities in modality I (for negatives), got 1"
    ):
        mml_loss(x, y, m)


def test_one_identity(device):
    x, y, m = _small(device)
    with _raises("labels: expected at least 2 identities in the batch, got 1 (label 1)"):
        mml_loss(x, torch.ones_like(y), m)


def test_mismatched_lengths(device):
    x, y, m = _small(device)
    with _raises("labels: expected shape (16,) to match features, got (15,)"):
        mml_loss(x, y[1:], m)
    with _raises("modality: expected shape (16,), got (15,)"):
        mml_loss(x, y, m[1:])


def test_nan_features(device):
    x, y, m = _small(device)
    x[7, 0] = float("nan")
    with _raises("features: expected finite values, found NaN or inf (first in row 7)"):
        mml_loss(x, y, m)


def test_bad_modalities_and_reduction(device):
    x, y, m = _small(device)
    with _raises("modalities: expected modality tags 0..3, got 4"):
        mml_loss(x, y, m, modalities=(0, 4))
    with _raises("modalities: expected a sequence of modality tags, got 2"):
        mml_loss(x, y, m, modalities=2)
    with _raises("modalities: expected at least one modality, got none"):
        mml_loss(x, y, m, modalities=())
    with _raises("modalities: each modality may appear once, got [1, 1]"):
        mml_loss(x, y, m, modalities=(1, 1))
    with _raises("reduction: expected 'mean' or 'sum', got 'none'"):
        mml_loss(x, y, m, reduction="none")
    with _raises("margin: expected a finite number >= 0, got nan"):
        mml_loss(x, y, m, margin=float("nan"))
    with _raises("metric: expected 'euclidean' or 'cosine', got 'l1'"):
        mml_terms(x, y, m, metric="l1")
