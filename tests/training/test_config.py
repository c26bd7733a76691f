"""TrainConfig, the preset files and their overrides (spec/training/config.md, presets.md)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from reference.config import config_diff
from reference.errors import VireidError
from reference.losses.presets import preset
from reference.training.config import (
    PRESET_DIR,
    PRESETS,
    ScheduleConfig,
    config_from_dict,
    config_to_dict,
    load_preset,
)

LABEL = re.compile(r"\[(predecessor|protocol|reconstruction|seed)\]")


@pytest.mark.parametrize("name", PRESETS)
def test_preset_round_trips_and_matches_names(name):
    config = load_preset(name)
    kind, dataset = name.split("-")
    assert config.model.kind == kind and config.data.dataset == dataset
    assert config_from_dict(config_to_dict(config)) == config
    # the loss entries are the losses module's preset of the method (provenance aside); LLCM
    # carries SYSU-MM01's over (spec/training/presets.md)
    expected = preset(kind, "sysu" if dataset == "llcm" else dataset)
    key = [(e.loss, e.on, e.weight, e.options, e.name, e.split) for e in expected.entries]
    assert [
        (e.loss, e.on, e.weight, e.options, e.name, e.split) for e in config.losses.entries
    ] == key


@pytest.mark.parametrize("name", PRESETS)
def test_every_value_line_carries_a_label(name):
    text = (PRESET_DIR / f"{name}.toml").read_text()
    in_losses = False
    for line in text.splitlines():
        if line.startswith("[losses"):
            in_losses = True
        if in_losses or not re.match(r"^[a-z_]+ = ", line) or line.startswith("format"):
            continue
        comment = line.partition("#")[2]
        assert LABEL.search(comment) or "unused" in comment, line


def test_predecessor_values():
    sysu, regdb = load_preset("method_a-sysu"), load_preset("method_a-regdb")
    assert (sysu.pipeline.p, sysu.pipeline.k, regdb.pipeline.p, regdb.pipeline.k) == (6, 8, 8, 4)
    assert (sysu.model.gem_p, regdb.model.gem_p) == (3.0, 10.0)
    assert (sysu.optim.lr_backbone, sysu.optim.lr_head, sysu.optim.nesterov) == (0.01, 0.1, True)
    assert sysu.schedule.milestones == (20, 50) and sysu.run.epochs == 60
    assert sysu.pipeline.transform.size == (288, 144)


@pytest.mark.parametrize("kind", ["baseline", "method_a", "method_b"])
def test_llcm_presets_carry_the_sysu_recipe_over(kind):
    llcm, sysu = load_preset(f"{kind}-llcm"), load_preset(f"{kind}-sysu")
    assert llcm.data.dataset == llcm.losses.dataset == "llcm"
    assert llcm.model.num_classes == 713

    def recipe(config):
        d = config_to_dict(config)
        for key in ("preset", "losses"):
            d.pop(key)
        d["data"].pop("dataset")
        d["model"].pop("num_classes")
        return d

    assert config_diff(recipe(llcm), recipe(sysu)) == []
    assert [(e.loss, e.on, e.weight, e.options) for e in llcm.losses.entries] == [
        (e.loss, e.on, e.weight, e.options) for e in sysu.losses.entries
    ]


def test_schedule_factor_oracle():
    s = ScheduleConfig(warmup_epochs=3, milestones=(4, 6), gamma=0.5)
    assert [s.factor(e) for e in range(8)] == [1 / 3, 2 / 3, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert ScheduleConfig(warmup_epochs=0, milestones=()).factor(0) == 1.0


@pytest.mark.parametrize("milestones", [20, None, "20", (5, 2), (0,), (2.0,)])
def test_bad_milestones_are_named(milestones):
    with pytest.raises(VireidError) as info:
        ScheduleConfig(milestones=milestones)
    shown = list(milestones) if isinstance(milestones, tuple) else milestones
    assert str(info.value) == f"milestones: expected increasing positive integers, got {shown!r}"


def test_overrides_and_diff():
    a = load_preset("baseline-sysu")
    b = load_preset("baseline-sysu", ["optim.lr_head=0.05", "pipeline.transform.size=[32, 16]"])
    assert config_diff(a, b) == ["optim.lr_head", "pipeline.transform.size"]
    assert b.pipeline.transform.size == (32, 16)


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("nope", [], "preset: expected one of ['baseline-sysu'"),
        ("missing.toml", [], "missing.toml: no such preset file"),
        ("baseline-sysu", ["run.epochs=0"], "run.epochs: expected an integer >= 1, got 0"),
        ("baseline-sysu", ["run.bogus=1"], "run.bogus: unknown field; expected one of"),
        ("baseline-sysu", ["data.trial=11"], "data.trial: expected an integer in 1..10, got 11"),
        ("baseline-sysu", ["data.dataset='regdb'"], "losses.dataset: 'sysu' does not match"),
        ("baseline-sysu", ["schedule.milestones=[5, 2]"], "schedule.milestones: expected"),
        ("baseline-sysu", ["optim.momentum=1.5"], "optim.momentum: expected a number in [0, 1)"),
        ("baseline-sysu", ["pipeline.transform.pad=-1"], "pipeline.transform.pad: expected"),
        ("baseline-sysu", ["losses.entries=[]"], "losses.entries: a loss spec needs at least"),
        ("baseline-sysu", ["losses.entries=3"], "losses.entries: expected a list of tables, one"),
        ("baseline-sysu", ["epochs"], "--set 'epochs': expected FIELD=VALUE"),
    ],
)
def test_bad_presets_and_overrides(name, overrides, message):
    with pytest.raises(VireidError) as info:
        load_preset(name, overrides)
    assert str(info.value).startswith(message), str(info.value)


def test_bad_toml_file(tmp_path):
    folder = tmp_path / "mine.toml"
    folder.mkdir()
    with pytest.raises(VireidError) as info:
        load_preset(folder)
    assert str(info.value) == f"{folder}: is a folder; expected a preset file (.toml)"
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [\n")
    with pytest.raises(VireidError, match=r"bad\.toml: not a valid TOML file"):
        load_preset(bad)


@pytest.mark.parametrize(
    "part", ["model", "losses", "data", "pipeline", "optim", "schedule", "run"]
)
def test_parts_of_the_wrong_type_are_named(part):
    # a Python caller building a TrainConfig by hand: the part named, not an AttributeError
    good = load_preset("baseline-sysu")
    with pytest.raises(VireidError) as info:
        replace(good, **{part: {"kind": "baseline"}})
    kind = type(getattr(good, part)).__name__
    assert str(info.value) == f"{part}: expected a {kind}, got {{'kind': 'baseline'}}"
    with pytest.raises(VireidError, match=r"^preset: expected a str, got None$"):
        replace(good, preset=None)
