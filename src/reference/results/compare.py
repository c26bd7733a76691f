"""A run's figures beside a published method's, on the same protocol, with a verdict each.

Spec: ``spec/results/check.md``.

For each group of published figures of one protocol (``dataset, mode, shots, draw, direction``)
the run's protocol with the same settings is found: equal values, except that a published
``unstated`` shots or draw matches the run's protocol preferring single-shot and the ``agw``
draw (the common code's), and a re-ranked run matches only a re-ranked published row (and the
other way round). Then, per figure, in percentage points (``value`` = 100 x the run's mean)::

    delta = value - published
    within tolerance   |delta| <= tol
    above              delta > tol                       (not a shortfall)
    inside interval    delta < -tol, published in the run's 95% interval
    shortfall          delta < -tol, published outside the interval (or no interval)
    missing            the run has no such figure

A run with no protocol in common with the published method is refused: the error names each
setting that differs from the nearest of the run's protocols.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from reference.checks import parse_number
from reference.errors import VireidError
from reference.results.published import METRICS, SETTINGS, UNSTATED, is_reranked
from reference.results.record import ProtocolResult, RunRecord, describe

DEFAULT_TOLERANCE = 1.5
WITHIN, ABOVE, INSIDE, SHORTFALL, MISSING = (
    "within tolerance",
    "above",
    "inside interval",
    "shortfall",
    "missing",
)
FAILING = (SHORTFALL, MISSING)


def parse_tolerance(text: str | None) -> dict[str, float]:
    """``"R1=1.5,mAP=2"`` -> ``{"R1": 1.5, "mAP": 2.0}`` (points; figures not named keep
    ``DEFAULT_TOLERANCE``)."""
    out: dict[str, float] = {}
    if not text:
        return out
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in METRICS:
            raise VireidError(
                f"--tolerance: expected FIGURE=POINTS[,...] with FIGURE in {list(METRICS)}, "
                f"got {part!r}"
            )
        points = parse_number(value, f"--tolerance: {name}")
        if not points >= 0:
            raise VireidError(f"--tolerance: {name}: expected a number >= 0, got {value!r}")
        out[name] = points
    return out


@dataclass(frozen=True)
class Comparison:
    """One figure of the run beside the published one (percent)."""

    protocol: str  # the run's protocol key
    metric: str
    value: float | None
    published: float
    delta: float | None
    interval: tuple[float, float] | None
    tolerance: float
    verdict: str


@dataclass(frozen=True)
class Check:
    """The comparisons of a run with one published method, and what could not be compared."""

    reference: str
    comparisons: tuple[Comparison, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return not any(c.verdict in FAILING for c in self.comparisons)


def _published_protocol(group: pd.DataFrame) -> dict[str, object]:
    first = group.iloc[0]
    protocol: dict[str, object] = {name: first[name] for name in SETTINGS}
    protocol["rerank"] = bool(is_reranked(group).any())
    return protocol


def differences(run: Mapping[str, object], published: Mapping[str, object]) -> list[str]:
    """The settings in which a run protocol and a published one differ, in words."""
    out = []
    for name in SETTINGS:
        want = published[name]
        if want == UNSTATED:
            continue
        if run[name] != want:
            out.append(f"{name} differs (run {run[name] or 'n/a'!s}, published {want or 'n/a'!s})")
    if bool(run.get("rerank")) != bool(published.get("rerank")):
        r = "re-ranked" if run.get("rerank") else "not re-ranked"
        p = "re-ranked" if published.get("rerank") else "not re-ranked"
        out.append(f"rerank differs (run {r}, published {p})")
    return out


def match(run: RunRecord, published: Mapping[str, object]) -> ProtocolResult | None:
    """The run's protocol for a published protocol (see the module docstring), or None."""
    return preferred(run.protocols.values(), published)


