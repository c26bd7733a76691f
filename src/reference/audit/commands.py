"""The ``vireid audit eval|loss|features`` commands: the only audit code that prints.

Spec: ``spec/audit/reports.md`` ("Command line"). Each command runs its audit with a progress
bar on stderr, prints the Markdown report on stdout, writes ``--markdown`` / ``--json`` reports
atomically (an existing file only with ``--force``, checked before any work), and returns the exit
status: 0 when nothing unexpected was found, 1 otherwise (errors: 2, from the CLI).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from reference.audit.report import AuditReport, from_battery, load_expectations
from reference.audit.target import load_target
from reference.fileio import check_writable

T = TypeVar("T")


def _progress_bar(total: int) -> tuple[Callable[[str], None], Callable[[], None]]:
    from tqdm import tqdm

    bar = tqdm(total=total, file=sys.stderr, unit="case", leave=False)

    def step(name: str) -> None:
        if not name.startswith("shrinking"):
            bar.update(1)
        bar.set_description(name)

    return step, bar.close


@dataclass(frozen=True)
class ReportFiles:
    """What every audit command does with its report: ``--expect`` (known deviations),
    ``--markdown`` and ``--json`` (files to write) and ``--force`` (replace them)."""

    expect: Path | None = None
    markdown: Path | None = None
    json_out: Path | None = None
    force: bool = False

    def check(self) -> None:
        """Before any work: the report files may be written, the known deviations are readable."""
        for path in (self.markdown, self.json_out):
            if path is not None:
                check_writable(path, overwrite=self.force)
        if self.expect is not None:
            load_expectations(self.expect)  # a malformed file is an error before the work

    def finish(self, report: AuditReport) -> int:
        """Apply the known deviations, print the report, write its files; the exit status."""
        if self.expect is not None:
            report.expect(load_expectations(self.expect))
        print(report.to_markdown(), end="")
        for path in report.write(markdown=self.markdown, json_out=self.json_out, force=self.force):
            print(f"wrote {path}", file=sys.stderr)
        return report.exit_status


def _timed(cases: int, work: Callable[[Callable[[str], None]], T]) -> tuple[T, float]:
    """``work(progress)`` under a progress bar of ``cases`` steps; its result and its seconds."""
    step, close = _progress_bar(cases)
    start = time.monotonic()
    try:
        out = work(step)
    finally:
        close()
    return out, time.monotonic() - start


def audit_eval_command(
    *, target: str, protocol: str, adapter: str | None, scale: float, files: ReportFiles
) -> int:
    """``vireid audit eval TARGET``: the evaluation battery; prints the Markdown report."""
    from reference.audit.eval_audit import audit_eval, check_protocol, detect_adapter, eval_cases

    files.check()
    loaded = load_target(target)
    adapter = adapter or detect_adapter(loaded)  # errors before the progress bar
    (result, settings), seconds = _timed(
        len(eval_cases(check_protocol(protocol))),
        lambda step: audit_eval(
            loaded, protocol=protocol, adapter=adapter, scale=scale, progress=step
        ),
    )
    return files.finish(from_battery("eval", target, settings, result, seconds))


def audit_loss_command(
    *, name: str, target: str, adapter: str | None, scale: float, files: ReportFiles
) -> int:
    """``vireid audit loss NAME TARGET``: value and gradient on generated batches."""
    from reference.audit.loss_audit import PROBES, audit_loss, check_loss, detect_adapter

    info = check_loss(name)
    files.check()
    loaded = load_target(target)
    adapter = adapter or detect_adapter(info, loaded)  # errors before the progress bar
    (result, settings), seconds = _timed(
        len(PROBES),
        lambda step: audit_loss(name, loaded, adapter=adapter, scale=scale, progress=step),
    )
    return files.finish(from_battery("loss", target, settings, result, seconds))


def audit_features_command(
    *,
    features: Path,
    protocol: str,
    claimed: str,
    tolerance: float,
    trials: int,
    files: ReportFiles,
    direction: str | None = None,
) -> int:
    """``vireid audit features F.npz``: re-score features and compare with claimed figures."""
    from reference.audit.features_audit import (
        audit_features,
        check_protocol_direction,
        parse_claimed,
        variants,
    )

    figures = parse_claimed(claimed)
    check_protocol_direction(protocol, direction)
    files.check()
    report, seconds = _timed(
        len(variants(protocol)),
        lambda step: audit_features(
            features, protocol=protocol, claimed=figures, tolerance=tolerance, trials=trials,
            direction=direction, progress=step,
        ),
    )  # fmt: skip
    report.seconds = seconds
    return files.finish(report)
