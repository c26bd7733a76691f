"""Audit reports (Markdown and JSON) and the known-deviations file (``--expect``).

Spec: ``spec/audit/reports.md``. The Markdown report is written to be pasted into a bug report:
one section per kind with the smallest problem as Python code and both implementations' output.
The JSON report holds the same facts for machines (schema ``vireid.audit/1``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference.audit.kinds import KINDS, Finding
from reference.checks import is_one_of
from reference.config import load_toml
from reference.errors import VireidError
from reference.fileio import atomic_write_text

SCHEMA = "vireid.audit/1"


@dataclass(frozen=True)
class Expectation:
    kind: str
    note: str


def load_expectations(path: str | os.PathLike[str]) -> tuple[Expectation, ...]:
    """The ``[[deviation]]`` entries of a TOML file: ``kind`` (a known kind) and ``note``."""
    data = load_toml(path)
    unknown = set(data) - {"deviation"}
    if unknown:
        raise VireidError(
            f"{path}: unknown key {sorted(unknown)[0]!r}; expected [[deviation]] tables"
        )
    entries = data.get("deviation", [])
    if not isinstance(entries, list):
        raise VireidError(f"{path}: deviation: expected an array of tables ([[deviation]])")
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}: deviation[{i}]"
        if not isinstance(entry, dict):
            raise VireidError(f"{where}: expected a table with 'kind' and 'note'")
        extra = set(entry) - {"kind", "note"}
        if extra:
            raise VireidError(f"{where}.{sorted(extra)[0]}: unknown field; expected kind, note")
        kind, note = entry.get("kind"), entry.get("note")
        if not is_one_of(kind, KINDS):
            raise VireidError(
                f"{where}.kind: unknown kind {kind!r}; expected one of {', '.join(KINDS)}"
            )
        if not isinstance(note, str) or not note.strip():
            raise VireidError(f"{where}.note: expected a non-empty string saying why it is known")
        out.append(Expectation(kind, note.strip()))
    return tuple(out)


@dataclass
class AuditReport:
    """What one audit found, ready to print, write and turn into an exit status."""

    command: str  # "eval" | "loss" | "features"
    target: str
    settings: dict[str, Any]
    findings: list[Finding]
    cases: list[dict[str, Any]] = field(default_factory=list)
    problems: int = 0
    seconds: float = 0.0
    unused_expectations: list[Expectation] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # command-specific tables

    def expect(self, expectations: tuple[Expectation, ...]) -> AuditReport:
        """Mark findings of an expected kind; remember expectations nothing matched."""
        by_kind: dict[str, list[str]] = {}
        for e in expectations:
            by_kind.setdefault(e.kind, []).append(e.note)
        for f in self.findings:
            if f.kind in by_kind:
                f.expected, f.note = True, " / ".join(by_kind[f.kind])
        seen = {f.kind for f in self.findings}
        self.unused_expectations = [e for e in expectations if e.kind not in seen]
        return self

    @property
    def unexpected(self) -> list[Finding]:
        return [f for f in self.findings if not f.expected]

    @property
    def exit_status(self) -> int:
        """0 when nothing unexpected was found, 1 otherwise."""
        return 1 if self.unexpected else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "command": self.command,
            "target": self.target,
            "settings": self.settings,
            "status": "pass" if self.exit_status == 0 else "fail",
            "problems": self.problems,
            "seconds": round(self.seconds, 3),
            "kinds": [f.kind for f in self.findings],
            "unexpected": [f.kind for f in self.unexpected],
            "findings": [f.to_dict() for f in self.findings],
            "unused_expectations": [
                {"kind": e.kind, "note": e.note} for e in self.unused_expectations
            ],
            "cases": self.cases,
            **self.extra,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_markdown(self) -> str:
        return render_markdown(self)

    def write(
        self,
        *,
        markdown: str | os.PathLike[str] | None = None,
        json_out: str | os.PathLike[str] | None = None,
        force: bool = False,
    ) -> list[Path]:
        written = []
        if markdown is not None:
            written.append(atomic_write_text(markdown, self.to_markdown(), overwrite=force))
        if json_out is not None:
            written.append(atomic_write_text(json_out, self.to_json(), overwrite=force))
        return written


def _fmt(x: float) -> str:
    if x != x or x in (float("inf"), float("-inf")):
        return "—"
    return f"{x:.3g}"


def _evidence_lines(evidence: dict[str, Any]) -> list[str]:
    lines = []
    for who in ("target", "reference"):
        if who in evidence:
            lines.append(f"# {who}: {json.dumps(evidence[who], allow_nan=True)}")
    return lines


def render_markdown(report: AuditReport) -> str:
    status = "PASS" if report.exit_status == 0 else "FAIL"
    out = [f"# vireid audit {report.command}: `{report.target}` — {status}", ""]
    for key, value in report.settings.items():
        out.append(f"- {key}: {value}")
    if report.command == "features":
        out.append(f"- {report.problems} trial(s) scored, {report.seconds:.1f} s")
    else:
        cases = len(report.cases)
        out.append(f"- {report.problems} problems in {cases} cases, {report.seconds:.1f} s")
    out.append("")
    if report.extra.get("claims_markdown"):
        out += [*report.extra["claims_markdown"], ""]
    if not report.findings:
        out.append("No difference found: the target agrees with the reference on every problem.")
    else:
        out.append("| kind | expected | largest difference | problems | smallest problem |")
        out.append("|---|---|---|---|---|")
        for f in report.findings:
            smallest = f.smallest.get("describe", "—")
            expected = "yes" if f.expected else "**no**"
            out.append(
                f"| {f.kind} | {expected} | {_fmt(f.difference)} | {f.problems} | {smallest} |"
            )
    for f in report.findings:
        out += ["", f"## {f.kind}{' (expected)' if f.expected else ''}", "", f"{f.meaning}.", ""]
        if f.note:
            out += [f"Known deviation: {f.note}", ""]
        for v in f.variants:
            out.append(f"- {v}")
        if f.detail:
            out.append(f"- detail: `{f.detail}`")
        if f.cases:
            out.append(f"- seen in: {', '.join(f.cases)} ({f.problems} problems)")
        if f.smallest:
            out += [
                "",
                f"Smallest problem ({f.smallest['describe']}, case {f.smallest['case']!r}):",
                "",
                "```python",
                f.smallest["snippet"],
            ]
            out += _evidence_lines(f.smallest.get("evidence", {}))
            out += ["```"]
    if report.unused_expectations:
        out += ["", "Expected but not seen:", ""]
        out += [f"- {e.kind}: {e.note}" for e in report.unused_expectations]
    if report.cases:
        out += ["", "| case | what | problems | kinds |", "|---|---|---|---|"]
        for c in report.cases:
            out.append(
                f"| {c['name']} | {c['what']} | {c['problems']} | {', '.join(c['kinds']) or '—'} |"
            )
    return "\n".join(out) + "\n"


def from_battery(
    command: str, target: str, settings: dict[str, Any], result: Any, seconds: float
) -> AuditReport:
    """The report of a :class:`~reference.audit.battery.BatteryResult`."""
    cases = [
        {"name": c.name, "what": c.what, "problems": c.problems, "kinds": list(c.kinds)}
        for c in result.cases
    ]
    return AuditReport(command, target, settings, list(result.findings), cases, result.problems,
                       seconds)  # fmt: skip
