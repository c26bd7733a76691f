"""compute_losses (spec/losses/loss_spec.md): selection, naming and weighting of the terms.

The reference values are the individual loss functions called by hand on the hand-selected
tensors, so these tests check the selection, naming and weighting, not the losses themselves
(each has its own oracle tests).
"""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.losses.center_alignment import CenterAlignmentConfig, center_alignment_terms
from reference.losses.did import did_loss, did_terms
from reference.losses.dispatch import compute_losses
from reference.losses.hetero_center import hetero_center_triplet
from reference.losses.identity import identity_loss
from reference.losses.loss_spec import LossEntry, LossSpec
from reference.losses.mdl import mdl_loss, mdl_terms
from reference.losses.mml import mml_loss, mml_terms
from reference.losses.presets import (
    baseline_losses,
    method_a_losses,
)
from reference.losses.triplet import batch_hard_triplet
from reference.models.output import ModelOutput
from tests.strategies import FeatureBatch, feature_batches


def _fixed_batch(p: int, k: int, modalities: tuple[int, ...], seed: int = 0) -> FeatureBatch:
    """A deterministic P x K x M batch in shuffled order (for the tests without hypothesis)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k * len(modalities))
    modality = torch.tensor(modalities).repeat_interleave(k).repeat(p)
    order = torch.randperm(labels.numel(), generator=gen)
    features = torch.randn(labels.numel(), 4, generator=gen, dtype=torch.float64)
    return FeatureBatch(features, labels[order], modality[order], p, k, modalities)


def _output(batch, device, *, coarse=3, fine=6, classes=5, seed=0) -> ModelOutput:
    """An output with global, coarse and fine branches; global features are the batch's."""
    gen = torch.Generator().manual_seed(seed)
    n = batch.labels.numel()
    features = {"global": batch.features.to(device)}
    for gran, count in (("coarse", coarse), ("fine", fine)):
        for i in range(count):
            features[f"{gran}.{i}"] = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    features = {k: v.to(device) for k, v in features.items()}
    logits = {
        k: torch.randn(n, classes, generator=gen, dtype=torch.float64).to(device) for k in features
    }
    return ModelOutput(
        features=features,
        logits=logits,
        modality=batch.modality.to(device),
        embedding=torch.zeros(n, 4, dtype=torch.float64, device=device),
    )


def _by_hand(spec: LossSpec, out: ModelOutput, y: torch.Tensor) -> dict[str, tuple]:
    """(value, weight) of every term, from the individual loss functions."""
    m = out.modality
    got: dict[str, tuple] = {}
    for e in spec.entries:
        kw = e.kwargs()
        source = out.logits if e.loss in ("id", "did") else out.features
        gran = e.on.split(".")[0]
        stripes = out.branches(gran) if gran != "global" else ["global"]
        if e.on.endswith(".*"):
            selected = [(b, source[b]) for b in stripes]
        elif e.on in ("coarse", "fine"):
            selected = [(e.on, torch.cat([source[b] for b in stripes], dim=1))]
        else:
            selected = [(e.on, source[e.on])]
        for b, x in selected:
            if e.loss == "id":
                got[f"id/{b}"] = (identity_loss(x, y, **kw), e.weight)
            elif e.loss == "tri":
                got[f"tri/{b}"] = (batch_hard_triplet(x, y, **kw), e.weight)
            elif e.loss == "hctri":
                got[f"hctri/{b}"] = (hetero_center_triplet(x, y, m, **kw), e.weight)
            elif e.loss == "did":
                got[f"did/{b}"] = (did_loss(x, y, m, **kw), e.weight)
            elif e.loss == "mml":
                got[f"mml/{b}"] = (mml_loss(x, y, m, **kw), e.weight)
            elif e.loss == "mdl":
                got[f"mdl/{b}"] = (mdl_loss(x, y, m, **kw), e.weight)
            else:
                cfg = CenterAlignmentConfig(**kw)
                ca = center_alignment_terms(x, y, m, cfg)
                got[f"ca.pull/{b}"] = (ca.pull, e.weight * cfg.pull_weight)
                got[f"ca.push/{b}"] = (ca.push, e.weight * cfg.push_weight)
    return got


