"""LossSpec and compute_losses (spec/losses/loss_spec.md).

The reference values are the individual loss functions called by hand on the hand-selected
tensors, so these tests check the selection, naming and weighting, not the losses themselves
(each has its own oracle tests).
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.losses.center_alignment import CenterAlignmentConfig, center_alignment_terms
from reference.losses.did import did_loss, did_terms
from reference.losses.hetero_center import hetero_center_triplet
from reference.losses.identity import identity_loss
from reference.losses.loss_spec import (
    LOSSES,
    PRESETS,
    LossEntry,
    LossSpec,
    baseline_losses,
    compute_losses,
    method_a_losses,
    method_b_losses,
    predecessor_losses,
    preset,
)
from reference.losses.mdl import mdl_loss, mdl_terms
from reference.losses.mml import mml_loss, mml_terms
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


# --- presets on hand-built outputs ---------------------------------------------------------------


@settings(max_examples=10)  # each example runs three presets, ~40 loss calls
@given(feature_batches(modalities=(0, 1)), st.sampled_from(["sysu", "regdb"]))
def test_two_modality_presets_equal_the_individual_calls(device, batch, dataset):
    out = _output(batch, device)
    y = batch.labels.to(device)
    for make in (baseline_losses, predecessor_losses, method_a_losses):
        _assert_matches_by_hand(make(dataset), out, y)


@given(feature_batches(modalities=(0, 1, 2, 3)).filter(lambda b: b.k >= 2))
def test_method_b_preset_equals_the_individual_calls(device, batch):
    out = _output(batch, device, coarse=0, fine=0)
    terms = _assert_matches_by_hand(method_b_losses(), out, batch.labels.to(device))
    assert list(terms.terms) == ["did/global", "mml/global", "mdl/global"]


def test_preset_term_names_and_weights(device):
    batch = _fixed_batch(3, 2, (0, 1))
    out = _output(batch, device)
    y = batch.labels.to(device)
    sysu = compute_losses(method_a_losses("sysu"), out, y)
    regdb = compute_losses(predecessor_losses("regdb"), out, y)
    fine = [f"fine.{i}" for i in range(6)]
    coarse = [f"coarse.{i}" for i in range(3)]
    assert list(sysu.terms) == [
        "id/global",
        *(f"id/{b}" for b in fine),
        "hctri/fine",
        *(f"hctri/{b}" for b in fine),
        *(f"id/{b}" for b in coarse),
        "hctri/coarse",
        *(f"hctri/{b}" for b in coarse),
        "ca.pull/global",
        "ca.push/global",
    ]
    assert {sysu.weights[f"hctri/{b}"] for b in fine + coarse} == {1.0}
    assert list(regdb.terms) == [*(f"id/{b}" for b in fine), "hctri/fine"] + [
        f"hctri/{b}" for b in fine
    ]
    assert {regdb.weights[f"hctri/{b}"] for b in fine} == {2.0}
    assert regdb.weights["hctri/fine"] == 1.0
    assert all(dict(e.options).get("margin", 0.3) == 0.3 for e in predecessor_losses().entries)


def test_preset_dispatch_and_round_trip():
    for method, make in PRESETS.items():
        for dataset in ("sysu", "regdb"):
            spec = preset(method, dataset)
            assert spec == make(dataset) and spec.method == method and spec.dataset == dataset
            assert LossSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
            assert hash(spec) == hash(make(dataset))
            assert all(e.provenance.startswith("[") for e in spec.entries)


def test_every_loss_kind_is_reachable(device):
    batch = _fixed_batch(3, 2, (0, 1, 2, 3))
    out = _output(batch, device, coarse=0, fine=2)
    spec = LossSpec(
        "all",
        (
            LossEntry("id", "global", 0.5, {"epsilon": 0.1}),
            LossEntry("tri", "global", 2.0, {"margin": 0.5, "metric": "cosine"}),
            LossEntry("hctri", "fine", 0.7, {"modalities": (2, 3)}),
            LossEntry("ca", "fine.*", 3.0, {"pull_weight": 0.25, "modalities": [0, 1, 2, 3]}),
            LossEntry("did", "fine.*", 1.0, {"reduction": "modality"}),
            LossEntry("mml", "global", 1.5, {"reduction": "sum", "soft_margin": True}),
            LossEntry("mdl", "global", 0.1, {"directions": [[0, 1], [3, 2]]}),
        ),
    )
    assert {e.loss for e in spec.entries} == set(LOSSES)
    terms = _assert_matches_by_hand(spec, out, batch.labels.to(device))
    assert terms.weights["ca.pull/fine.1"] == 0.75 and terms.weights["ca.push/fine.1"] == 3.0


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


# --- bad input -----------------------------------------------------------------------------------


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


def test_duplicate_term_names(device):
    with _raises(
        "entries[1]: term 'tri/global' is already produced by entries[0]; give one of them a name"
    ):
        LossSpec("x", (LossEntry("tri", "global"), LossEntry("tri", "global", 2.0)))
    # a '*' selector is only expanded against an output
    spec = LossSpec("x", (LossEntry("tri", "fine.*"), LossEntry("tri", "fine.0")))
    with _raises(
        "entries[1]: term 'tri/fine.0' is already produced by entries[0]; give one of them a name"
    ):
        compute_losses(spec, _tiny(device), torch.tensor([0, 0, 1, 1], device=device))


def test_bad_entries():
    with _raises(
        "loss: expected one of 'id', 'tri', 'hctri', 'ca', 'did', 'mml', 'mdl', got 'arcface'"
    ):
        LossEntry("arcface", "global")
    with _raises(
        "on: expected 'global', 'coarse.<i>', 'fine.<i>', 'coarse.*', 'fine.*', 'coarse' or "
        "'fine', got 'fine.x'"
    ):
        LossEntry("tri", "fine.x")
    with _raises(
        "on: 'id' reads logits, which cannot be concatenated; use 'fine.*' for one term per "
        "branch, got 'fine'"
    ):
        LossEntry("id", "fine")
    for bad in (-1.0, float("inf"), float("nan"), True, "1"):
        with _raises(f"weight: expected a finite number >= 0, got {bad!r}"):
            LossEntry("tri", "global", bad)
    with _raises("options: 'tri' has no option 'epsilon'; it takes margin, metric, soft_margin"):
        LossEntry("tri", "global", options={"epsilon": 0.1})
    with _raises(
        "split: only 'did', 'mml', 'mdl' can be split into their per-modality or per-direction "
        "terms, got split=True for 'hctri'"
    ):
        LossEntry("hctri", "global", split=True)
    with _raises("name: expected lower-case letters, digits, '_' or '.', got 'Tri/2'"):
        LossEntry("tri", "global", name="Tri/2")
    with _raises("entries: a loss spec needs at least one entry"):
        LossSpec("x", ())
    with _raises("dataset: expected 'sysu' or 'regdb', got 'market'"):
        method_a_losses("market")
    with _raises(
        "method: expected one of 'baseline', 'predecessor', 'method_a', 'method_b', got 'c'"
    ):
        preset("c")


def test_option_values_are_checked_when_the_entry_is_made():
    cases = [
        ("mdl", {"reduction": "max"}, "reduction: expected 'mean' or 'sum', got 'max'"),
        ("did", {"reduction": "mean"}, "reduction: expected 'rows' or 'modality', got 'mean'"),
        ("mml", {"margin": -1.0}, "margin: expected a finite number >= 0, got -1.0"),
        ("tri", {"metric": "l1"}, "metric: expected 'euclidean' or 'cosine', got 'l1'"),
        ("hctri", {"margin": float("inf")}, "margin: expected a finite number >= 0, got inf"),
        (
            "mdl",
            {"directions": [[0, 9]]},
            "directions: expected (from, to) pairs of modality tags 0..3, got (0, 9)",
        ),
        ("mml", {"modalities": [0, 0]}, "modalities: each modality may appear once, got [0, 0]"),
        ("did", {"modalities": [5]}, "modalities: expected modality tags 0..3, got 5"),
        ("id", {"epsilon": 1.0}, "epsilon: expected a label-smoothing weight in [0, 1), got 1.0"),
        ("ca", {"margin": -1}, "margin: expected a finite number >= 0, got -1"),
    ]
    for loss, options, message in cases:
        with _raises(message):
            LossEntry(loss, "global" if loss not in ("hctri",) else "fine", options=options)
    with _raises("options: expected a mapping of option names to values, got ('margin',)"):
        LossEntry("tri", "global", options=("margin",))
    with _raises("method: expected a non-empty name, got ''"):
        LossSpec("", (LossEntry("tri", "global"),))
    with _raises("dataset: expected 'sysu', 'regdb' or None, got 'market'"):
        LossSpec("x", (LossEntry("tri", "global"),), dataset="market")


def test_bad_dicts():
    with _raises("loss spec: expected a mapping with 'method' and 'entries'"):
        LossSpec.from_dict({"entries": []})
    with _raises("entries[0]: expected a mapping with 'loss' and 'on'"):
        LossSpec.from_dict({"method": "x", "entries": [{"loss": "tri"}]})
    with _raises("entries[0]: unknown field(s) ['wieght']"):
        LossSpec.from_dict(
            {"method": "x", "entries": [{"loss": "tri", "on": "global", "wieght": 1}]}
        )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["method_a", "method_b"])
def test_presets_fit_the_models_of_their_method(device, kind):
    """The presets select branches by the names the models area's networks produce."""
    from reference.models.build import ModelConfig, build_model

    model = build_model(ModelConfig(kind=kind, num_classes=4)).to(device).train()
    mods = (0, 1, 2, 3) if kind == "method_b" else (0, 1)
    y = torch.arange(2).repeat_interleave(2 * len(mods)).to(device)
    m = torch.tensor(mods).repeat_interleave(2).repeat(2).to(device)
    images = torch.randn(len(y), 3, 96, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(images.to(device), m)
    terms = compute_losses(preset(kind), out, y)
    assert list(terms.terms) == list(_by_hand(preset(kind), out, y))
    assert torch.isfinite(terms.total)
