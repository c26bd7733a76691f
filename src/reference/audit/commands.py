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
from pathlib import Path

from reference.audit.report import AuditReport, from_battery, load_expectations
from reference.audit.target import load_target
from reference.fileio import check_writable


def _progress_bar(total: int) -> tuple[Callable[[str], None], Callable[[], None]]:
    from tqdm import tqdm

    bar = tqdm(total=total, file=sys.stderr, unit="case", leave=False)

    def step(name: str) -> None:
        if not name.startswith("shrinking"):
            bar.update(1)
        bar.set_description(name)

    return step, bar.close


def _finish(
    report: AuditReport,
    expect: Path | None,
    markdown: Path | None,
    json_out: Path | None,
    force: bool,
) -> int:
    if expect is not None:
        report.expect(load_expectations(expect))
    print(report.to_markdown(), end="")
    for path in report.write(markdown=markdown, json_out=json_out, force=force):
        print(f"wrote {path}", file=sys.stderr)
    return report.exit_status


def _check_outputs(expect: Path | None, markdown: Path | None, json_out: Path | None, force: bool):
    for path in (markdown, json_out):
        if path is not None:
            check_writable(path, overwrite=force)
    if expect is not None:
        load_expectations(expect)  # a malformed file is an error before the work


def audit_eval_command(
    *,
    target: str,
    protocol: str,
    adapter: str | None,
    scale: float,
    expect: Path | None,
    markdown: Path | None,
    json_out: Path | None,
    force: bool,
) -> int:
    """``vireid audit eval TARGET``: the evaluation battery; prints the Markdown report."""
    from reference.audit.eval_audit import audit_eval, check_protocol, detect_adapter, eval_cases

    _check_outputs(expect, markdown, json_out, force)
    loaded = load_target(target)
    adapter = adapter or detect_adapter(loaded)  # errors before the progress bar
    step, close = _progress_bar(len(eval_cases(check_protocol(protocol))))
    start = time.monotonic()
    try:
        result, settings = audit_eval(
            loaded, protocol=protocol, adapter=adapter, scale=scale, progress=step
        )
    finally:
        close()
    report = from_battery("eval", target, settings, result, time.monotonic() - start)
    return _finish(report, expect, markdown, json_out, force)


def audit_loss_command(
    *,
    name: str,
    target: str,
    adapter: str | None,
    scale: float,
    expect: Path | None,
    markdown: Path | None,
    json_out: Path | None,
    force: bool,
) -> int:
    """``vireid audit loss NAME TARGET``: value and gradient on generated batches."""
    from reference.audit.loss_audit import PROBES, audit_loss, check_loss, detect_adapter

    info = check_loss(name)
    _check_outputs(expect, markdown, json_out, force)
    loaded = load_target(target)
    adapter = adapter or detect_adapter(info, loaded)  # errors before the progress bar
    step, close = _progress_bar(len(PROBES))
    start = time.monotonic()
    try:
        result, settings = audit_loss(name, loaded, adapter=adapter, scale=scale, progress=step)
    finally:
        close()
    report = from_battery("loss", target, settings, result, time.monotonic() - start)
    return _finish(report, expect, markdown, json_out, force)


def audit_features_command(
    *,
    features: Path,
    protocol: str,
    claimed: str,
    tolerance: float,
    trials: int,
    expect: Path | None,
    markdown: Path | None,
    json_out: Path | None,
    force: bool,
) -> int:
    """``vireid audit features F.npz``: re-score features and compare with claimed figures."""
    from reference.audit.features_audit import audit_features, parse_claimed

    figures = parse_claimed(claimed)
    _check_outputs(expect, markdown, json_out, force)
    step, close = _progress_bar(7)
    start = time.monotonic()
    try:
        report = audit_features(features, protocol=protocol, claimed=figures,
                                tolerance=tolerance, trials=trials, progress=step)  # fmt: skip
    finally:
        close()
    report.seconds = time.monotonic() - start
    return _finish(report, expect, markdown, json_out, force)
