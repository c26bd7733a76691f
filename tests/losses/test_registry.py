"""The loss registry (spec/losses/loss_spec.md): every loss reachable from a spec, and the
option values a loss would reject refused when the entry is made."""

from __future__ import annotations

import pytest

from reference.losses.loss_spec import LossEntry, LossSpec
from reference.losses.registry import LOSSES
from tests.losses.test_dispatch import (
    _assert_matches_by_hand,
    _fixed_batch,
    _output,
    _raises,
)


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
    with _raises("dataset: expected 'sysu', 'regdb', 'llcm' or None, got 'market'"):
        LossSpec("x", (LossEntry("tri", "global"),), dataset="market")


def test_registry_facts():
    import dataclasses

    # the losses whose `modalities` option is a selection (DID, MML); the others take a pair
    assert {name for name, kind in LOSSES.items() if kind.selects_modalities} == {"did", "mml"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        LOSSES["tri"].source = "logits"  # type: ignore[misc]