def _assert_matches_by_hand(spec, out, y):
    terms = compute_losses(spec, out, y)
    want = _by_hand(spec, out, y)
    assert list(terms.terms) == list(want)  # every term, by name, in entry order
    for name, (value, weight) in want.items():
        assert torch.equal(terms.terms[name], value), name
        assert terms.weights[name] == weight, name
    total = sum(w * v for v, w in want.values())
    torch.testing.assert_close(terms.total, total, rtol=1e-12, atol=1e-12)
    return terms


@given(feature_batches(modalities=(0, 1, 2, 3)).filter(lambda b: b.k >= 2), st.data())
def test_random_weights_total_is_the_weighted_sum(device, batch, data):
    out = _output(batch, device, coarse=2, fine=0)
    ws = data.draw(st.lists(st.floats(0, 10), min_size=4, max_size=4))
    spec = LossSpec(
        "w",
        (
            LossEntry("did", "coarse.*", ws[0]),
            LossEntry("mml", "coarse", ws[1], {"modalities": None}),
            LossEntry("mdl", "global", ws[2]),
            LossEntry("tri", "coarse.1", ws[3]),
        ),
    )
    _assert_matches_by_hand(spec, out, batch.labels.to(device))


@settings(max_examples=10)  # each example runs Method A's preset twice
@given(feature_batches(modalities=(0, 1), shuffle=False), st.integers(0, 2**32 - 1))
def test_terms_are_invariant_to_batch_order(device, batch, seed):
    out = _output(batch, device)
    y = batch.labels.to(device)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(device)
    shuffled = ModelOutput(
        features={k: v[order] for k, v in out.features.items()},
        logits={k: v[order] for k, v in out.logits.items()},
        modality=out.modality[order],
        embedding=out.embedding[order],
    )
    a = compute_losses(method_a_losses(), out, y).as_floats()
    b = compute_losses(method_a_losses(), shuffled, y[order]).as_floats()
    assert list(a) == list(b)
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12), k


def test_backward_reaches_every_selected_branch(device):
    batch = _fixed_batch(3, 2, (0, 1), seed=1)
    out = _output(batch, device)
    for t in (*out.features.values(), *out.logits.values()):
        t.requires_grad_(True)
    compute_losses(method_a_losses(), out, batch.labels.to(device)).total.backward()
    for name, t in (*out.features.items(), *out.logits.items()):
        assert t.grad is not None and torch.isfinite(t.grad).all(), name


def test_stripes_in_numeric_order_and_concatenation_order(device):
    n = 4
    feats = {f"fine.{i}": torch.full((n, 1), float(i), device=device) for i in (10, 2, 0)}
    out = ModelOutput(
        features=feats,
        logits={k: torch.zeros(n, 2, device=device) for k in feats},
        modality=torch.tensor([0, 1, 0, 1], device=device),
        embedding=torch.zeros(n, 1, device=device),
    )
    y = torch.tensor([0, 0, 1, 1], device=device)
    terms = compute_losses(LossSpec("s", (LossEntry("id", "fine.*"),)), out, y)
    assert list(terms.terms) == ["id/fine.0", "id/fine.2", "id/fine.10"]
    # the concatenation is [fine.0 | fine.2 | fine.10]: put identity 1 apart only in fine.10
    feats["fine.10"] = torch.tensor([[0.0], [0.0], [9.0], [9.0]], device=device)
    spec = LossSpec("c", (LossEntry("tri", "fine", options={"margin": 0.0}),))
    assert float(compute_losses(spec, out, y).terms["tri/fine"]) == 0.0


def test_name_override_separates_two_entries(device):
    batch = _fixed_batch(3, 2, (0, 1), seed=1)
    out, y = _output(batch, device), batch.labels.to(device)
    spec = LossSpec(
        "two margins",
        (
            LossEntry("tri", "global", options={"margin": 0.1}),
            LossEntry("tri", "global", 0.5, {"margin": 0.9}, name="tri_wide"),
        ),
    )
    terms = compute_losses(spec, out, y)
    assert list(terms.terms) == ["tri/global", "tri_wide/global"]
    x = out.features["global"]
    assert torch.equal(terms.terms["tri_wide/global"], batch_hard_triplet(x, y, margin=0.9))


