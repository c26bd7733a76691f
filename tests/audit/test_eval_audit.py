"""The evaluation audit names each deliberately wrong evaluation by its kind alone.

The wrong implementations live in ``tests/audit/wrong_eval.py``: each changes one choice of an
otherwise correct NumPy loop re-implementation, which must pass clean.
"""

from __future__ import annotations

import pytest

from reference.audit.eval_audit import (
    audit_eval,
    call_target,
    check_protocol,
    explain,
)
from reference.audit.eval_problems import problem
from reference.audit.target import Target
from tests.audit import wrong_eval

pytestmark = pytest.mark.slow

WRONG = [
    ("trapezoid_ap", "ap-formula", "trapezoidal"),
    ("standard_cmc", "cmc-kind", "standard CMC"),
    ("market_rule", "camera-rule", "rule"),
    ("reversed_ties", "tie-order", "descending gallery index"),
    ("misses_without_match", "no-match", "misses"),
    ("similarity_as_distance", "orientation", "similarity read as a distance"),
    ("transposed_one_direction", "orientation", "transposed"),
    ("float32_accumulation", "precision", "float32"),
    ("ragged_identity_cmc", "crash", "crash"),
]


def target(name: str) -> Target:
    return Target(spec=f"tests/audit/wrong_eval.py:{name}", function=getattr(wrong_eval, name),
                  name=name)  # fmt: skip


def adapter_of(name: str) -> str | None:
    return "similarity" if name.startswith("similarity") else None


@pytest.mark.parametrize(("name", "kind", "label"), WRONG)
def test_each_wrong_evaluation_is_named_by_its_kind_alone(name, kind, label):
    result, settings = audit_eval(target(name), protocol="sysu", adapter=adapter_of(name))
    assert [f.kind for f in result.findings] == [kind]
    (finding,) = result.findings
    assert any(label in v for v in finding.variants), finding.variants
    assert finding.problems > 0 and finding.difference > 0
    # the smallest problem, rebuilt from the report, shows the kind again, and nothing else
    p = problem(**finding.smallest["problem"])
    t = target(name)
    obs = explain(p, check_protocol("sysu"), lambda q: call_target(t, settings["adapter"], q))
    assert obs.certain == {kind}
    assert finding.smallest["size"] == p.size <= 16


@pytest.mark.parametrize(
    ("name", "protocol"),
    [
        ("correct", "sysu"),
        ("correct_market", "market"),
        ("correct_regdb", "regdb"),
        ("correct_llcm", "llcm"),
    ],
)
def test_a_correct_reimplementation_passes_clean(name, protocol):
    result, _ = audit_eval(target(name), protocol=protocol)
    assert result.findings == []
    assert result.problems > 200


def test_the_market_function_audited_as_llcm_differs_in_its_cmc_alone():
    # the same camera rule, LLCM's identity CMC against Market-1501's standard one
    result, _ = audit_eval(target("correct_market"), protocol="llcm")
    assert {f.kind for f in result.findings} == {"cmc-kind"}


def test_two_differences_are_both_named():
    # the Market-1501 function audited as a SYSU-MM01 one: two choices differ, each is named
    result, _ = audit_eval(target("correct_market"), protocol="sysu")
    assert {f.kind for f in result.findings} == {"cmc-kind", "camera-rule"}
