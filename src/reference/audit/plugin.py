"""The audit as a pytest plugin: one test per battery case, in another project's CI.

Spec: ``spec/audit/reports.md`` ("From pytest"). Installed, the package registers this module
under the ``pytest11`` entry point, so::

    pytest --pyargs reference.audit --audit-target their_pkg.metrics:evaluate --audit-protocol sysu

collects ``reference/audit/test_against_reference.py`` and turns every case of the battery into a
test. With the package only on ``PYTHONPATH`` (not installed), name the plugin: ``pytest -p
reference.audit.plugin --pyargs reference.audit ...``. A case fails with the Markdown of what it
found (kind, smallest problem, both outputs); a case whose every finding is listed in
``--audit-expect`` is reported as an expected failure (xfail) with the file's note.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reference.audit.battery import Case, Observation, run_battery
from reference.audit.report import AuditReport, from_battery, load_expectations
from reference.audit.target import load_target
from reference.errors import VireidError

USAGE = (
    "pytest --pyargs reference.audit --audit-target TARGET "
    "[--audit-protocol sysu|regdb|market|llcm] "
    "[--audit-loss tri|hctri|ca|mml|mdl|id] [--audit-adapter NAME] [--audit-expect FILE]"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vireid-audit", "vireid audit (reference.audit)")
    group.addoption(
        "--audit-target",
        metavar="TARGET",
        help="package.module:function or path/to/file.py:function to audit",
    )
    group.addoption(
        "--audit-protocol",
        default="sysu",
        choices=["sysu", "regdb", "market", "llcm"],
        help="evaluation protocol of the reference (default sysu)",
    )
    group.addoption(
        "--audit-loss",
        choices=["tri", "hctri", "ca", "mml", "mdl", "id"],
        help="audit a loss of this name instead of an evaluation function",
    )
    group.addoption("--audit-adapter", metavar="NAME", help="the target's signature")
    group.addoption("--audit-expect", metavar="FILE", help="known deviations (TOML)")
    group.addoption("--audit-scale", type=float, default=1.0, metavar="S",
                    help="examples per probe x S (default 1)")  # fmt: skip


@dataclass
class AuditSession:
    """The target, its cases and how to visit a problem, built once per pytest session."""

    command: str
    target: str
    settings: dict[str, Any]
    cases: list[Case]
    visit: Any
    expectations: tuple[Any, ...]

    def run_case(self, name: str) -> AuditReport:
        (case,) = [c for c in self.cases if c.name == name]
        start = time.monotonic()
        result = run_battery([case], self.visit)
        report = from_battery(self.command, self.target, self.settings, result,
                              time.monotonic() - start)  # fmt: skip
        return report.expect(self.expectations)


def build_session(config: pytest.Config) -> AuditSession:
    spec = config.getoption("--audit-target")
    if not spec:
        raise pytest.UsageError(f"reference.audit: --audit-target is required: {USAGE}")
    try:
        target = load_target(spec)
        adapter = config.getoption("--audit-adapter")
        scale = config.getoption("--audit-scale")
        expect = config.getoption("--audit-expect")
        expectations = load_expectations(Path(expect)) if expect else ()
        loss = config.getoption("--audit-loss")
        if loss:
            from reference.audit import loss_audit as la

            info = la.check_loss(loss)
            adapter = adapter or la.detect_adapter(info, target)
            cases = la.loss_cases(info, adapter, scale=scale)

            def visit(p: Any) -> Observation:
                return la.explain(info, p, lambda q: la.call_target(target, adapter, q))

            settings = {"loss": loss, "adapter": adapter, "reference": info.title}
            return AuditSession("loss", spec, settings, cases, visit, expectations)
        from reference.audit import eval_audit as ea

        protocol = ea.check_protocol(config.getoption("--audit-protocol"))
        adapter = ea.check_adapter(adapter) if adapter else ea.detect_adapter(target)
        cases = ea.eval_cases(protocol, scale=scale)

        def visit_eval(p: Any) -> Observation:
            return ea.explain(p, protocol, lambda q: ea.call_target(target, adapter, q))

        settings = {"protocol": protocol.name, "adapter": adapter}
        return AuditSession("eval", spec, settings, cases, visit_eval, expectations)
    except VireidError as exc:
        raise pytest.UsageError(f"reference.audit: {exc}") from None


_KEY = pytest.StashKey[AuditSession]()


def audit_session(config: pytest.Config) -> AuditSession:
    if _KEY not in config.stash:
        config.stash[_KEY] = build_session(config)
    return config.stash[_KEY]


def check_case(config: pytest.Config, name: str) -> None:
    """The body of one generated test: fail with the report, xfail when all is expected."""
    report = audit_session(config).run_case(name)
    if report.unexpected:
        pytest.fail(report.to_markdown(), pytrace=False)
    if report.findings:
        notes = "; ".join(f"{f.kind}: {f.note}" for f in report.findings)
        pytest.xfail(f"known deviations only: {notes}")