def preferred(
    protocols: Iterable[ProtocolResult], published: Mapping[str, object]
) -> ProtocolResult | None:
    """Among ``protocols``, the one a published protocol is compared with, or None.

    Those that differ in no stated setting qualify; of them single-shot before multi-shot and
    the ``agw`` draw before the official one (what an ``unstated`` setting is taken to mean).
    """
    candidates = [p for p in protocols if not differences(p.protocol, published)]
    if not candidates:
        return None

    def preference(p: ProtocolResult) -> tuple[int, int, str]:
        return (p.protocol["shots"] != "1", p.protocol["draw"] != "agw", p.key)

    return sorted(candidates, key=preference)[0]


def check(
    run: RunRecord,
    rows: pd.DataFrame,
    reference: str,
    tolerance: Mapping[str, float] | None = None,
    *,
    run_name: str = "run",
) -> Check:
    """Compare ``run`` with the published ``rows`` of one method (``published.select``)."""
    tolerance = dict(tolerance or {})
    comparisons: list[Comparison] = []
    notes: list[str] = []
    refused: list[str] = []
    for _, group in rows.groupby(list(SETTINGS), sort=False):
        wanted = _published_protocol(group)
        found = match(run, wanted)
        if found is None:
            nearest = sorted(
                (differences(p.protocol, wanted), p.key) for p in run.protocols.values()
            )
            if nearest:
                diff, key = nearest[0]
                refused.append(f"{describe(wanted)}: nearest run protocol {key}: {'; '.join(diff)}")
            else:
                refused.append(f"{describe(wanted)}: the run scored no protocol")
            continue
        unstated = [n for n in ("shots", "draw") if wanted[n] == UNSTATED]
        if unstated:
            notes.append(
                f"{describe(wanted)}: {' and '.join(unstated)} not stated by the source; "
                f"compared with the run's {found.key}"
            )
        for row in group.itertuples(index=False):
            tol = tolerance.get(row.metric, DEFAULT_TOLERANCE)
            comparisons.append(_compare(found, row.metric, float(row.value), tol))
    if not comparisons:
        raise VireidError(
            f"cannot compare {run_name} with {reference}: no protocol in common (refused across "
            "protocols): " + " | ".join(refused)
        )
    notes += [f"not scored by {run_name}: {r}" for r in refused]
    return Check(reference=reference, comparisons=tuple(comparisons), notes=tuple(notes))


def _compare(found: ProtocolResult, metric: str, published: float, tol: float) -> Comparison:
    mean = found.mean(metric)
    if mean is None:
        return Comparison(found.key, metric, None, published, None, None, tol, MISSING)
    value = 100.0 * mean
    delta = value - published
    interval = found.interval(metric)
    interval_pct = None if interval is None else (100.0 * interval[0], 100.0 * interval[1])
    if abs(delta) <= tol:
        verdict = WITHIN
    elif delta > tol:
        verdict = ABOVE
    elif interval_pct is not None and interval_pct[0] <= published <= interval_pct[1]:
        verdict = INSIDE
    else:
        verdict = SHORTFALL
    return Comparison(found.key, metric, value, published, delta, interval_pct, tol, verdict)


def check_table(result: Check) -> str:
    """The comparisons as a text table (points), notes below it."""
    head = ["protocol", "figure", "run", "published", "delta", "95% interval", "tol", "verdict"]
    rows = [head]
    for c in result.comparisons:
        rows.append(
            [
                c.protocol,
                c.metric,
                "-" if c.value is None else f"{c.value:.2f}",
                f"{c.published:.2f}",
                "-" if c.delta is None else f"{c.delta:+.2f}",
                "-" if c.interval is None else f"{c.interval[0]:.2f}-{c.interval[1]:.2f}",
                f"{c.tolerance:g}",
                c.verdict + (f": the run has no {c.metric}" if c.verdict == MISSING else ""),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines + list(result.notes)) + "\n"


def summary_line(result: Check, run_name: str) -> str:
    counts = {
        v: sum(c.verdict == v for c in result.comparisons)
        for v in (WITHIN, ABOVE, INSIDE, SHORTFALL, MISSING)
    }
    words = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    status = "PASS" if result.passed else "FAIL"
    return f"{status}: {run_name} against {result.reference}: {words}"


def references_of(values: Sequence[str]) -> list[str]:
    """``--against`` given several times or comma-separated."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]
