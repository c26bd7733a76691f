"""``vireid demo`` end to end at a tiny size (spec/training/demo.md): SynthVI, the real training
engine for all three methods, extraction, SYSU-MM01 scoring and the one table."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from reference.cli import main
from reference.errors import VireidError
from reference.evaluation.features import load_features
from reference.training import commands
from reference.training.demo import METHODS, DemoConfig, check_out, run_demo, synthvi_root

TINY = DemoConfig(
    ids=10,  # 8 identities to train on, 2 to test
    image_size=(32, 16),
    epochs=1,
    steps_per_epoch=2,  # enough to move the weights; the figures are not tested
    p=2,
    k=2,
    lr_backbone=0.01,  # two steps of a random ResNet at lr 0.1 can already diverge
    lr_head=0.01,
    lr_head_baseline=0.01,
    lr_head_method_b=0.01,
    coarse_stripes=1,
    fine_stripes=2,
    trials=2,
    device="cpu",
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    result = run_demo(folder / "out", cache=folder / "cache", config=TINY, progress=False)
    return folder, result


@pytest.mark.slow  # its fixture trains, extracts and scores the three methods: ~14 s
def test_demo_trains_extracts_and_scores_every_method(demo_run):
    folder, result = demo_run
    assert [m.kind for m in result.methods] == list(METHODS)
    assert result.root == folder / "cache" / "synthvi-sysu-10ids-32x16-seed0"
    for m in result.methods:
        run = folder / "out" / m.kind
        assert m.run_dir == run
        # the engine's run folder, plus the demo's features and scores
        for name in ("config.json", "log.csv", "last.pt", "summary.json", "scores.json"):
            assert (run / name).is_file(), name
        summary = json.loads((run / "summary.json").read_text())
        assert summary["steps"] == TINY.epochs * TINY.steps_per_epoch
        config = json.loads((run / "config.json").read_text())
        assert config["pipeline"]["transform"]["size"] == [32, 16]
        assert config["model"]["kind"] == m.kind and config["model"]["depth"] == 18
        trained = load_features(run / "features.npz", "sysu")
        untrained = load_features(run / "features-untrained.npz", "sysu")
        assert len(trained) == len(untrained) and (trained.features != untrained.features).any()
        scores = json.loads((run / "scores.json").read_text())
        assert set(scores) == {"untrained", "trained"}
        with Image.open(run / "ranks.png") as picture:  # the ranking picture of the trained model
            assert picture.format == "PNG" and min(picture.size) > 100
        with Image.open(run / "curves.png") as picture:  # the run's training curves, one row
            assert picture.format == "PNG" and picture.size == (1500, 350)
        assert m.trained.settings["sampling"] == "agw" and len(m.trained.trials) == TINY.trials
    method_a = json.loads((folder / "out" / "method_a" / "config.json").read_text())["model"]
    assert (method_a["coarse_stripes"], method_a["fine_stripes"]) == (1, 2)
    # Method A's residual blocks start as their shortcuts; the others' as torchvision's default
    zeroed = {
        kind: json.loads((folder / "out" / kind / "config.json").read_text())["model"][
            "zero_init_residual"
        ]
        for kind in METHODS
    }
    assert zeroed == {"baseline": False, "method_a": True, "method_b": False}
    # SynthVI is written once and then read from the cache
    assert result.synth_s > 0 and synthvi_root(folder / "cache", TINY) == (result.root, 0.0)


def test_demo_table_and_refusals(demo_run, capsys):
    folder, result = demo_run
    table = commands.demo_table(result).splitlines()
    assert table[0].split() == ["method", "model", "R1", "mAP", "mINP"]
    assert [row.split()[:2] for row in table[2:]] == [
        [kind, state] for kind in METHODS for state in ("untrained", "trained")
    ]
    row = table[3].split()  # baseline trained: figures are the scores' means in percent
    base = result.methods[0].trained
    assert float(row[3]) == pytest.approx(100 * base.mean("mAP"), abs=0.006)
    # an existing run is never replaced without --force, and that is checked before any work
    with pytest.raises(VireidError) as exc:
        check_out(folder / "out", METHODS, force=False)
    assert str(exc.value).startswith(f"{folder / 'out' / 'baseline'}: already holds a run (")
    argv = ["demo", "--out", str(folder / "out"), "--cache", str(folder / "cache")]
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_demo_output_states_the_configuration_and_prints_one_table(demo_run, capsys):
    _, result = demo_run
    commands.print_demo(result)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("vireid demo: SynthVI (SYSU-MM01 layout), 10 identities")
    assert out[1].startswith("reduced configuration: ResNet-18, 1 epochs x 2 steps")
    assert out[2].startswith("SYSU-MM01 protocol: all-search, single-shot, agw draw, 2 trials")
    assert out[3].split() == ["method", "model", "R1", "mAP", "mINP"]
    rows = [line.split()[:2] for line in out[5:11]]
    assert rows == [[kind, state] for kind in METHODS for state in ("untrained", "trained")]
    assert out[11].startswith("at this scale a seed or the processor's kernels move")
    assert out[12].startswith("SynthVI: ") and "(written in " in out[12]
    assert out[-1].startswith("wall time: ")


def test_bad_demo_config():
    with pytest.raises(VireidError) as exc:
        DemoConfig(epochs=0)
    assert str(exc.value) == "epochs: expected an integer >= 1, got 0"
    with pytest.raises(VireidError) as exc:
        DemoConfig(zero_init_residual=("method_a", "method_c"))
    assert str(exc.value) == (
        "zero_init_residual: expected some of ('baseline', 'method_a', 'method_b'), got 'method_c'"
    )
    assert DemoConfig(zero_init_residual=["baseline"]).zero_init_residual == ("baseline",)
    # a value where a list belongs: the named error, not "'int' object is not iterable"
    for name, value, message in [
        ("image_size", 64, "image_size: expected a list or tuple, got 64"),
        ("milestones", 11, "milestones: expected a list or tuple, got 11"),
        ("zero_init_residual", None, "zero_init_residual: expected a list or tuple, got None"),
        ("image_size", (64,), "image_size: expected (height, width) positive integers, got (64,)"),
        (
            "image_size",
            (64, 0),
            "image_size: expected (height, width) positive integers, got (64, 0)",
        ),
    ]:
        with pytest.raises(VireidError) as exc:
            DemoConfig(**{name: value})
        assert str(exc.value) == message
