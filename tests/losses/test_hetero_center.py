"""hetero_center_triplet against a float64 loop oracle written from spec/losses/hetero_center.md."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.losses.hetero_center import HeteroCenterTriplet, hetero_center_triplet
from tests.strategies import feature_batches

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-5)}


def oracle(features, labels, modality, *, margin=0.3, modalities=(0, 1)):
    """Loops: a center per (identity, modality), then one hinge term per center."""
    f = features.detach().cpu().double().tolist()
    y = labels.cpu().tolist()
    t = modality.cpu().tolist()
    ids = sorted({y[i] for i in range(len(f)) if t[i] in modalities})
    centers = {}
    for p in ids:
        for m in modalities:
            rows = [f[i] for i in range(len(f)) if y[i] == p and t[i] == m]
            centers[p, m] = [sum(col) / len(rows) for col in zip(*rows, strict=True)]

    def dist(a, b):
        return math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b, strict=True)))

    terms = []
    for (p, m), a in centers.items():
        other = modalities[1] if m == modalities[0] else modalities[0]
        d_ap = dist(a, centers[p, other])
        d_an = min(dist(a, c) for (q, _), c in centers.items() if q != p)
        terms.append(max(0.0, margin + d_ap - d_an))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(batch=feature_batches(uneven=None), margin=st.sampled_from([0.0, 0.3, 2.0]))
def test_matches_oracle(device, dtype, batch, margin):
    f, labels, modality = batch.features, batch.labels, batch.modality
    f = f.to(device, dtype)
    got = hetero_center_triplet(f, labels.to(device), modality.to(device), margin=margin)
    assert got.dim() == 0 and got.dtype == dtype
    want = oracle(f, labels, modality, margin=margin)
    torch.testing.assert_close(
        got.cpu().double(), torch.tensor(want, dtype=torch.float64), **TOL[dtype]
    )


@given(
    batch=feature_batches(modalities=(0, 1, 2, 3)),
    pair=st.sampled_from([(0, 1), (1, 0), (2, 3), (0, 2), (3, 1)]),
)
def test_other_modalities_ignored_and_pair_configurable(device, batch, pair):
    f, labels, modality = (t.to(device) for t in (batch.features, batch.labels, batch.modality))
    got = hetero_center_triplet(f, labels, modality, modalities=pair)
    torch.testing.assert_close(
        got.cpu().item(), oracle(f, labels, modality, modalities=pair), rtol=1e-10, atol=1e-10
    )
    keep = (modality == pair[0]) | (modality == pair[1])
    only = hetero_center_triplet(f[keep], labels[keep], modality[keep], modalities=pair)
    assert torch.equal(got, only)


@given(batch=feature_batches(uneven=None), seed=st.integers(0, 2**32 - 1))
def test_invariant_to_batch_order(device, batch, seed):
    f, labels, modality = (t.to(device) for t in (batch.features, batch.labels, batch.modality))
    order = torch.randperm(f.shape[0], generator=torch.Generator().manual_seed(seed)).to(device)
    a = hetero_center_triplet(f, labels, modality)
    b = hetero_center_triplet(f[order], labels[order], modality[order])
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_equals_chunked_centers_for_sampler_order(device):
    # The predecessor's batches: all visible rows, then all infrared rows, K rows per identity in
    # the same identity order; its centers are the means of consecutive chunks of K rows.
    gen = torch.Generator().manual_seed(11)
    p, k, d = 4, 3, 5
    ids = torch.tensor([7, 2, 9, 4])
    f = torch.randn(2 * p * k, d, generator=gen, dtype=torch.float64)
    labels = ids.repeat_interleave(k).repeat(2)
    modality = torch.tensor([0, 1]).repeat_interleave(p * k)
    centers = f.view(2 * p, k, d).mean(dim=1)  # chunk c: identity ids[c % p], modality c // p
    terms = []
    for c in range(2 * p):
        counterpart = (c + p) % (2 * p)
        negatives = [j for j in range(2 * p) if j % p != c % p]
        d_ap = (centers[c] - centers[counterpart]).norm()
        d_an = min((centers[c] - centers[j]).norm() for j in negatives)
        terms.append(torch.relu(0.3 + d_ap - d_an))
    want = torch.stack(terms).mean()
    got = hetero_center_triplet(f.to(device), labels.to(device), modality.to(device))
    torch.testing.assert_close(got.cpu(), want, rtol=1e-12, atol=1e-12)


@given(batch=feature_batches(), shift=st.floats(-50, 50), scale=st.floats(0.01, 100))
def test_translation_invariant_and_homogeneous(device, batch, shift, scale):
    f, labels, modality = (t.to(device) for t in (batch.features, batch.labels, batch.modality))
    base = hetero_center_triplet(f, labels, modality, margin=0.3)
    moved = hetero_center_triplet(f + shift, labels, modality, margin=0.3)
    torch.testing.assert_close(moved, base, rtol=1e-9, atol=1e-9 * (1 + abs(shift)))
    scaled = hetero_center_triplet(f * scale, labels, modality, margin=0.3 * scale)
    torch.testing.assert_close(scaled, base * scale, rtol=1e-9, atol=1e-12)


@given(batch=feature_batches(), margin=st.floats(0.0, 1.0))
def test_zero_when_separated_by_more_than_margin(device, batch, margin):
    f = torch.tanh(batch.features) * 0.5 / math.sqrt(batch.features.shape[1])
    f[:, 0] += 10.0 * batch.labels.double()
    f = f.to(device).requires_grad_(True)
    loss = hetero_center_triplet(
        f, batch.labels.to(device), batch.modality.to(device), margin=margin
    )
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(f.grad, torch.zeros_like(f.grad))


@given(batch=feature_batches(), margin=st.floats(0.01, 1.0))
def test_positive_when_overlapping(device, batch, margin):
    # identity 0 becomes a copy of identity 1: its centers coincide with identity 1's, so each
    # of its two centers has a negative at distance 0 and a term >= margin
    f, labels, modality = batch.features.clone(), batch.labels, batch.modality
    for m in batch.modalities:
        f[(labels == 0) & (modality == m)] = f[(labels == 1) & (modality == m)]
    loss = hetero_center_triplet(
        f.to(device), labels.to(device), modality.to(device), margin=margin
    )
    assert loss.item() >= 2 * margin / (2 * batch.p) - 1e-12


@given(batch=feature_batches(identical=True))
def test_identical_features(device, batch):
    f = batch.features.to(device).requires_grad_(True)
    loss = hetero_center_triplet(f, batch.labels.to(device), batch.modality.to(device))
    assert math.isclose(loss.item(), 0.3, rel_tol=1e-12)
    loss.backward()
    assert torch.isfinite(f.grad).all()


@given(batch=feature_batches())
def test_finite_gradients(device, batch):
    f = batch.features.to(device).requires_grad_(True)
    hetero_center_triplet(f, batch.labels.to(device), batch.modality.to(device)).backward()
    assert torch.isfinite(f.grad).all()


def test_gradient_matches_finite_differences(device):
    gen = torch.Generator().manual_seed(2)
    f = torch.randn(16, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    labels = torch.arange(4).repeat_interleave(4).to(device)
    modality = torch.tensor([0, 1]).repeat(8).to(device)
    assert torch.autograd.gradcheck(
        lambda x: hetero_center_triplet(x, labels, modality, margin=3.0), (f,)
    )


def test_low_precision_close_to_float32(device):
    gen = torch.Generator().manual_seed(4)
    f = torch.randn(24, 32, generator=gen).to(device)
    labels = torch.arange(6).repeat_interleave(4).to(device)
    modality = torch.tensor([0, 1]).repeat(12).to(device)
    ref = hetero_center_triplet(f, labels, modality, margin=3.0)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        auto = hetero_center_triplet(f, labels, modality, margin=3.0)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, ref)
    for low in (torch.float16, torch.bfloat16):
        got = hetero_center_triplet(f.to(low), labels, modality, margin=3.0)
        assert got.dtype == torch.float32
        # inputs rounded to `low`; distances of order 10, so an absolute error of ~10 * eps
        tol = 16 * torch.finfo(low).eps
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)


def test_module_matches_function(device):
    f = torch.randn(8, 3, device=device)
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1], device=device)
    modality = torch.tensor([2, 3, 2, 3, 3, 2, 3, 2], device=device)
    module = HeteroCenterTriplet(0.5, modalities=(2, 3))
    assert repr(module) == "HeteroCenterTriplet(margin=0.5, modalities=(2, 3))"
    torch.testing.assert_close(
        module(f, labels, modality),
        hetero_center_triplet(f, labels, modality, margin=0.5, modalities=(2, 3)),
    )


LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
TAGS = torch.tensor([0, 1, 0, 1, 0, 1])
NEEDS = "every identity needs rows in each of V (0), I (1)"
ALL_TAGS = "0 (V), 1 (I), 2 (DV), 3 (DI)"
ALL_NAMES = "V (0), I (1), DV (2), DI (3)"


@pytest.mark.parametrize(
    ("features", "labels", "modality", "options", "message"),
    [
        (
            torch.zeros(6, 2),
            LABELS,
            torch.tensor([0, 1, 0, 0, 0, 1]),
            {},
            "modality: identity labels [1] have no I (1) rows; " + NEEDS,
        ),
        (
            torch.zeros(6, 2),
            LABELS,
            torch.tensor([1, 1, 0, 0, 0, 1]),
            {},
            "modality: identity labels [0] have no V (0) rows; "
            "identity labels [1] have no I (1) rows; " + NEEDS,
        ),
        (
            torch.zeros(6, 2),
            LABELS,
            TAGS,
            {"modalities": (2, 3)},
            "labels: expected at least 2 identities in the batch, got 0",
        ),
        (
            torch.zeros(6, 2),
            LABELS,
            None,
            {},
            "modality: expected a torch.Tensor of modality tags, got <class 'NoneType'>",
        ),
        (torch.zeros(6, 2), LABELS, TAGS[:5], {}, "modality: expected shape (6,), got (5,)"),
        (
            torch.zeros(6, 2),
            LABELS,
            TAGS + 4,
            {},
            "modality: unknown modality tag(s) [4, 5]; expected values in " + ALL_TAGS,
        ),
        (
            torch.zeros(6, 2),
            LABELS[:4],
            TAGS,
            {},
            "labels: expected shape (6,) to match features, got (4,)",
        ),
        (
            torch.zeros(6, 2),
            torch.zeros(6, dtype=torch.int64),
            TAGS,
            {},
            "labels: expected at least 2 identities in the batch, got 1 (label 0)",
        ),
        (
            torch.full((6, 2), float("nan")),
            LABELS,
            TAGS,
            {},
            "features: expected finite values, found NaN or inf (first in row 0)",
        ),
        (
            torch.zeros(6, 2),
            LABELS,
            TAGS,
            {"modalities": (0, 0)},
            "modalities: expected two distinct modality tags out of " + ALL_NAMES + ", got (0, 0)",
        ),
        (
            torch.zeros(6, 2),
            LABELS,
            TAGS,
            {"modalities": (0, 1, 2)},
            "modalities: expected two distinct modality tags out of "
            + ALL_NAMES
            + ", got (0, 1, 2)",
        ),
        (
            torch.zeros(6, 2),
            LABELS,
            TAGS,
            {"margin": -1.0},
            "margin: expected a finite number >= 0, got -1.0",
        ),
    ],
)
def test_bad_input(device, features, labels, modality, options, message):
    def put(t):
        return t.to(device) if isinstance(t, torch.Tensor) else t

    with pytest.raises(VireidError) as info:
        hetero_center_triplet(put(features), put(labels), put(modality), **options)
    assert str(info.value) == message


def test_nonfinite_rows_are_refused_also_when_not_used(device):
    # finiteness is read off the centers when they cover every row; an inf in a row whose tag is
    # not among the modalities (not in any center) must still be refused
    features = torch.zeros(6, 2, device=device)
    features[4, 0] = float("inf")
    labels = torch.tensor([0, 0, 1, 1, 0, 1], device=device)
    modality = torch.tensor([0, 1, 0, 1, 3, 3], device=device)
    with pytest.raises(VireidError) as info:
        hetero_center_triplet(features, labels, modality)
    assert str(info.value) == "features: expected finite values, found NaN or inf (first in row 4)"


@pytest.mark.parametrize("margin", [0.3, 5.0])
def test_second_derivatives(float64_vi_batch, margin):
    """Second derivatives (create_graph) through the centers, checked against finite
    differences; margin 5 keeps every hinge active, 0.3 leaves some at zero."""
    x, labels, modality = float64_vi_batch
    assert torch.autograd.gradgradcheck(
        lambda f: hetero_center_triplet(f, labels, modality, margin=margin), (x,)
    )


def test_module_defaults_are_the_functions():
    # margin 0.3 [predecessor] and the visible/infrared pair, as hetero_center_triplet's defaults
    assert repr(HeteroCenterTriplet()) == "HeteroCenterTriplet(margin=0.3, modalities=(0, 1))"
