"""The method presets (spec/losses/loss_spec.md, "Presets"): their terms, weights and
provenance, against the individual loss calls by hand."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.losses.dispatch import compute_losses
from reference.losses.loss_spec import LossSpec
from reference.losses.presets import (
    PRESETS,
    baseline_losses,
    method_a_losses,
    method_b_losses,
    predecessor_losses,
    preset,
)
from tests.losses.test_dispatch import (
    _assert_matches_by_hand,
    _by_hand,
    _fixed_batch,
    _output,
)
from tests.strategies import feature_batches


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


def test_method_a_weights_are_the_spec_table(device):
    # spec/losses/loss_spec.md, method_a_losses: id on global 1; id on the stripes 1; hctri on
    # the concatenation 1 and per stripe lambda (1.0 on sysu, 2.0 on regdb); ca on global 1.0
    batch = _fixed_batch(3, 2, (0, 1))
    out = _output(batch, device)
    y = batch.labels.to(device)
    for dataset, lam in (("sysu", 1.0), ("regdb", 2.0)):
        w = compute_losses(method_a_losses(dataset), out, y).weights
        stripes = [f"fine.{i}" for i in range(6)] + [f"coarse.{i}" for i in range(3)]
        assert w["id/global"] == 1.0
        assert {w[f"id/{b}"] for b in stripes} == {1.0}
        assert w["hctri/fine"] == w["hctri/coarse"] == 1.0
        assert {w[f"hctri/{b}"] for b in stripes} == {lam}
        assert w["ca.pull/global"] == w["ca.push/global"] == 1.0


def test_method_b_weights_and_margins_are_the_spec_table():
    # spec/losses/loss_spec.md, method_b_losses: DID, MML and MDL on the global branch, each
    # of weight 1, the two triplet-style losses with margin 0.3
    for dataset in ("sysu", "regdb"):
        got = [(e.loss, e.on, e.weight, dict(e.options)) for e in method_b_losses(dataset).entries]
        assert got == [
            ("did", "global", 1.0, {}),
            ("mml", "global", 1.0, {"margin": 0.3}),
            ("mdl", "global", 1.0, {"margin": 0.3}),
        ]
