"""DID (spec/losses/did.md): a float64 loop oracle, properties, and bad input.

Logits come from ``feature_batches`` with at least 4 columns, so every label 0..P-1 (P <= 4) is a
class of the classifier.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.losses.did import did_loss, did_terms
from tests.strategies import feature_batches

SHORT = ("V", "I", "DV", "DI")
FOUR = (0, 1, 2, 3)
logit_batches = feature_batches(modalities=FOUR, dims=(4, 8))


# --- oracle, written from the spec: one row at a time ----------------------------------------


def oracle_row(z: list[float], label: int, eps: float) -> float:
    top = max(z)
    log_norm = top + math.log(sum(math.exp(v - top) for v in z))
    c = len(z)
    return -sum(((1 - eps) * (k == label) + eps / c) * (v - log_norm) for k, v in enumerate(z))


def oracle_did(logits, labels, modality, tags=FOUR, *, eps=0.0, reduction="rows") -> float:
    rows = logits.detach().cpu().double().tolist()
    ys, ms = labels.tolist(), modality.tolist()
    per_tag = {t: [oracle_row(rows[i], ys[i], eps) for i in range(len(rows)) if ms[i] == t]
               for t in tags}  # fmt: skip
    if reduction == "rows":
        every = [v for t in tags for v in per_tag[t]]
        return sum(every) / len(every)
    return sum(sum(v) / len(v) for v in per_tag.values()) / len(tags)


def _on(batch, device):
    return batch.features.to(device), batch.labels.to(device), batch.modality.to(device)


# --- the oracle ----------------------------------------------------------------------------------


@given(logit_batches, st.sampled_from([0.0, 0.1, 0.5]), st.sampled_from(["rows", "modality"]))
def test_matches_loop_oracle_float64(device, batch, eps, reduction):
    z, y, m = _on(batch, device)
    got = did_loss(z, y, m, epsilon=eps, reduction=reduction)
    assert got.dtype == torch.float64
    want = oracle_did(z, y, m, eps=eps, reduction=reduction)
    assert float(got) == pytest.approx(want, rel=1e-10, abs=1e-12)
    terms = did_terms(z, y, m, epsilon=eps)
    assert list(terms) == list(SHORT)
    for tag, value in zip(FOUR, terms.values(), strict=True):
        assert float(value) == pytest.approx(oracle_did(z, y, m, (tag,), eps=eps), rel=1e-10)


@given(logit_batches, st.lists(st.sampled_from(FOUR), min_size=1, max_size=4, unique=True))
def test_selected_modalities_only(device, batch, tags):
    z, y, m = _on(batch, device)
    got = did_loss(z, y, m, modalities=tuple(tags))
    assert float(got) == pytest.approx(oracle_did(z, y, m, tuple(tags)), rel=1e-10, abs=1e-12)
    keep = torch.isin(m, torch.tensor(tags, device=device))
    present = did_loss(z[keep], y[keep], m[keep], modalities=None)
    assert float(present) == pytest.approx(float(got), rel=1e-12, abs=1e-12)


def test_reductions_differ_only_for_unbalanced_batches(device):
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(9, 5, generator=gen, dtype=torch.float64).to(device)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3], device=device)
    m = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 3], device=device)
    rows, per = did_loss(z, y, m), did_loss(z, y, m, reduction="modality")
    assert float(rows) == pytest.approx(oracle_did(z, y, m), rel=1e-12)
    assert float(per) == pytest.approx(oracle_did(z, y, m, reduction="modality"), rel=1e-12)
    assert abs(float(rows) - float(per)) > 1e-3


@given(logit_batches)
def test_reductions_agree_on_balanced_batches(device, batch):
    z, y, m = _on(batch, device)
    a, b = did_loss(z, y, m), did_loss(z, y, m, reduction="modality")
    assert float(a) == pytest.approx(float(b), rel=1e-12, abs=1e-12)


# --- properties ----------------------------------------------------------------------------------


@given(feature_batches(modalities=FOUR, dims=(4, 8), shuffle=False), st.integers(0, 2**32 - 1))
def test_invariant_to_batch_order(device, batch, seed):
    z, y, m = _on(batch, device)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(device)
    a, b = did_loss(z, y, m), did_loss(z[order], y[order], m[order])
    assert float(b) == pytest.approx(float(a), rel=1e-12, abs=1e-12)


@given(logit_batches, st.floats(-100, 100))
def test_invariant_to_a_per_row_logit_shift(device, batch, shift):
    z, y, m = _on(batch, device)
    rowwise = shift * torch.linspace(-1, 1, len(y), dtype=z.dtype, device=device)[:, None]
    a, b = did_loss(z, y, m), did_loss(z + rowwise, y, m)
    assert float(b) == pytest.approx(float(a), rel=1e-9, abs=1e-9)


@given(logit_batches)
def test_near_zero_when_the_true_class_dominates(device, batch):
    z, y, m = _on(batch, device)
    z = z.clone()
    z[torch.arange(len(y), device=device), y] += 60.0 + (z.max() - z.min())
    assert 0.0 <= float(did_loss(z, y, m)) < 1e-20


@given(logit_batches, st.sampled_from([0.0, 0.3]))
def test_uniform_logits_give_log_c_and_finite_gradients(device, batch, eps):
    z, y, m = _on(batch, device)
    z = torch.zeros_like(z).requires_grad_(True)
    loss = did_loss(z, y, m, epsilon=eps)
    assert float(loss.detach()) == pytest.approx(math.log(z.shape[1]), rel=1e-12)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    # d/dz_c of CE at uniform logits: (1/C - q_c) / N
    c, n = z.shape[1], len(y)
    q = torch.full_like(z, eps / c)
    q[torch.arange(n, device=device), y] += 1 - eps
    torch.testing.assert_close(z.grad, (1.0 / c - q) / n, rtol=1e-12, atol=1e-14)


def test_one_identity_is_defined(device):
    z = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [0.5, 0.0]], device=device)
    y = torch.zeros(4, dtype=torch.int64, device=device)
    m = torch.tensor([0, 1, 2, 3], device=device)
    assert float(did_loss(z, y, m)) == pytest.approx(oracle_did(z, y, m), rel=1e-6)


def test_gradient_matches_finite_differences(device):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(8, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1], device=device)
    m = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3], device=device)
    for reduction in ("rows", "modality"):
        assert torch.autograd.gradcheck(
            lambda f, r=reduction: did_loss(f, y, m, epsilon=0.1, reduction=r), (z,), fast_mode=True
        )


@given(logit_batches)
def test_bfloat16_autocast_within_stated_tolerance(device, batch):
    """Stated tolerance: |L_bf16 - L_f32| <= 2**-6 * (1 + max |logit|).

    Rounding a logit to bfloat16 moves it by at most 2**-8 of its magnitude, and cross-entropy
    moves by at most twice the largest logit change.
    """
    z, y, m = _on(batch, device)
    z32 = z.float()
    ref = did_loss(z32, y, m)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        got = did_loss(z32.bfloat16(), y, m)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    assert abs(float(got) - float(ref)) <= 2**-6 * (1.0 + float(z32.abs().max()))


# --- bad input -----------------------------------------------------------------------------------


def _raises(message: str):
    return pytest.raises(VireidError, match="^" + re.escape(message) + "$")


def _small(device):
    z = torch.zeros(8, 3, device=device)
    y = torch.tensor([0, 1] * 4, device=device)
    m = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3], device=device)
    return z, y, m


def test_missing_modality(device):
    z, y, m = _small(device)
    with _raises("modality: DID needs rows of modality DV (2); the batch has V, I, DI"):
        did_loss(z[m != 2], y[m != 2], m[m != 2])
    with _raises("modality: DID needs rows of modality DV (2); the batch has V, I, DI"):
        did_terms(z[m != 2], y[m != 2], m[m != 2])


def test_mismatched_lengths(device):
    z, y, m = _small(device)
    with _raises("labels: expected shape (8,) to match logits, got (7,)"):
        did_loss(z, y[:7], m)
    with _raises("modality: expected shape (8,), got (9,)"):
        did_loss(z, y, torch.cat([m, m[:1]]))


def test_nan_logits(device):
    z, y, m = _small(device)
    z[5, 2] = float("nan")
    with _raises("logits: expected finite values, found NaN or inf (first in row 5)"):
        did_loss(z, y, m)


def test_labels_outside_the_classifier(device):
    z, y, m = _small(device)
    y = y.clone()
    y[6] = 3  # a row of a modality that is not selected is still checked
    with _raises("labels: expected class indices in 0..2 (logits have 3 columns), got [3]"):
        did_loss(z, y, m, modalities=(0,))
    with _raises("labels: expected an integer tensor, got dtype torch.float32"):
        did_loss(z, y.float(), m)


def test_bad_options(device):
    z, y, m = _small(device)
    with _raises("reduction: expected 'rows' or 'modality', got 'mean'"):
        did_loss(z, y, m, reduction="mean")
    with _raises("modalities: expected modality tags 0..3, got 7"):
        did_loss(z, y, m, modalities=(7,))
    with _raises("epsilon: expected a label-smoothing weight in [0, 1), got 1.5"):
        did_loss(z, y, m, epsilon=1.5)
    with _raises("logits: expected shape (n, d) with d >= 1, got (8,)"):
        did_loss(z[:, 0], y, m)
    with _raises("logits: expected at least one row, got shape (0, 3)"):
        did_loss(z[:0], y[:0], m[:0])


def test_nan_logits_in_the_per_modality_terms(device):
    # did_terms (the logging view, and reduction="modality") refuses non-finite logits too
    z, y, m = _small(device)
    z[5, 2] = float("nan")
    with _raises("logits: expected finite values, found NaN or inf (first in row 5)"):
        did_terms(z, y, m)
    with _raises("logits: expected finite values, found NaN or inf (first in row 5)"):
        did_loss(z, y, m, reduction="modality")


def test_option_errors_come_before_finiteness(device):
    # the options are checked first; finiteness of the logits is left to the loss itself
    z, y, m = _small(device)
    z[5, 2] = float("nan")
    with _raises("epsilon: expected a label-smoothing weight in [0, 1), got 1.5"):
        did_loss(z, y, m, epsilon=1.5)


def test_labels_on_another_device(device):
    # mixed devices are an error naming both ("meta": a second device on every machine, whose
    # tensors have no values; the device is compared before the labels' values are read)
    z, y, m = _small(device)
    message = (
        f"labels, modality: expected tensors on {z.device}, got labels on meta and modality "
        f"on {z.device}"
    )
    with _raises(message):
        did_loss(z, y.to("meta"), m)
    with _raises(message):
        did_terms(z, y.to("meta"), m)
