"""Training curves of run folders: their ``log.csv`` and ``eval.csv`` as one PNG.

Spec: ``spec/results/curves.md``.

A row of panels per run folder: every loss term and the total against the step (the log's
window means), the learning rate of each parameter group, the images per second, and, where the
run wrote ``eval.csv``, the mAP of each evaluated split against the step. The curves are the
logs' own numbers, not smoothed. TensorBoard shows the same when it is installed; this is the
picture without it, or for a run folder copied elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reference.checks import check_path
from reference.errors import VireidError
from reference.fileio import atomic_open, check_writable

LOG_FILE, EVAL_FILE = "log.csv", "eval.csv"
PANEL_INCHES = (5.0, 3.5)
DPI = 100
#: logs with fewer rows are drawn with a marker at each row
SHORT_LOG = 50
#: the log's columns that are not a loss term
NOT_TERMS = ("epoch", "step", "images_per_s", "data_s", "step_s", "gpu_mem_mb")


@dataclass(frozen=True)
class RunLogs:
    """A run folder's logs as read: its name, ``log.csv`` and ``eval.csv`` (None if absent)."""

    name: str
    log: pd.DataFrame
    evals: pd.DataFrame | None

    @property
    def terms(self) -> list[str]:
        """The loss terms the run logged, ``total`` last."""
        names = [c for c in self.log.columns if c not in NOT_TERMS and not c.startswith("lr_")]
        return [c for c in names if c != "total"] + (["total"] if "total" in names else [])

    @property
    def rates(self) -> list[str]:
        return [c for c in self.log.columns if c.startswith("lr_")]


def read_logs(folder: str | os.PathLike[str]) -> RunLogs:
    """The logs of the run folder ``folder``; errors name the file and what was expected."""
    folder = check_path(folder, "run")
    path = folder / LOG_FILE
    if not path.is_file():
        raise VireidError(f"{folder}: no {LOG_FILE}; expected a training run folder")
    log = _read_csv(path, ("step", "total"))
    if log.empty:
        raise VireidError(f"{path}: no rows yet; the run logs every run.log_every steps")
    evals = None
    if (folder / EVAL_FILE).is_file():
        evals = _read_csv(folder / EVAL_FILE, ("step", "split", "mAP"))
    return RunLogs(folder.resolve().name, log, evals)


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise VireidError(f"{path}: not a readable CSV file ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise VireidError(f"{path}: missing column {missing[0]!r}")
    return frame


def curves_figure(runs: Sequence[RunLogs]):
    """A matplotlib Figure (Agg): a row of panels per run (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    cols = 4 if any(r.evals is not None for r in runs) else 3
    fig = Figure(figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * len(runs)), dpi=DPI)
    grid = fig.subplots(len(runs), cols, squeeze=False)
    for row, run in zip(grid, runs, strict=True):
        step = run.log["step"]
        # a short log's few points would vanish as lines alone
        style = {"marker": "."} if len(step) < SHORT_LOG else {}
        losses, rates, speed = row[0], row[1], row[2]
        for term in run.terms:
            width = 2.0 if term == "total" else 1.0
            losses.plot(step, run.log[term], label=term, linewidth=width, **style)
        losses.set_title(f"{run.name}: loss terms", fontsize=9)
        losses.set_ylabel("loss (window mean)")
        for rate in run.rates:
            rates.plot(step, run.log[rate], label=rate.removeprefix("lr_"), **style)
        rates.set_title(f"{run.name}: learning rates", fontsize=9)
        if "images_per_s" in run.log.columns:
            speed.plot(step, run.log["images_per_s"], **style)
        speed.set_title(f"{run.name}: images per second", fontsize=9)
        if cols == 4:
            scores = row[3]
            if run.evals is not None:
                for split, group in run.evals.groupby("split", sort=False):
                    scores.plot(group["step"], 100 * group["mAP"], marker="o", label=str(split))
                scores.legend(fontsize=7)
            else:
                scores.text(0.5, 0.5, f"no {EVAL_FILE}:\nno held-out identities (--val-ids)\n"
                            "and no test monitoring", ha="center", va="center", fontsize=8,
                            transform=scores.transAxes)  # fmt: skip
            scores.set_title(f"{run.name}: mAP (%)", fontsize=9)
        for ax in row:
            ax.set_xlabel("step")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        if len(step) == 1:  # one row: a step either side, not matplotlib's +-0.1
            for ax in row[:3]:
                ax.set_xlim(step.iloc[0] - 1, step.iloc[0] + 1)
        for ax in (losses, rates):
            if ax.get_lines():
                ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_curves(
    folders: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, force: bool = False
) -> tuple[Path, list[RunLogs]]:
    """Read the run folders' logs and write their curves as PNG to ``out`` (atomically; an
    existing file only with ``force``)."""
    target = check_writable(out, overwrite=force)
    if not folders:
        raise VireidError("runs: expected at least one run folder")
    runs = [read_logs(f) for f in folders]
    fig = curves_figure(runs)
    with atomic_open(target, "wb", overwrite=force) as handle:
        fig.savefig(handle, format="png", dpi=DPI)
    return target, runs
