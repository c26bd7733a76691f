"""How a run stops early: non-finite losses, Ctrl-C, and their exit statuses.

Spec: ``spec/training/engine.md`` (section "Faults"). A non-finite loss term stops the run before
its backward pass (:class:`NonFiniteLoss`, exit status 3); Ctrl-C sets a flag that the loop reads
after the step in progress, writes ``last.pt`` and stops (:class:`Interrupted`, exit status 130 =
128 + SIGINT). Both are :class:`TrainingStopped` with a ``status``.
"""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path
from typing import Any

import torch

#: exit status of a run stopped by a non-finite loss
EXIT_NONFINITE = 3
#: exit status of a run stopped by Ctrl-C (128 + SIGINT, the shell's convention)
EXIT_INTERRUPTED = 130


class TrainingStopped(Exception):
    """The run stopped before its last step; ``status`` is the process exit status."""

    status = 1

    def __init__(self, message: str, checkpoint: Path | None, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.report = report


class NonFiniteLoss(TrainingStopped):
    status = EXIT_NONFINITE


class Interrupted(TrainingStopped):
    status = EXIT_INTERRUPTED


class StopFlag:
    """Ctrl-C sets a flag (a second Ctrl-C interrupts at once); the loop stops after the step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def nonfinite_terms(terms: dict[str, torch.Tensor]) -> tuple[dict[str, float], dict[str, float]]:
    """``(every term as a float, the non-finite ones)``."""
    values = {k: float(v.detach()) for k, v in terms.items()}
    return values, {k: v for k, v in values.items() if not math.isfinite(v)}


def nonfinite_message(report: dict[str, Any], distributed: bool) -> str:
    """The one-line message of a non-finite loss report (see ``engine.check_finite``)."""
    where = f"rank {report['rank']}: " if distributed else ""
    terms = ", ".join(f"{k} = {v}" for k, v in report["nonfinite"].items())
    return (
        f"{where}non-finite loss at step {report['step']} (epoch {report['epoch']}): {terms}; "
        f"batch identities {report['identities']}; the last good checkpoint is "
        f"{report['checkpoint'] or 'none (no checkpoint was written yet)'}"
    )