@pytest.mark.parametrize(
    ("loss", "reduction", "subs"),
    [
        ("did", "rows", ["V", "I", "DV", "DI"]),
        ("did", "modality", ["V", "I", "DV", "DI"]),
        ("mml", "mean", ["V", "I", "DV", "DI"]),
        ("mml", "sum", ["V", "I", "DV", "DI"]),
        ("mdl", "mean", ["V->I", "I->V", "V->DI", "DI->V", "DV->I", "I->DV", "DV->DI", "DI->DV"]),
        ("mdl", "sum", ["V->I", "I->V", "V->DI", "DI->V", "DV->I", "I->DV", "DV->DI", "DI->DV"]),
    ],
)
def test_split_reports_each_own_term_and_keeps_the_total(device, loss, reduction, subs):
    batch = _fixed_batch(3, 2, (0, 1, 2, 3), seed=4)
    if loss == "did":  # unbalanced: one more V row, so "rows" weighs V by 7/25
        extra = _fixed_batch(3, 2, (0,), seed=5)
        batch = FeatureBatch(
            torch.cat([batch.features, extra.features[:1]]),
            torch.cat([batch.labels, extra.labels[:1]]),
            torch.cat([batch.modality, extra.modality[:1]]),
            3,
            2,
            (0, 1, 2, 3),
        )
    out, y = _output(batch, device, coarse=0, fine=0), batch.labels.to(device)
    whole = LossSpec("w", (LossEntry(loss, "global", 0.5, {"reduction": reduction}),))
    split = LossSpec("s", (LossEntry(loss, "global", 0.5, {"reduction": reduction}, split=True),))
    a, b = compute_losses(whole, out, y), compute_losses(split, out, y)
    assert list(b.terms) == [f"{loss}/global/{k}" for k in subs]
    torch.testing.assert_close(b.total, a.total, rtol=1e-12, atol=1e-12)
    fn = {"did": did_terms, "mml": mml_terms, "mdl": mdl_terms}[loss]
    own = fn(out.logits["global"] if loss == "did" else out.features["global"], y, out.modality)
    for k in subs:
        assert torch.equal(b.terms[f"{loss}/global/{k}"], own[k])
    if loss == "did" and reduction == "rows":
        assert b.weights["did/global/V"] == pytest.approx(0.5 * 7 / 25)
        assert b.weights["did/global/I"] == pytest.approx(0.5 * 6 / 25)
    elif reduction in ("mean", "modality"):
        assert set(b.weights.values()) == {0.5 / len(subs)}
    else:
        assert set(b.weights.values()) == {0.5}


def _raises(message: str):
    return pytest.raises(VireidError, match="^" + re.escape(message) + "$")


def _tiny(device) -> ModelOutput:
    return ModelOutput(
        features={
            "global": torch.zeros(4, 2, device=device),
            "fine.0": torch.zeros(4, 2, device=device),
        },
        logits={"global": torch.zeros(4, 3, device=device)},
        modality=torch.tensor([0, 1, 0, 1], device=device),
        embedding=torch.zeros(4, 2, device=device),
    )


def test_missing_branch_names_it_and_lists_the_output(device):
    out, y = _tiny(device), torch.tensor([0, 0, 1, 1], device=device)
    with _raises(
        "entries[1] (id on 'fine.0'): the model output has no logits branch 'fine.0'; "
        "its logits are 'global'"
    ):
        compute_losses(
            LossSpec("x", (LossEntry("id", "global"), LossEntry("id", "fine.0"))), out, y
        )
    with _raises(
        "entries[0] (hctri on 'coarse'): the model output has no features branch of granularity "
        "'coarse'; its features are 'global', 'fine.0'"
    ):
        compute_losses(LossSpec("x", (LossEntry("hctri", "coarse"),)), out, y)
    with _raises(
        "entries[0] (tri on 'fine.3'): the model output has no features branch 'fine.3'; "
        "its features are 'global', 'fine.0'"
    ):
        compute_losses(LossSpec("x", (LossEntry("tri", "fine.3"),)), out, y)


def test_labels_must_match_the_output(device):
    out = _tiny(device)
    with _raises("labels: expected shape (4,) to match the model output, got (3,)"):
        compute_losses(baseline_losses(), out, torch.tensor([0, 0, 1], device=device))
    with _raises("output: expected a ModelOutput, got <class 'dict'>"):
        compute_losses(baseline_losses(), {}, torch.tensor([0, 0, 1, 1], device=device))
    with _raises("spec: expected a LossSpec, got <class 'str'>"):
        compute_losses("baseline", out, torch.tensor([0, 0, 1, 1], device=device))
