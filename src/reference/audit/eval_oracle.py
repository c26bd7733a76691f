"""A float64 loop oracle of the rank metrics, with a switch for each of the field's other choices.

Spec: ``spec/audit/eval.md`` ("The oracle and the variants"). Written from
``spec/evaluation/metrics.md``, ``exclusion.md`` and ``differences.md``, one query at a time with
Python lists, independently of :func:`reference.evaluation.metrics.rank_metrics` (the audit checks
the two agree on every problem it draws). With every switch at the reference's value it computes
the reference's figures; each other value of a switch is one way another implementation is known to
differ, and the audit names a disagreement by the switch whose other value reproduces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

#: SYSU-MM01's camera rule: queries of camera 3 skip gallery items of camera 2 [protocol].
SYSU_QUERY_CAMERA = 3
SYSU_SKIPPED_CAMERA = 2


@dataclass(frozen=True)
class Choices:
    """How one evaluation computes its figures; the defaults are this project's (sysu protocol)."""

    ap: str = "exact"  # "exact" (non-interpolated) | "trapezoid" | "interpolated"
    cmc: str = "identity"  # "identity" | "standard"
    rule: str = "sysu"  # "sysu" | "same-id-same-camera" | "none"
    ties: str = "stable"  # "stable" (by gallery index) | "reverse" | "optimistic" | "pessimistic"
    no_match: str = "skip"  # "skip" (not valid) | "miss" (counted, AP 0, never found)
    order: str = "ascending"  # "ascending" (distance) | "descending" (similarity read as distance)
    transpose: bool = False  # evaluate distmat.T (rows read as gallery items); square only

    def but(self, **changes: object) -> Choices:
        return replace(self, **changes)


@dataclass(frozen=True)
class OracleFigures:
    cmc: np.ndarray  # float64 (max_rank,)
    mAP: float
    mINP: float
    num_valid: int


def skips(q_pid: int, q_cam: int, g_pid: int, g_cam: int, rule: str) -> bool:
    """Whether a query skips a gallery item under ``rule`` (``spec/evaluation/exclusion.md``)."""
    if rule == "sysu":
        return q_cam == SYSU_QUERY_CAMERA and g_cam == SYSU_SKIPPED_CAMERA
    if rule == "same-id-same-camera":
        return q_pid == g_pid and q_cam == g_cam
    return False


def _ap(hits: list[bool], formula: str) -> float:
    n = sum(hits)
    ranks = [k for k, h in enumerate(hits, start=1) if h]
    if formula == "exact":
        return sum(m / k for m, k in enumerate(ranks, start=1)) / n
    if formula == "trapezoid":  # differences.md section 1: the Market-1501 code
        found, previous, ap = 0, 1.0, 0.0
        for k, h in enumerate(hits, start=1):
            found += h
            precision = found / k
            if h:
                ap += (previous + precision) / 2 / n
            previous = precision
        return ap
    # interpolated: each positive's precision replaced by the best precision at any later positive
    precisions = [m / k for m, k in enumerate(ranks, start=1)]
    best, interpolated = 0.0, []
    for p in reversed(precisions):
        best = max(best, p)
        interpolated.append(best)
    return sum(interpolated) / n


def _tie_key(choices: Choices, j: int, positive: bool) -> tuple[int, int]:
    if choices.ties == "reverse":
        return (0, -j)
    if choices.ties == "optimistic":
        return (0 if positive else 1, j)
    if choices.ties == "pessimistic":
        return (1 if positive else 0, j)
    return (0, j)


def oracle_figures(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int,
    choices: Choices,
) -> OracleFigures:
    """CMC (ranks 1..max_rank), mAP, mINP and the valid-query count under ``choices``."""
    d = np.asarray(distmat, dtype=np.float64)
    if choices.transpose:
        d = d.T
    qp, gp = [int(v) for v in q_pids], [int(v) for v in g_pids]
    qc, gc = [int(v) for v in q_camids], [int(v) for v in g_camids]
    sign = 1.0 if choices.order == "ascending" else -1.0
    aps, inps, ranks = [], [], []
    for i in range(len(qp)):
        row = d[i].tolist()  # Python floats: the same values as float(d[i, j])
        kept = [j for j in range(len(gp)) if not skips(qp[i], qc[i], gp[j], gc[j], choices.rule)]
        kept.sort(key=lambda j: (sign * row[j], *_tie_key(choices, j, gp[j] == qp[i])))
        hits = [gp[j] == qp[i] for j in kept]
        if not any(hits):
            if choices.no_match == "miss":
                aps.append(0.0)
                inps.append(0.0)
                ranks.append(math.inf)
            continue
        aps.append(_ap(hits, choices.ap))
        last = max(k for k, h in enumerate(hits, start=1) if h)
        inps.append(sum(hits) / last)
        if choices.cmc == "standard":
            ranks.append(hits.index(True) + 1)
        else:
            seen: list[int] = []
            for j in kept:
                if gp[j] not in seen:
                    seen.append(gp[j])
                if gp[j] == qp[i]:
                    break
            ranks.append(len(seen))
    n = len(aps)
    num_valid = sum(1 for r in ranks if r != math.inf)
    if n == 0:
        return OracleFigures(np.full(max_rank, math.nan), math.nan, math.nan, 0)
    cmc = np.array([sum(1 for r in ranks if r <= k) / n for k in range(1, max_rank + 1)])
    return OracleFigures(cmc, math.fsum(aps) / n, math.fsum(inps) / n, num_valid)
