"""The run folder: refusing to overwrite, --force, the log on resume, the summary (engine.md)."""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from reference.errors import VireidError
from reference.training.engine import train
from reference.training.runfolder import RUN_FILES, RunLog, prepare_folder, write_summary
from tests.training.conftest import tiny_config


def test_prepare_folder(tmp_path):
    run = tmp_path / "run"
    prepare_folder(run, resume=False, force=False)  # a new folder is made
    (run / "log.csv").write_text("x")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(VireidError, match=r"already holds a run \(log\.csv\); pass resume=True"):
        prepare_folder(run, resume=False, force=False)
    with pytest.raises(VireidError, match=r"no last\.pt to resume from"):
        prepare_folder(run, resume=True, force=False)
    with pytest.raises(VireidError, match="resume and force: choose one"):
        prepare_folder(run, resume=True, force=True)
    prepare_folder(run, resume=False, force=True)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # only the run's own files go
    (tmp_path / "file").write_text("")
    with pytest.raises(VireidError, match="exists and is not a folder"):
        prepare_folder(tmp_path / "file", resume=False, force=True)
    assert "summary.json" in RUN_FILES and "best-val.pt" in RUN_FILES


def rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_log_keeps_one_run_across_a_resume(tmp_path):
    log = RunLog(tmp_path, enabled=True, resume_step=None)
    for step in (1, 2, 3):
        log.step({"epoch": 1, "step": step, "id/global": 0.5 * step, "total": float(step)})
    log.evaluation(1, 2, "val", {"r1": 0.5, "mAP": 0.25, "mINP": 0.125})
    log.evaluation(1, 3, "val", {"r1": 0.5, "mAP": 0.25, "mINP": 0.125})
    log.close()
    # the checkpoint was written after step 2: rows of step 3 are dropped, new ones appended
    log = RunLog(tmp_path, enabled=True, resume_step=2)
    log.step({"epoch": 1, "step": 3, "id/global": 9.0, "total": 9.0})
    assert rows(tmp_path / "log.csv") == [
        ["epoch", "step", "id/global", "total"],
        ["1", "1", "0.5", "1.0"],
        ["1", "2", "1.0", "2.0"],
        ["1", "3", "9.0", "9.0"],
    ]
    assert [r[1] for r in rows(tmp_path / "eval.csv")] == ["step", "2"]
    RunLog(tmp_path / "other", enabled=False, resume_step=None).step({"step": 1})
    assert not (tmp_path / "other").exists()  # ranks other than 0 write nothing


def test_summary(tmp_path):
    result = SimpleNamespace(
        epochs=2, steps=8, wall_s=3.0, images_per_s=10.0, checkpoint=tmp_path / "best-val.pt",
        last_checkpoint=tmp_path / "last.pt", best_val={"mAP": 0.5}, final_losses={"total": 1.0},
    )  # fmt: skip
    write_summary(tmp_path, result, 2.5, 25, 1, "cpu", "baseline-sysu", False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["selected_checkpoint"] == "best-val.pt"
    assert summary["selection"] == "best validation mAP" and summary["last_checkpoint"] == "last.pt"
    assert (summary["steps"], summary["images_seen"], summary["world_size"]) == (8, 25, 1)


def read_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """Every scalar TensorBoard shows of the event files in ``folder``: tag -> {step: value}
    (a tag whose events were all hidden by a later session start is left out)."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    out: dict[str, dict[int, float]] = {}
    for tag in events.Tags()["scalars"]:
        steps = [e.step for e in events.Scalars(tag)]
        assert len(steps) == len(set(steps)), f"{tag}: a step logged twice {steps}"
        if steps:
            out[tag] = {e.step: e.value for e in events.Scalars(tag)}
    return out


def as_float32(cell: str) -> float:
    """A CSV value as TensorBoard stores it (a float32 scalar)."""
    return float(np.float32(float(cell)))


def test_tensorboard_holds_every_logged_value_of_the_csvs(synth_roots, tmp_path):
    pytest.importorskip("tensorboard")
    config = tiny_config("baseline-sysu", synth_roots["sysu"], "run.val_ids=2", steps=2)
    result = train(config, tmp_path / "run")
    scalars = read_scalars(tmp_path / "run" / "tensorboard")
    log = list(csv.DictReader((tmp_path / "run" / "log.csv").open(newline="")))
    assert [int(r["step"]) for r in log] == [1, 2]
    logged = [c for c in log[0] if c not in ("epoch", "step")]
    # every loss term by name, both learning rates, images/s and the timings
    assert {"lr_backbone", "lr_head", "images_per_s", "total"} | set(result.final_losses) <= set(
        logged
    )
    for column in logged:
        assert scalars[column] == {int(r["step"]): as_float32(r[column]) for r in log}, column
    (val,) = csv.DictReader((tmp_path / "run" / "eval.csv").open(newline=""))
    for score in ("r1", "mAP", "mINP"):
        assert scalars[f"val/{score}"] == {int(val["step"]): as_float32(val[score])}
    assert set(scalars) == set(logged) | {"val/r1", "val/mAP", "val/mINP"}


def test_without_tensorboard_log_csv_alone_holds_the_values(synth_roots, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    result = train(tiny_config("baseline-sysu", synth_roots["sysu"], steps=2), tmp_path / "run")
    assert not (tmp_path / "run" / "tensorboard").exists()
    log = list(csv.DictReader((tmp_path / "run" / "log.csv").open(newline="")))
    assert [(r["epoch"], r["step"]) for r in log] == [("1", "1"), ("1", "2")]
    for column in ("lr_backbone", "lr_head", "images_per_s", "data_s", "step_s", "gpu_mem_mb"):
        assert all(math.isfinite(float(r[column])) for r in log), column
    assert float(log[-1]["images_per_s"]) > 0
    for term, value in result.final_losses.items():  # the last row: the last step's terms
        assert float(log[-1][term]) == value, term


def next_second() -> None:
    """Sleep into the next wall-clock second. TensorBoard reads a folder's event files in name
    order: the creation time in seconds, then a per-process file counter compared as text (so
    ``.10`` sorts before ``.8``). A real resume or ``--force`` is a new process started later;
    sessions made by one test process within one second would be read out of order."""
    time.sleep(1.01 - time.time() % 1)


def test_tensorboard_after_a_resume_or_force_shows_one_run(tmp_path):
    pytest.importorskip("tensorboard")
    log = RunLog(tmp_path, enabled=True, resume_step=None)
    for step in (1, 2, 3):
        log.step({"epoch": 1, "step": step, "total": float(step)})
    log.evaluation(1, 3, "val", {"r1": 0.5, "mAP": 0.25, "mINP": 0.125})
    log.close()
    next_second()
    log = RunLog(tmp_path, enabled=True, resume_step=2)  # the checkpoint was after step 2
    log.step({"epoch": 1, "step": 3, "total": 9.0})
    log.close()
    scalars = read_scalars(tmp_path / "tensorboard")
    assert scalars == {"total": {1: 1.0, 2: 2.0, 3: 9.0}}  # val/* of step 3 was past it too
    next_second()
    log = RunLog(tmp_path, enabled=True, resume_step=None)  # --force: a new run
    log.step({"epoch": 1, "step": 1, "total": 5.0})
    log.close()
    assert read_scalars(tmp_path / "tensorboard") == {"total": {1: 5.0}}
