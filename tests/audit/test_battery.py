"""The battery runner: attribution of ambiguous observations, and shrinking."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from reference.audit.battery import (
    FLOAT32_SIZED,
    Case,
    Observation,
    concluded,
    crashed,
    run_battery,
)


@dataclass(frozen=True)
class Tiny:
    n: int

    @property
    def params(self):
        return (self.n,)

    @property
    def size(self) -> int:
        return self.n

    def describe(self) -> str:
        return f"n={self.n}"

    def to_dict(self):
        return {"n": self.n}

    def snippet(self) -> str:
        return f"n = {self.n}"


def alt(*kinds: str):
    return (frozenset(kinds), tuple(f"{k}: because" for k in kinds))


def test_an_ambiguous_problem_goes_to_the_confirmed_kind():
    seen = {
        1: Observation((alt("x"),), 0.5),
        2: Observation((alt("x"), alt("y")), 0.7),  # x or y: x is confirmed by problem 1
        3: Observation(),
    }
    case = Case("fixed", "three problems", (Tiny(1), Tiny(2), Tiny(3)))
    result = run_battery([case], lambda p: seen[p.n])
    (finding,) = result.findings
    assert finding.kind == "x" and finding.problems == 2 and finding.difference == 0.7
    assert finding.smallest["size"] == 1 and finding.smallest["snippet"] == "n = 1"
    assert result.problems == 3 and result.cases[0].kinds == ["x"]


def test_an_ambiguity_nothing_confirms_is_unexplained_naming_the_candidates():
    case = Case("fixed", "one problem", (Tiny(4),))
    result = run_battery([case], lambda p: Observation((alt("x"), alt("y", "z")), 1.0))
    (finding,) = result.findings
    assert finding.kind == "unexplained"
    assert finding.variants == ["equally explained by: x | y+z"]


def test_shrinking_finds_the_smallest_drawn_problem_that_shows_the_kind():
    def visit(p: Tiny) -> Observation:
        return Observation((alt("big"),), 1.0) if p.n >= 17 else Observation()

    case = Case("drawn", "integers", strategy=st.builds(Tiny, st.integers(0, 1000)), examples=60)
    result = run_battery([case], visit, shrink_budget_s=30)
    (finding,) = result.findings
    assert finding.kind == "big" and finding.smallest["size"] == 17
    # the same draws every time: an audit is reproducible
    again = run_battery([case], visit, shrink_budget_s=30)
    assert again.findings[0].problems == finding.problems


def test_findings_are_ordered_as_the_kinds():
    case = Case("fixed", "two", (Tiny(1), Tiny(2)))
    seen = {1: Observation((alt("crash"),), 1.0), 2: Observation((alt("ap-formula"),), 0.1)}
    result = run_battery([case], lambda p: seen[p.n])
    assert [f.kind for f in result.findings] == ["ap-formula", "crash"]


def test_a_target_failure_is_a_crash_named_by_its_cause():
    evidence = {"reference": 1, "target": None}
    try:
        try:
            raise ZeroDivisionError("x")
        except ZeroDivisionError as exc:
            raise ValueError("ZeroDivisionError: x") from exc
    except ValueError as failure:
        obs = crashed(failure, evidence)
    assert obs.alternatives == ((frozenset({"crash"}), ("crash: ZeroDivisionError",)),)
    assert obs.difference == math.inf and obs.detail == "ZeroDivisionError: x"
    assert obs.evidence is evidence
    bare = crashed(ValueError("returned None"), {})
    assert bare.alternatives == ((frozenset({"crash"}), ("crash: unusable output",)),)


@given(st.floats(0, 1e-3), st.booleans())
def test_an_unexplained_difference_is_precision_only_when_float32_sized(diff, explained):
    found = [alt("x")] if explained else []
    obs = concluded(found, diff, {"e": 1})
    assert obs.difference == diff and obs.detail == "" and obs.evidence == {"e": 1}
    if explained:
        assert obs.alternatives == (alt("x"),)
    elif diff <= FLOAT32_SIZED:
        precision = (frozenset({"precision"}), ("precision: float32-sized differences",))
        assert obs.alternatives == (precision,)
    else:
        assert obs.alternatives == (
            (frozenset({"unexplained"}), ("unexplained: no choice reproduces it",)),
        )
