"""center_alignment against a float64 loop oracle written from spec/losses/center_alignment.md."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.losses.center_alignment import (
    CenterAlignment,
    CenterAlignmentConfig,
    CenterAlignmentTerms,
    center_alignment,
    center_alignment_terms,
)
from tests.strategies import feature_batches

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-5)}


def _dist(a, b):
    return math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b, strict=True)))


def _mean(rows):
    return [sum(col) / len(rows) for col in zip(*rows, strict=True)]


def oracle(features, labels, modality, cfg):
    """Loops over rows, identities and identity pairs in float64. Returns (pull, push)."""
    f = features.detach().cpu().double().tolist()
    y = labels.cpu().tolist()
    t = modality.cpu().tolist()
    rows = [i for i in range(len(f)) if t[i] in cfg.modalities]
    ids = sorted({y[i] for i in rows})
    centers = {}
    for p in ids:
        if cfg.center == "sample_mean":
            centers[p] = _mean([f[i] for i in rows if y[i] == p])
        else:
            per_m = [_mean([f[i] for i in rows if y[i] == p and t[i] == m]) for m in cfg.modalities]
            centers[p] = _mean(per_m)
    pulls = []
    for i in rows:
        d = _dist(f[i], centers[y[i]])
        pulls.append(d * d if cfg.pull_distance == "squared" else d)
    pull = sum(pulls) / len(pulls)
    if cfg.push == "hardest":
        terms = [
            max(0.0, cfg.margin - min(_dist(centers[p], centers[q]) for q in ids if q != p))
            for p in ids
        ]
    else:
        terms = [
            max(0.0, cfg.margin - _dist(centers[p], centers[q])) for p in ids for q in ids if q != p
        ]
    return pull, sum(terms) / len(terms)


configs = st.builds(
    CenterAlignmentConfig,
    margin=st.sampled_from([0.0, 0.3, 3.0]),
    pull_weight=st.sampled_from([0.0, 1.0, 0.5]),
    push_weight=st.sampled_from([1.0, 2.0]),
    center=st.sampled_from(["modality_mean", "sample_mean"]),
    pull_distance=st.sampled_from(["euclidean", "squared"]),
    push=st.sampled_from(["hardest", "all"]),
    detach_centers=st.booleans(),
)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(batch=feature_batches(uneven=None), cfg=configs)
def test_matches_oracle(device, dtype, batch, cfg):
    f, labels, modality = batch.features, batch.labels, batch.modality
    f = f.to(device, dtype)
    terms = center_alignment_terms(f, labels.to(device), modality.to(device), cfg)
    pull, push = oracle(f, labels, modality, cfg)
    for got, want in ((terms.pull, pull), (terms.push, push)):
        assert got.dim() == 0 and got.dtype == dtype
        torch.testing.assert_close(
            got.cpu().double(), torch.tensor(want, dtype=torch.float64), **TOL[dtype]
        )
    total = cfg.pull_weight * pull + cfg.push_weight * push
    got_total = center_alignment(f, labels.to(device), modality.to(device), cfg)
    torch.testing.assert_close(
        got_total.cpu().double(), torch.tensor(total, dtype=torch.float64), **TOL[dtype]
    )
    assert terms.as_dict().keys() == {"pull", "push"}


@given(batch=feature_batches(modalities=(0, 1, 2, 3)), cfg=configs)
def test_four_modalities_and_ignored_tags(device, batch, cfg):
    f, labels, modality = (t.to(device) for t in (batch.features, batch.labels, batch.modality))
    four = CenterAlignmentConfig(**{**cfg.__dict__, "modalities": (0, 1, 2, 3)})
    terms = center_alignment_terms(f, labels, modality, four)
    pull, push = oracle(f, labels, modality, four)
    torch.testing.assert_close(terms.pull.item(), pull, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(terms.push.item(), push, rtol=1e-10, atol=1e-10)
    # default modalities (V, I): the derivative rows change nothing
    keep = modality < 2
    a = center_alignment_terms(f, labels, modality, cfg)
    b = center_alignment_terms(f[keep], labels[keep], modality[keep], cfg)
    assert torch.equal(a.pull, b.pull) and torch.equal(a.push, b.push)


@given(batch=feature_batches(uneven=None), cfg=configs, seed=st.integers(0, 2**32 - 1))
def test_invariant_to_batch_order(device, batch, cfg, seed):
    f, labels, modality = (t.to(device) for t in (batch.features, batch.labels, batch.modality))
    order = torch.randperm(f.shape[0], generator=torch.Generator().manual_seed(seed)).to(device)
    a = center_alignment_terms(f, labels, modality, cfg)
    b = center_alignment_terms(f[order], labels[order], modality[order], cfg)
    torch.testing.assert_close(a.pull, b.pull, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.push, b.push, rtol=1e-12, atol=1e-12)


@given(batch=feature_batches(), cfg=configs, shift=st.floats(-50, 50), scale=st.floats(0.01, 100))
def test_translation_invariant_and_scale_behaviour(device, batch, cfg, shift, scale):
    f, labels, modality = (t.to(device) for t in (batch.features, batch.labels, batch.modality))
    base = center_alignment_terms(f, labels, modality, cfg)
    moved = center_alignment_terms(f + shift, labels, modality, cfg)
    tol = dict(rtol=1e-8, atol=1e-8 * (1 + abs(shift)) ** 2)
    torch.testing.assert_close(moved.pull, base.pull, **tol)
    torch.testing.assert_close(moved.push, base.push, **tol)
    # pull is homogeneous of degree 1 (Euclidean) or 2 (squared); push with a scaled margin, 1
    scaled_cfg = CenterAlignmentConfig(**{**cfg.__dict__, "margin": cfg.margin * scale})
    scaled = center_alignment_terms(f * scale, labels, modality, scaled_cfg)
    power = 2 if cfg.pull_distance == "squared" else 1
    torch.testing.assert_close(scaled.pull, base.pull * scale**power, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(scaled.push, base.push * scale, rtol=1e-9, atol=1e-12)


@given(batch=feature_batches(), margin=st.floats(0.0, 5.0), spread=st.booleans())
def test_separated_centers_give_no_push(device, batch, margin, spread):
    # identity p sits around 10 * (p + 1) on the first axis: centers > 5 >= margin apart
    f = torch.zeros_like(batch.features)
    if spread:
        f = torch.tanh(batch.features)
    f[:, 0] += 10.0 * (batch.labels.double() + 1)
    f = f.to(device).requires_grad_(True)
    cfg = CenterAlignmentConfig(margin=margin)
    terms = center_alignment_terms(f, batch.labels.to(device), batch.modality.to(device), cfg)
    assert terms.push.item() == 0.0
    if not spread:  # every identity collapsed onto its center: nothing left to pull either
        assert terms.total.item() == 0.0
        terms.total.backward()
        assert torch.equal(f.grad, torch.zeros_like(f.grad))


@given(batch=feature_batches(), margin=st.floats(0.01, 2.0))
def test_positive_when_identities_overlap(device, batch, margin):
    f, labels, modality = batch.features.clone(), batch.labels, batch.modality
    for m in batch.modalities:
        f[(labels == 0) & (modality == m)] = f[(labels == 1) & (modality == m)]
    cfg = CenterAlignmentConfig(margin=margin)
    terms = center_alignment_terms(f.to(device), labels.to(device), modality.to(device), cfg)
    # identities 0 and 1 share a center: both have a nearest center at distance 0
    assert terms.push.item() >= 2 * margin / batch.p - 1e-12


@pytest.mark.parametrize("pull_distance", ["euclidean", "squared"])
@given(batch=feature_batches(identical=True))
def test_identical_features(device, pull_distance, batch):
    f = batch.features.to(device).requires_grad_(True)
    cfg = CenterAlignmentConfig(pull_distance=pull_distance)
    terms = center_alignment_terms(f, batch.labels.to(device), batch.modality.to(device), cfg)
    # the mean of equal values may be off by an ulp, so the distances are 0 up to rounding
    scale = 1e-12 * (1 + float(f.detach().abs().max())) ** power(pull_distance)
    assert terms.pull.item() <= scale and math.isclose(terms.push.item(), 0.3, abs_tol=scale)
    terms.total.backward()
    assert torch.isfinite(f.grad).all()


@pytest.mark.parametrize("detach_centers", [False, True])
@pytest.mark.parametrize("first", [1.0, 1e-30], ids=["equal", "underflow"])
def test_gradient_at_zero_distance_is_zero(device, detach_centers, first):
    # spec: the gradient at zero distance is 0. Identity 0's rows coincide ("equal") or differ
    # by 1e-30, whose square underflows in float32 so that the distance is 0 all the same; the
    # identities are far apart (no push): every gradient is exactly 0.
    second = 1.0 if first == 1.0 else 0.0
    f = torch.tensor([[first, 0.0], [second, 0.0], [5.0, 0.0], [5.0, 0.0]], device=device)
    f.requires_grad_(True)
    labels = torch.tensor([0, 0, 1, 1], device=device)
    modality = torch.tensor([0, 1, 0, 1], device=device)
    cfg = CenterAlignmentConfig(detach_centers=detach_centers)
    terms = center_alignment_terms(f, labels, modality, cfg)
    assert terms.pull.item() == 0.0 and terms.push.item() == 0.0
    terms.total.backward()
    assert torch.equal(f.grad, torch.zeros_like(f))


@pytest.mark.parametrize("cls", [CenterAlignmentConfig, CenterAlignmentTerms])
def test_config_and_terms_are_frozen(cls):
    one = torch.tensor(1.0)
    value = CenterAlignmentConfig() if cls is CenterAlignmentConfig else cls(one, one, 1.0, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.pull_weight = 2.0


def test_one_modality_is_a_valid_set():
    # spec: any set of distinct tags is accepted, a single one included
    assert CenterAlignmentConfig(modalities=(1,)).modalities == (1,)


@given(batch=feature_batches(), cfg=configs)
def test_finite_gradients(device, batch, cfg):
    f = batch.features.to(device).requires_grad_(True)
    center_alignment(f, batch.labels.to(device), batch.modality.to(device), cfg).backward()
    assert torch.isfinite(f.grad).all()


def test_gradients(device):
    gen = torch.Generator().manual_seed(8)
    f = torch.randn(12, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    labels = torch.arange(3).repeat_interleave(4).to(device)
    modality = torch.tensor([0, 1]).repeat(6).to(device)
    for push in ("hardest", "all"):
        for pull_distance in ("euclidean", "squared"):
            cfg = CenterAlignmentConfig(margin=5.0, push=push, pull_distance=pull_distance)
            assert torch.autograd.gradcheck(
                lambda x, c=cfg: center_alignment(x, labels, modality, c), (f,)
            )
    # detached centers: the pull gradient of row i is (f_i - c_{y_i}) / (n |f_i - c_{y_i}|)
    cfg = CenterAlignmentConfig(detach_centers=True)
    pull = center_alignment_terms(f, labels, modality, cfg).pull
    (grad,) = torch.autograd.grad(pull, f)
    with torch.no_grad():
        centers = f.view(3, 4, 3).mean(dim=1)[labels]
        diff = f - centers
        want = diff / (12 * diff.norm(dim=1, keepdim=True))
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-12)


def test_low_precision_close_to_float32(device):
    gen = torch.Generator().manual_seed(4)
    f = torch.randn(24, 32, generator=gen).to(device)
    labels = torch.arange(6).repeat_interleave(4).to(device)
    modality = torch.tensor([0, 1]).repeat(12).to(device)
    cfg = CenterAlignmentConfig(margin=8.0, push="all")
    ref = center_alignment_terms(f, labels, modality, cfg)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        auto = center_alignment_terms(f, labels, modality, cfg)
    assert auto.pull.dtype == auto.push.dtype == torch.float32
    torch.testing.assert_close(auto.total, ref.total)
    for low in (torch.float16, torch.bfloat16):
        got = center_alignment_terms(f.to(low), labels, modality, cfg)
        assert got.total.dtype == torch.float32
        # inputs rounded to `low`; terms of order 10, so an absolute error of ~10 * eps
        tol = 16 * torch.finfo(low).eps
        torch.testing.assert_close(got.pull, ref.pull, rtol=tol, atol=tol)
        torch.testing.assert_close(got.push, ref.push, rtol=tol, atol=tol)


@pytest.mark.parametrize("pull_weight", [0.0, 0.5, 1.0, 2.0])
def test_total_weights_both_terms(device, pull_weight):
    # total = pull_weight * pull + push_weight * push, whatever the weights (spec: the total)
    pull, push = torch.tensor(3.0, device=device), torch.tensor(5.0, device=device)
    terms = CenterAlignmentTerms(pull, push, pull_weight=pull_weight, push_weight=0.5)
    assert terms.total.item() == pull_weight * 3.0 + 2.5
    assert terms.part_weights() == {"pull": pull_weight, "push": 0.5}


def test_module(device):
    f = torch.randn(8, 3, device=device)
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1], device=device)
    modality = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0], device=device)
    cfg = CenterAlignmentConfig(margin=1.0, push_weight=0.5)
    module = CenterAlignment(cfg)
    assert "margin=1.0" in repr(module)
    got = module(f, labels, modality)
    want = center_alignment_terms(f, labels, modality, cfg)
    torch.testing.assert_close(got.total, want.pull + 0.5 * want.push)


def power(pull_distance):
    return 2 if pull_distance == "squared" else 1


LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
TAGS = torch.tensor([0, 1, 0, 1, 0, 1])
NEEDS = "every identity needs rows in each of V (0), I (1)"
ALL_NAMES = "V (0), I (1), DV (2), DI (3)"


@pytest.mark.parametrize(
    ("features", "labels", "modality", "message"),
    [
        (
            torch.zeros(6, 2),
            LABELS,
            torch.tensor([0, 1, 0, 0, 0, 1]),
            "modality: identity labels [1] have no I (1) rows; " + NEEDS,
        ),
        (
            torch.zeros(6, 2),
            LABELS,
            None,
            "modality: expected a torch.Tensor of modality tags, got <class 'NoneType'>",
        ),
        (torch.zeros(6, 2), LABELS, TAGS[:4], "modality: expected shape (6,), got (4,)"),
        (
            torch.zeros(6, 2),
            LABELS[:5],
            TAGS,
            "labels: expected shape (6,) to match features, got (5,)",
        ),
        (
            torch.zeros(6, 2),
            torch.full((6,), 4),
            TAGS,
            "labels: expected at least 2 identities in the batch, got 1 (label 4)",
        ),
        (
            torch.tensor([[0.0, 1]] * 5 + [[float("inf"), 0]]),
            LABELS,
            TAGS,
            "features: expected finite values, found NaN or inf (first in row 5)",
        ),
    ],
)
def test_bad_input(device, features, labels, modality, message):
    def put(t):
        return t.to(device) if isinstance(t, torch.Tensor) else t

    with pytest.raises(VireidError) as info:
        center_alignment_terms(put(features), put(labels), put(modality))
    assert str(info.value) == message


def test_sample_mean_accepts_one_modality_identities(device):
    f = torch.tensor([[0.0], [2.0], [10.0], [14.0]], device=device)
    labels = torch.tensor([0, 0, 1, 1], device=device)
    modality = torch.tensor([0, 0, 1, 1], device=device)
    terms = center_alignment_terms(f, labels, modality, CenterAlignmentConfig(center="sample_mean"))
    assert terms.pull.item() == 1.5 and terms.push.item() == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"margin": -0.5}, "margin: expected a finite number >= 0, got -0.5"),
        ({"pull_weight": float("inf")}, "pull_weight: expected a finite number >= 0, got inf"),
        ({"push_weight": "1"}, "push_weight: expected a finite number >= 0, got '1'"),
        (
            {"modalities": (0, 0)},
            "modalities: expected distinct modality tags out of " + ALL_NAMES + ", got (0, 0)",
        ),
        (
            {"modalities": (0, 7)},
            "modalities: expected distinct modality tags out of " + ALL_NAMES + ", got (0, 7)",
        ),
        (
            {"modalities": ()},
            "modalities: expected distinct modality tags out of " + ALL_NAMES + ", got ()",
        ),
        (  # not tags at all (unhashable): the same message, not a TypeError
            {"modalities": ([0], [1])},
            "modalities: expected distinct modality tags out of " + ALL_NAMES + ", got ([0], [1])",
        ),
        (
            {"center": "median"},
            "center: expected one of 'modality_mean', 'sample_mean', got 'median'",
        ),
        (
            {"pull_distance": "l1"},
            "pull_distance: expected one of 'euclidean', 'squared', got 'l1'",
        ),
        ({"push": "soft"}, "push: expected one of 'hardest', 'all', got 'soft'"),
    ],
)
def test_bad_config(options, message):
    with pytest.raises(VireidError) as info:
        CenterAlignmentConfig(**options)
    assert str(info.value) == message


def test_gradients_of_every_center_kind_on_uneven_groups(device):
    # the centers and the pull are one node with a written-out backward: check it for both
    # center kinds and both pull distances, with groups of unequal size (the modality means then
    # weigh rows unequally); detached centers are not a derivative (test_gradients checks them)
    gen = torch.Generator().manual_seed(9)
    f = torch.randn(12, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    labels = torch.arange(3).repeat_interleave(4).to(device)
    modality = torch.tensor([0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1]).to(device)
    for center in ("modality_mean", "sample_mean"):
        for pull_distance in ("euclidean", "squared"):
            cfg = CenterAlignmentConfig(margin=5.0, center=center, pull_distance=pull_distance)
            assert torch.autograd.gradcheck(
                lambda x, c=cfg: center_alignment(x, labels, modality, c), (f,)
            )


def test_nonfinite_rows_are_refused_also_when_not_used(device):
    # finiteness is read off the centers when they cover every row; a NaN in a row whose tag is
    # not among the modalities (not in any center) must still be refused
    features = torch.zeros(6, 2, device=device)
    features[5, 1] = float("nan")
    labels = torch.tensor([0, 0, 1, 1, 0, 1], device=device)
    modality = torch.tensor([0, 1, 0, 1, 2, 2], device=device)
    with pytest.raises(VireidError) as info:
        center_alignment(features, labels, modality)
    assert str(info.value) == "features: expected finite values, found NaN or inf (first in row 5)"
    features[5, 1] = 0.0
    features[1, 0] = -float("inf")  # a used row: its center is not finite
    with pytest.raises(VireidError) as info:
        center_alignment(features, labels, modality)
    assert str(info.value) == "features: expected finite values, found NaN or inf (first in row 1)"


def test_shape_errors_come_before_finiteness(device):
    # the shapes are checked first; finiteness is read off the centers after them
    features = torch.zeros(4, 2, device=device)
    features[0, 0] = float("nan")
    with pytest.raises(VireidError) as info:
        center_alignment(features, torch.tensor([0, 0, 1], device=device), torch.zeros(4))
    assert str(info.value) == "labels: expected shape (4,) to match features, got (3,)"


@pytest.mark.parametrize(
    "config",
    [
        CenterAlignmentConfig(),
        CenterAlignmentConfig(center="sample_mean", pull_distance="squared", push="all"),
        CenterAlignmentConfig(pull_distance="squared", margin=5.0),
    ],
)
def test_second_derivatives(float64_vi_batch, config):
    """Under create_graph the pull's written-out backward gives way to autograd: second
    derivatives of both terms checked against finite differences."""
    x, labels, modality = float64_vi_batch

    def terms(f):
        out = center_alignment_terms(f, labels, modality, config)
        return out.pull, out.push

    assert torch.autograd.gradgradcheck(terms, (x,))


def test_second_derivatives_with_detached_centers(float64_vi_batch):
    """With the pull's centers detached, the first gradient is not the gradient of a function of
    the features, so finite differences are no yardstick; Hessian-vector products are compared
    with those of the pull written in plain autograd operations from the spec."""
    x, labels, modality = float64_vi_batch
    gen = torch.Generator().manual_seed(9)
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.device)
    config = CenterAlignmentConfig(detach_centers=True)

    def plain_pull(f):
        ids = labels.unique()
        centers = torch.stack(
            [sum(f[(labels == p) & (modality == m)].mean(dim=0) for m in (0, 1)) / 2 for p in ids]
        )
        return (centers.detach()[torch.searchsorted(ids, labels)] - f).norm(dim=1).mean()

    hvps = []
    for pull in (lambda f: center_alignment_terms(f, labels, modality, config).pull, plain_pull):
        (grad,) = torch.autograd.grad(pull(x), x, create_graph=True)
        hvps.append(torch.autograd.grad((grad * v).sum(), x)[0])
    torch.testing.assert_close(hvps[0], hvps[1], rtol=1e-10, atol=1e-12)
