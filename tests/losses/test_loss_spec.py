"""The LossSpec schema (spec/losses/loss_spec.md): entries, selectors, names, dicts, and the
errors for bad values."""

from __future__ import annotations

import torch

from reference.losses.dispatch import compute_losses
from reference.losses.loss_spec import LossEntry, LossSpec
from reference.losses.presets import (
    method_a_losses,
    preset,
)
from tests.losses.test_dispatch import (
    _raises,
    _tiny,
)

# --- presets on hand-built outputs ---------------------------------------------------------------


# --- bad input -----------------------------------------------------------------------------------


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
    with _raises(  # not a dictionary key: the same error, not a TypeError
        "loss: expected one of 'id', 'tri', 'hctri', 'ca', 'did', 'mml', 'mdl', got ['tri']"
    ):
        LossEntry(["tri"], "global")
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
    with _raises(  # not a dictionary key: the same error, not a TypeError
        "method: expected one of 'baseline', 'predecessor', 'method_a', 'method_b', got ['c']"
    ):
        preset(["c"])


def test_bad_spec_fields():
    entry = LossEntry("tri", "global")
    with _raises("entries: expected a list of LossEntry, got None"):
        LossSpec("x", None)
    with _raises("entries[0]: expected a LossEntry, got <class 'str'>"):
        LossSpec("x", ["tri"])
    with _raises("notes: expected a list of strings, got 3"):
        LossSpec("x", (entry,), notes=3)
    with _raises("notes: expected a list of strings, got [1]"):
        LossSpec("x", (entry,), notes=[1])
    assert LossSpec("x", [entry], notes=["a"]).notes == ("a",)


def test_bad_dicts():
    with _raises("loss spec: expected a mapping with 'method' and 'entries'"):
        LossSpec.from_dict({"entries": []})
    with _raises("entries[0]: expected a mapping with 'loss' and 'on'"):
        LossSpec.from_dict({"method": "x", "entries": [{"loss": "tri"}]})
    for entries in (3, "tri", {"loss": "tri", "on": "global"}):
        with _raises(f"entries: expected a list of tables, one per loss, got {entries!r}"):
            LossSpec.from_dict({"method": "x", "entries": entries})
    with _raises("entries[0]: unknown field(s) ['wieght']"):
        LossSpec.from_dict(
            {"method": "x", "entries": [{"loss": "tri", "on": "global", "wieght": 1}]}
        )


def test_loads_and_dumps_through_the_generic_config_loader():
    from reference.config import from_mapping, to_dict

    spec = LossSpec(
        "x",
        (
            LossEntry("mdl", "global", 0.5, {"directions": [[0, 1], [1, 0]]}, split=True),
            LossEntry("ca", "fine.*", 2, {"pull_weight": 0.25}, name="ca2", provenance="[p] x"),
        ),
        dataset="regdb",
        notes=("a note",),
    )
    data = spec.to_dict()
    assert data["entries"][0]["options"] == {"directions": [[0, 1], [1, 0]]}
    assert data["entries"][1]["weight"] == 2.0 and data["notes"] == ["a note"]
    assert LossSpec.from_dict(data) == from_mapping(LossSpec, data) == spec
    assert from_mapping(LossSpec, to_dict(spec)) == spec  # options as pairs load too
    with _raises("entries[1].weight: expected a finite number >= 0, got -1.0"):
        LossSpec.from_dict(
            {"method": "x", "entries": [data["entries"][0], {**data["entries"][1], "weight": -1}]}
        )


def test_entry_defaults_and_the_smallest_dict():
    entry = LossEntry("did", "global")
    assert (entry.weight, dict(entry.options), entry.name, entry.split) == (1.0, {}, None, False)
    # 'loss' and 'on' alone make an entry
    spec = LossSpec.from_dict({"method": "x", "entries": [{"loss": "tri", "on": "global"}]})
    assert spec.entries == (LossEntry("tri", "global"),)


def test_repeated_options_and_foreign_entries_are_refused():
    with _raises("options: each option may appear once, got (('margin', 0.3), ('margin', 0.4))"):
        LossEntry("tri", "global", options=(("margin", 0.3), ("margin", 0.4)))
    with _raises("entries[1]: expected a LossEntry, got <class 'dict'>"):
        LossSpec("x", (LossEntry("tri", "global"), {"loss": "tri", "on": "global"}))  # type: ignore[arg-type]
