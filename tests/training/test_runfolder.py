"""The run folder: refusing to overwrite, --force, the log on resume, the summary (engine.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from reference.errors import VireidError
from reference.training.runfolder import RUN_FILES, RunLog, prepare_folder, write_summary


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
