"""The run folder: which files a run writes, the log it keeps, and never overwriting a run.

Spec: ``spec/training/engine.md`` (section "The run folder"). ``log.csv`` holds every loss term
by name, the learning rates, images/s, data time and GPU memory; ``eval.csv`` the validation and
(analysis-only) test scores; TensorBoard gets the same scalars when it is installed. Only rank 0
writes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from reference.errors import VireidError
from reference.fileio import atomic_write_text

#: the files a run writes in its folder (``--force`` removes exactly these)
RUN_FILES = (
    "config.json",
    "log.csv",
    "eval.csv",
    "last.pt",
    "best-val.pt",
    "summary.json",
    "fault.json",
)


class RunLog:
    """``log.csv`` (every term by name, learning rates, images/s, data time, GPU memory) and,
    when installed, TensorBoard; rank 0 only. On resume, rows past the checkpoint's step are
    dropped so the log reads as one run."""

    def __init__(self, out_dir: Path, *, enabled: bool, resume_step: int | None) -> None:
        self.path = out_dir / "log.csv"
        self.eval_path = out_dir / "eval.csv"
        self.enabled = enabled
        self.columns: list[str] | None = None
        self.tb = None
        if not enabled:
            return
        if resume_step is not None:
            for path in (self.path, self.eval_path):
                self._truncate(path, resume_step)
            if self.path.exists():
                with self.path.open(newline="") as handle:
                    self.columns = next(csv.reader(handle), None)
        try:  # imported here: only a run that logs pays for it, never the CLI's start
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the optional extra is not installed: log.csv alone
            return
        # a session start at step s + 1 hides every earlier event of step > s (a previous run's
        # after --force, the steps past the checkpoint after --resume), as the CSV drops its rows
        purge = (resume_step or 0) + 1
        self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=purge)

    @staticmethod
    def _truncate(path: Path, step: int) -> None:
        if not path.exists():
            return
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            return
        at = rows[0].index("step")
        keep = [rows[0]] + [r for r in rows[1:] if int(r[at]) <= step]
        text = "".join(",".join(r) + "\n" for r in keep)
        atomic_write_text(path, text, overwrite=True)

    def step(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.columns is None:
            self.columns = list(row)
            with self.path.open("w", newline="") as handle:
                csv.writer(handle).writerow(self.columns)
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([_cell(row.get(c, "")) for c in self.columns])
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("epoch", "step"):
                    self.tb.add_scalar(key, value, int(row["step"]))

    def evaluation(self, epoch: int, step: int, split: str, scores: dict[str, float]) -> None:
        if not self.enabled:
            return
        new = not self.eval_path.exists()
        with self.eval_path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["epoch", "step", "split", "r1", "mAP", "mINP"])
            writer.writerow(
                [epoch, step, split, *(_cell(scores[k]) for k in ("r1", "mAP", "mINP"))]
            )
        if self.tb is not None:
            for key, value in scores.items():
                self.tb.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _cell(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def prepare_folder(out_dir: Path, *, resume: bool, force: bool) -> None:
    if resume and force:
        raise VireidError("resume and force: choose one (force starts the run again)")
    if out_dir.exists() and not out_dir.is_dir():
        raise VireidError(f"{out_dir}: exists and is not a folder")
    if resume:
        if not (out_dir / "last.pt").is_file():
            raise VireidError(f"{out_dir}: no last.pt to resume from")
        return
    ours = [n for n in RUN_FILES if (out_dir / n).exists()]
    if ours and not force:
        raise VireidError(
            f"{out_dir}: already holds a run ({', '.join(ours)}); pass resume=True (CLI: "
            "--resume) to continue it or force=True (--force) to start it again"
        )
    for name in ours:
        (out_dir / name).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", overwrite=True)


def write_summary(
    out_dir: Path, result: Any, train_s: float, images_seen: int, world_size: int, device: Any,
    preset: str, resumed: bool,
) -> None:  # fmt: skip
    """``summary.json``: what the results side reads of a finished run (``engine.md``)."""
    write_json(
        out_dir / "summary.json",
        {
            "epochs": result.epochs,
            "steps": result.steps,
            "wall_s": result.wall_s,
            "train_s": train_s,
            "images_seen": images_seen,
            "images_per_s": result.images_per_s,
            "selected_checkpoint": result.checkpoint.name,
            "selection": "best validation mAP" if result.best_val else "last epoch",
            "last_checkpoint": result.last_checkpoint.name,
            "best_val": result.best_val,
            "final_losses": result.final_losses,
            "world_size": world_size,
            "device": str(device),
            "preset": preset,
            "resumed": bool(resumed),
        },
    )
