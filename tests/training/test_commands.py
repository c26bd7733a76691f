"""``vireid train`` (spec/training/engine.md, "Command line")."""

from __future__ import annotations

import csv
import json

import pytest

from reference.cli import main
from tests.training.conftest import TINY, TINY_DEPTH

TINY_SETS = [
    "--set", "pipeline.p=2", "--set", "pipeline.k=2", "--set", "pipeline.num_batches=1",
    "--set", f"pipeline.transform.size=[{TINY[0]}, {TINY[1]}]", "--set", "run.epochs=1",
    "--set", "run.progress=false", "--set", "run.device='cpu'",
    "--set", f"model.depth={TINY_DEPTH}",
]  # fmt: skip


def test_train_with_validation_and_test_monitoring(synth_roots, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--preset", "baseline-sysu", "--data-root", str(synth_roots["sysu"])]
    status = main([*args, "--out", str(out), *TINY_SETS, "--val-ids", "2", "--monitor-test"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert f"run folder      {out}" in printed and "best val        epoch 1: R1" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["selected_checkpoint"] == "best-val.pt"
    assert summary["selection"] == "best validation mAP"
    assert (out / "best-val.pt").is_file()
    with (out / "eval.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["split"] for r in rows] == ["val", "test (analysis only)"]
    assert all(0.0 <= float(r["mAP"]) <= 1.0 for r in rows)
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["val_ids"] == 2 and config["run"]["monitor_test"] is True
    # 6 train+val identities in this SynthVI, 2 held out: the classifier has 4 classes
    assert config["model"]["num_classes"] == 4
    # again without --resume or --force: refused, nothing replaced
    status = main([*args, "--out", str(out), *TINY_SETS])
    assert status == 2 and "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--preset", "method_c-sysu"], "error: preset: expected one of ['baseline-sysu'"),
        (["--preset", "baseline-sysu", "--set", "optim.lr=0.05"], "error: optim.lr: unknown field"),
        (["--preset", "baseline-sysu", "--set", "run.amp=fp8"], "error: run.amp: expected one of"),
        (
            ["--preset", "baseline-regdb", "--trial", "11"],
            "error: data.trial: expected an integer in 1..10, got 11",
        ),
        (  # accepted and ignored before, into a run folder named runs/method_a-sysu-trial3
            ["--preset", "method_a-sysu", "--trial", "3"],
            "error: trial: SYSU-MM01 has one training split (--trial is RegDB's; SYSU-MM01's "
            "trials are gallery draws made when scoring); got --trial 3\n",
        ),
    ],
)
def test_bad_arguments(extra, message, tmp_path, capsys):
    status = main(["train", "--data-root", str(tmp_path), "--out", str(tmp_path / "r"), *extra])
    assert status == 2
    assert capsys.readouterr().err.startswith(message)


def test_bad_data_root(tmp_path, capsys):
    status = main(["train", "--preset", "baseline-sysu", "--data-root", str(tmp_path / "none")])
    assert status == 2
    assert capsys.readouterr().err.startswith("error: data.root: ")
