"""Adapters, target loading and single explanations of the evaluation audit (fast tests)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from reference.audit.eval_adapters import check_adapter
from reference.audit.eval_audit import (
    TargetFailure,
    call_target,
    check_protocol,
    detect_adapter,
    explain,
)
from reference.audit.eval_problems import problem, spec_examples
from reference.audit.target import Target
from reference.errors import VireidError
from tests.audit import wrong_eval

SYSU = check_protocol("sysu")


def as_target(fn, name=None) -> Target:
    return Target(spec=f"test:{name or fn.__name__}", function=fn, name=name or fn.__name__)


def test_adapter_detected_from_parameter_names():
    def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50,
                      use_metric_cuhk03=False, use_cython=True):  # fmt: skip
        raise AssertionError

    def by_sim(sim, q_pids, g_pids, q_camids, g_camids, max_rank=20):
        raise AssertionError

    def unknown(a, b, c, d, e, f=20):
        raise AssertionError

    assert detect_adapter(as_target(wrong_eval.correct)) == "distance"
    assert detect_adapter(as_target(evaluate_rank)) == "torchreid"
    assert detect_adapter(as_target(by_sim)) == "similarity"
    with pytest.raises(VireidError) as err:
        detect_adapter(as_target(unknown))
    assert str(err.value) == (
        "adapter: cannot tell the signature of test:unknown (first parameter 'a'); name one "
        "with --adapter: distance, similarity, torchreid"
    )


def test_torchreid_adapter_passes_its_keywords():
    seen = {}

    def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50,
                      use_metric_cuhk03=True, use_cython=True):  # fmt: skip
        seen.update(max_rank=max_rank, cuhk03=use_metric_cuhk03, cython=use_cython)
        return np.ones(max_rank), 1.0

    p = problem([[0.1, 0.2]], [1], [1, 2], [6], [1, 1])
    cmc, m_ap, m_inp = call_target(as_target(evaluate_rank), "torchreid", p)
    assert seen == {"max_rank": 2, "cuhk03": False, "cython": False}
    assert cmc.tolist() == [1.0, 1.0] and m_ap == 1.0 and m_inp is None


def test_similarity_adapter_passes_the_negated_distances():
    got = {}

    def f(simmat, q_pids, g_pids, q_camids, g_camids, max_rank):
        got["m"] = simmat
        return np.ones(max_rank), 1.0, 1.0

    p = problem([[0.1, 0.2]], [1], [1, 2], [6], [1, 1])
    call_target(as_target(f), "similarity", p)
    assert got["m"].tolist() == [[-0.1, -0.2]]


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (1.0, "returned float; expected (cmc, mAP) or (cmc, mAP, mINP)"),
        ((np.ones(1), 1.0), "returned a CMC of length 1; expected 2"),
        ((np.ones(2), "x"), "returned figures that are not numbers"),
    ],
)
def test_unusable_output_is_a_crash(out, message):
    p = problem([[0.1, 0.2]], [1], [1, 2], [6], [1, 1])
    with pytest.raises(TargetFailure, match=re.escape(message)):
        call_target(as_target(lambda distmat, a, b, c, d, max_rank: out, "f"), "distance", p)
    obs = explain(p, SYSU, lambda q: call_target(
        as_target(lambda distmat, a, b, c, d, max_rank: out, "f"), "distance", q))  # fmt: skip
    assert obs.certain == {"crash"} and obs.alternatives[0][1] == ("crash: unusable output",)


def test_exception_is_a_crash_naming_it():
    def boom(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
        raise IndexError("index 3 is out of bounds")

    p = spec_examples()[0][1]
    obs = explain(p, SYSU, lambda q: call_target(as_target(boom), "distance", q))
    assert obs.certain == {"crash"}
    assert obs.detail == "IndexError: index 3 is out of bounds"
    assert obs.alternatives[0][1] == ("crash: IndexError",)
    assert math.isinf(obs.difference)


def test_nan_figures_on_a_query_without_match_are_no_match():
    def nan_ap(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
        cmc, _, _ = wrong_eval.correct(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
        return cmc, float("nan"), float("nan")

    p = problem([[0.1, 0.2], [0.1, 0.2]], [1, 7], [1, 2], [6, 6], [1, 1])
    obs = explain(p, SYSU, lambda q: call_target(as_target(nan_ap), "distance", q))
    assert obs.certain == {"no-match"}


def test_agreement_is_exact_not_approximate():
    p = spec_examples()[0][1]
    obs = explain(p, SYSU, lambda q: call_target(as_target(wrong_eval.correct), "distance", q))
    assert obs.agrees and obs.evidence["target"]["mAP"] == pytest.approx(5 / 6, abs=1e-15)


def test_spec_example_figures_match_the_spec():
    # differences.md section 1: 5/6 non-interpolated, 19/24 trapezoidal
    p = spec_examples()[0][1]
    t = as_target(wrong_eval.trapezoid_ap)
    obs = explain(p, SYSU, lambda q: call_target(t, "distance", q))
    assert obs.evidence["target"]["mAP"] == pytest.approx(19 / 24, abs=1e-15)
    assert obs.evidence["reference"]["mAP"] == pytest.approx(5 / 6, abs=1e-15)
    assert obs.certain == {"ap-formula"}


def test_unknown_protocol():
    with pytest.raises(VireidError) as err:
        check_protocol("cuhk")
    assert (
        str(err.value) == "protocol: expected one of 'sysu', 'regdb', 'market', 'llcm', got 'cuhk'"
    )
    with pytest.raises(VireidError) as err:
        check_protocol(["sysu"])  # not a dictionary key: the same error, not a TypeError
    assert (
        str(err.value)
        == "protocol: expected one of 'sysu', 'regdb', 'market', 'llcm', got ['sysu']"
    )
    with pytest.raises(VireidError) as err:
        check_adapter({"adapter": "distance"})
    assert str(err.value).startswith("adapter: expected one of 'distance', ")
