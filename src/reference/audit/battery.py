"""Run a battery of cases against a target, name what differs, shrink each kind's evidence.

Spec: ``spec/audit/battery.md``. Shared by the evaluation and the loss audits: a *case* is either
a fixed list of problems (the spec's worked examples) or a hypothesis strategy drawn a fixed number
of times (derandomized, no example database, so an audit is the same on every run and every
machine). Visiting a problem gives an :class:`Observation`: nothing when the target agrees with
the reference, otherwise the minimal sets of kinds that reproduce the target's output.

A kind is *confirmed* when some problem is explained by it and by nothing else. A problem that
several explanations fit is attributed to a confirmed kind among them; if none is confirmed it is
reported as ``unexplained`` naming the candidates. For each kind found, hypothesis shrinks the
case's strategy to the smallest problem on which the kind is certain (every explanation of it
contains the kind), within a time budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reference.audit.kinds import KINDS, Finding
from reference.errors import VireidError

#: an explanation: a minimal set of kinds and the variant labels that reproduce the target
Alternative = tuple[frozenset[str], tuple[str, ...]]
#: a difference no larger than this that no choice explains is float32-sized: ``precision``
FLOAT32_SIZED = 1e-4


class Problem(Protocol):
    params: tuple[Any, ...]  # what the problem was built from (identity for replays)

    @property
    def size(self) -> int: ...

    def describe(self) -> str: ...  # "3 queries x 5 gallery items"

    def to_dict(self) -> dict[str, Any]: ...

    def snippet(self) -> str: ...  # Python code that rebuilds the problem


@dataclass(frozen=True)
class Observation:
    """What one problem showed: ``alternatives`` empty means the target agrees."""

    alternatives: tuple[Alternative, ...] = ()
    difference: float = 0.0
    detail: str = ""  # the exception of a crash, candidates of an ambiguity
    evidence: dict[str, Any] = field(default_factory=dict)  # target vs reference, for the report

    @property
    def agrees(self) -> bool:
        return not self.alternatives

    @property
    def certain(self) -> frozenset[str]:
        """Kinds every explanation contains."""
        if not self.alternatives:
            return frozenset()
        out = self.alternatives[0][0]
        for kinds, _ in self.alternatives[1:]:
            out = out & kinds
        return out

    @property
    def unique(self) -> bool:
        return len({kinds for kinds, _ in self.alternatives}) == 1


def crashed(failure: BaseException, evidence: dict[str, Any]) -> Observation:
    """The target failed on a problem: the ``crash`` kind, named by the exception the target
    raised (the failure's cause) or ``unusable output``; the failure's message is the detail."""
    cause = failure.__cause__
    what = type(cause).__name__ if cause is not None else "unusable output"
    alt: Alternative = (frozenset({"crash"}), (f"crash: {what}",))
    return Observation((alt,), math.inf, str(failure), evidence)


def concluded(
    found: Sequence[Alternative], difference: float, evidence: dict[str, Any]
) -> Observation:
    """A difference and its explanations; none found: ``precision`` when the difference is
    float32-sized (at most :data:`FLOAT32_SIZED`), else ``unexplained``."""
    if not found and difference <= FLOAT32_SIZED:
        found = [(frozenset({"precision"}), ("precision: float32-sized differences",))]
    if not found:
        found = [(frozenset({"unexplained"}), ("unexplained: no choice reproduces it",))]
    return Observation(tuple(found), difference, "", evidence)


@dataclass(frozen=True)
class Case:
    """A fixed list of problems, or a strategy drawn ``examples`` times."""

    name: str
    what: str
    problems: tuple[Any, ...] = ()
    strategy: Any = None
    examples: int = 0


@dataclass
class CaseResult:
    name: str
    what: str
    problems: int = 0
    kinds: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class BatteryResult:
    findings: list[Finding]
    cases: list[CaseResult]
    problems: int


class _Stop(Exception):
    """Raised inside a hypothesis run to stop it (a shrink target was found)."""


def _hypothesis():
    try:
        import hypothesis
        from hypothesis import HealthCheck, Phase, given, settings
    except ImportError as exc:  # pragma: no cover - hypothesis is in the audit extra
        raise VireidError(
            "audit: needs the 'hypothesis' package (pip install 'vireid-reference[audit]')"
        ) from exc
    return hypothesis, HealthCheck, Phase, given, settings


def _settings(examples: int, shrink: bool):
    _, health, phase, _, settings = _hypothesis()
    return settings(
        database=None,
        derandomize=True,
        max_examples=max(1, examples),
        deadline=None,
        report_multiple_bugs=False,
        print_blob=False,
        suppress_health_check=list(health),
        phases=[phase.generate, phase.shrink] if shrink else [phase.generate],
    )


def _drive(strategy: Any, examples: int, body: Callable[[Any], None], shrink: bool) -> None:
    """Run ``body`` on ``examples`` draws of ``strategy`` (the same draws on every call)."""
    _, _, _, given, _ = _hypothesis()

    def run(problem: Any) -> None:
        body(problem)

    _settings(examples, shrink)(given(strategy)(run))()


def collect(
    strategy: Any, examples: int, visit: Callable[[Any], Observation]
) -> list[tuple[Any, Observation]]:
    out: list[tuple[Any, Observation]] = []
    _drive(strategy, examples, lambda p: out.append((p, visit(p))), shrink=False)
    return out


def shrink(
    strategy: Any,
    examples: int,
    visit: Callable[[Any], Observation],
    shows: Callable[[Observation], bool],
    budget_s: float,
) -> tuple[Any, Observation] | None:
    """The smallest draw of ``strategy`` whose observation ``shows`` (hypothesis shrinking).

    The draws before the first one that shows are those :func:`collect` made, so a kind seen
    there is found again. Past ``budget_s`` seconds no new candidate is accepted and the best
    so far is returned.
    """
    best: dict[str, Any] = {}
    start = time.monotonic()

    def body(problem: Any) -> None:
        if best and time.monotonic() - start > budget_s and problem.params != best["p"].params:
            return
        obs = visit(problem)
        if shows(obs):
            best["p"], best["o"] = problem, obs
            raise _Stop

    hypothesis = _hypothesis()[0]
    try:
        _drive(strategy, examples, body, shrink=True)
    except _Stop:
        pass
    except hypothesis.errors.Flaky:  # a target that answers differently on a replay
        pass
    return (best["p"], best["o"]) if best else None


def _attribute(obs: Observation, confirmed: set[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """The kinds (and variant labels) this observation is attributed to."""
    if obs.unique:
        kinds = obs.alternatives[0][0]
        labels = tuple(label for _, alt in obs.alternatives for label in alt)
        return kinds, labels
    fitting = [(k, labels) for k, labels in obs.alternatives if k <= confirmed]
    if fitting:
        kinds = frozenset().union(*(k for k, _ in fitting))
        return kinds, tuple(label for _, labels in fitting for label in labels)
    names = " | ".join("+".join(sorted(k)) for k, _ in obs.alternatives)
    return frozenset({"unexplained"}), (f"equally explained by: {names}",)


def run_battery(
    cases: Sequence[Case],
    visit: Callable[[Any], Observation],
    *,
    shrink_budget_s: float = 10.0,
    progress: Callable[[str], None] | None = None,
) -> BatteryResult:
    """Visit every problem of every case; one finding per kind, with its smallest problem."""
    records: list[tuple[Case, Any, Observation]] = []
    results: list[CaseResult] = []
    for case in cases:
        if progress is not None:
            progress(case.name)
        start = time.monotonic()
        if case.strategy is not None:
            seen = collect(case.strategy, case.examples, visit)
        else:
            seen = [(p, visit(p)) for p in case.problems]
        records.extend((case, p, o) for p, o in seen)
        results.append(CaseResult(case.name, case.what, len(seen)))
        results[-1].seconds = time.monotonic() - start

    confirmed: set[str] = set()
    for _, _, obs in records:
        if obs.alternatives and obs.unique:
            confirmed |= obs.alternatives[0][0]

    findings: dict[str, Finding] = {}
    first: dict[tuple[str, str], tuple[Case, Any, Observation]] = {}
    sure: dict[str, list[str]] = {}  # labels that alone explained some problem
    by_case = {r.name: r for r in results}
    for case, problem, obs in records:
        if obs.agrees:
            continue
        kinds, labels = _attribute(obs, confirmed)
        for kind in sorted(kinds):
            f = findings.setdefault(kind, Finding(kind))
            f.problems += 1
            f.difference = max(f.difference, obs.difference)
            own = [x for x in labels if x.startswith(kind + ":") or kind == "unexplained"]
            for label in own:
                if label not in f.variants:
                    f.variants.append(label)
            if len(own) == 1 and own[0] not in sure.setdefault(kind, []):
                sure[kind].append(own[0])
            if case.name not in f.cases:
                f.cases.append(case.name)
            if kind not in by_case[case.name].kinds:
                by_case[case.name].kinds.append(kind)
            if obs.detail and not f.detail:
                f.detail = obs.detail
            # the smallest fixed problem and the first drawn one on which the kind is certain
            if kind in obs.certain or kind == "unexplained":
                slot = "fixed" if case.strategy is None else "drawn"
                old = first.get((kind, slot))
                if old is None or (slot == "fixed" and problem.size < old[1].size):
                    first[(kind, slot)] = (case, problem, obs)

    for kind, f in findings.items():
        if sure.get(kind):
            f.variants = sure[kind]
        candidates = [first[(kind, slot)] for slot in ("fixed", "drawn") if (kind, slot) in first]
        if not candidates:
            continue
        drawn = first.get((kind, "drawn"))
        if drawn is not None and kind != "unexplained":
            case, problem, obs = drawn
            if progress is not None:
                progress(f"shrinking {kind}")
            detail_type = obs.detail.split(":")[0] if kind == "crash" else None

            def shows(o: Observation, kind: str = kind, detail_type=detail_type) -> bool:
                if kind not in o.certain:
                    return False
                return detail_type is None or o.detail.split(":")[0] == detail_type

            found = shrink(case.strategy, case.examples, visit, shows, shrink_budget_s)
            if found is not None:
                candidates.append((case, *found))
        case, problem, obs = min(candidates, key=lambda c: c[1].size)
        f.smallest = {
            "size": problem.size,
            "describe": problem.describe(),
            "case": case.name,
            "problem": problem.to_dict(),
            "snippet": problem.snippet(),
            "evidence": obs.evidence,
            "detail": obs.detail,
        }
    order = {name: i for i, name in enumerate(KINDS)}
    ordered = sorted(findings.values(), key=lambda f: order.get(f.kind, len(order)))
    return BatteryResult(ordered, results, len(records))
