"""The evaluation audit's float64 loop oracle: spec values by hand, and the reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from reference.audit.eval_oracle import Choices, oracle_figures
from reference.evaluation.metrics import rank_metrics
from tests.strategies import rank_problems


def figures(d, q, g, qc, gc, max_rank, **choices):
    return oracle_figures(np.array(d), np.array(q), np.array(g), np.array(qc), np.array(gc),
                          max_rank, Choices(**choices))  # fmt: skip


def test_differences_worked_examples():
    args = ([[0.1, 0.2, 0.3]], [1], [1, 2, 1], [6], [1, 1, 1], 3)
    assert figures(*args).mAP == pytest.approx(5 / 6, abs=1e-15)
    assert figures(*args, ap="trapezoid").mAP == pytest.approx(19 / 24, abs=1e-15)
    # interpolated: precisions 1 and 2/3 -> max over later positives: 1, 2/3 -> 5/6
    assert figures(*args, ap="interpolated").mAP == pytest.approx(5 / 6, abs=1e-15)
    cmc = ([[0.1, 0.2, 0.3, 0.4, 0.5]], [1], [2, 2, 2, 1, 3], [6], [1] * 5, 4)
    assert figures(*cmc, cmc="standard").cmc.tolist() == [0, 0, 0, 1]
    assert figures(*cmc).cmc.tolist() == [0, 1, 1, 1]
    rule = ([[0.1, 0.2]], [1], [2, 1], [3], [2, 1], 2)
    assert figures(*rule).mAP == 1.0 and figures(*rule, rule="none").mAP == 0.5
    ties = ([[0.3, 0.3, 0.9]], [1], [4, 1, 5], [6], [1, 1, 1], 3)
    assert figures(*ties).mAP == 0.5 and figures(*ties, ties="reverse").mAP == 1.0
    assert figures(*ties, ties="optimistic").mAP == 1.0
    assert figures(*ties, ties="pessimistic").mAP == 0.5


def test_interpolated_ap_differs_when_precision_rises():
    # positives at ranks 2 and 3: precisions 1/2, 2/3 -> interpolated 2/3, 2/3
    args = ([[0.1, 0.2, 0.3]], [1], [2, 1, 1], [6], [1, 1, 1], 3)
    assert figures(*args).mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert figures(*args, ap="interpolated").mAP == pytest.approx(2 / 3)


def test_no_match_miss_counts_the_query():
    args = ([[0.1, 0.2], [0.1, 0.2]], [1, 9], [1, 2], [6, 6], [1, 1], 2)
    assert figures(*args).mAP == 1.0 and figures(*args).num_valid == 1
    miss = figures(*args, no_match="miss")
    assert miss.mAP == 0.5 and miss.cmc.tolist() == [0.5, 0.5]


def test_orientation_variants():
    args = ([[0.1, 0.9], [0.9, 0.3]], [1, 2], [1, 2], [6, 6], [1, 1], 2)
    assert figures(*args).mAP == 1.0
    assert figures(*args, order="descending").mAP == 0.5
    assert figures(*args, transpose=True).mAP == 1.0  # a symmetric matrix: no change
    flipped = ([[0.9, 0.1], [0.3, 0.2]], [1, 2], [1, 2], [6, 6], [1, 1], 2)
    assert figures(*flipped, transpose=True).mAP == 0.5


@given(problem=rank_problems())
def test_reference_choices_give_the_reference(problem):
    for rule, kind in (
        ("sysu", "identity"),
        ("same-id-same-camera", "standard"),
        ("none", "standard"),
    ):
        args = (problem.distmat, problem.q_pids, problem.g_pids, problem.q_camids, problem.g_camids)
        out = figures(*args, 5, rule=rule, cmc=kind)
        if out.num_valid == 0:
            continue
        ref = rank_metrics(*args, exclusion=rule, cmc_kind=kind, max_rank=5)
        assert out.cmc == pytest.approx(ref.cmc, abs=1e-12)
        assert out.mAP == pytest.approx(ref.mAP, abs=1e-12)
        assert out.mINP == pytest.approx(ref.mINP, abs=1e-12)
