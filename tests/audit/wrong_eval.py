"""Evaluation functions for the audit's tests: one correct re-implementation, one wrong per kind.

Each is the field's usual ``(distmat, q_pids, g_pids, q_camids, g_camids, max_rank) -> (cmc, mAP,
mINP)`` function written as a plain NumPy loop over queries (the style of the common Python code),
independently of ``reference.evaluation``. ``correct`` follows ``spec/evaluation/metrics.md``; every
other function changes exactly one choice, so an audit must name exactly one kind for it.
"""

from __future__ import annotations

import numpy as np


def _evaluate(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank,
    *,
    ap="exact",
    cmc="identity",
    rule="sysu",
    sort="stable",
    no_match="skip",
    dtype=np.float64,
    ragged=False,
):
    num_q, num_g = distmat.shape
    if sort == "reverse":
        back = -np.arange(num_g)
        indices = np.stack([np.lexsort((back, row)) for row in distmat])
    else:
        indices = np.argsort(distmat, axis=1, kind=sort)
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(num_q):
        order = indices[i]
        if rule == "sysu":
            keep = ~((q_camids[i] == 3) & (g_camids[order] == 2))
        elif rule == "market":
            keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        else:
            keep = np.ones(num_g, dtype=bool)
        ranked = g_pids[order][keep]
        match = ranked == q_pids[i]
        if not match.any():
            if no_match == "miss":
                all_cmc.append(np.zeros(max_rank))
                all_ap.append(0.0)
                all_inp.append(0.0)
            continue
        if cmc == "identity":
            _, first = np.unique(ranked, return_index=True)
            found = ranked[np.sort(first)] == q_pids[i]
        else:
            found = match
        curve = np.cumsum(found)[:max_rank].clip(max=1)
        if not ragged:  # a query keeping fewer than max_rank items stays found at later ranks
            curve = np.concatenate([curve, np.full(max_rank - curve.size, curve[-1])])
        all_cmc.append(curve)
        ranks = np.flatnonzero(match) + 1
        if ap == "exact":
            all_ap.append(np.mean(np.arange(1, ranks.size + 1) / ranks))
        else:  # trapezoidal rule over the precision-recall curve (the Market-1501 code)
            precision = np.cumsum(match) / np.arange(1, match.size + 1)
            before = np.concatenate([[1.0], precision[:-1]])
            all_ap.append(np.sum((before + precision) / 2 * match) / match.sum())
        all_inp.append(ranks.size / ranks[-1])
    cmc_rows = np.asarray(all_cmc, dtype=dtype)  # ragged rows raise here
    count = dtype(len(all_ap))
    mean_cmc = cmc_rows.sum(axis=0, dtype=dtype) / count
    return (
        mean_cmc,
        float(np.sum(np.asarray(all_ap, dtype=dtype), dtype=dtype) / count),
        float(np.sum(np.asarray(all_inp, dtype=dtype), dtype=dtype) / count),
    )


def correct(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """The SYSU-MM01 evaluation as the spec defines it."""
    return _evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)


def correct_market(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """The Market-1501-style evaluation (same id and camera skipped, standard CMC)."""
    return _evaluate(
        distmat, q_pids, g_pids, q_camids, g_camids, max_rank, rule="market", cmc="standard"
    )


def trapezoid_ap(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    return _evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, ap="trapezoid")


def standard_cmc(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    return _evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, cmc="standard")


def market_rule(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    return _evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, rule="market")


def reversed_ties(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """Ties broken by descending gallery index (one order an unstable sort may give)."""
    return _evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, sort="reverse")


def misses_without_match(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    return _evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, no_match="miss")


def similarity_as_distance(simmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """Takes a similarity matrix but sorts it ascending, as if it were a distance."""
    return _evaluate(simmat, q_pids, g_pids, q_camids, g_camids, max_rank)


def transposed_one_direction(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """Transposes the matrix in the one direction where it is square (as RegDB's both are):
    written for a gallery x query matrix there, it reads rows as gallery items."""
    if distmat.shape[0] == distmat.shape[1]:
        distmat = distmat.T
    return _evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)


def float32_accumulation(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    return _evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, dtype=np.float32)


def ragged_identity_cmc(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """The common code's identity CMC: rows cut at max_rank and stacked, so queries keeping
    different numbers of identities make NumPy raise."""
    return _evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, ragged=True)


def correct_llcm(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """The LLCM evaluation (same identity and camera skipped, identity CMC)."""
    return _evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, rule="market")


def correct_regdb(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """The RegDB evaluation (no camera rule, standard CMC)."""
    return _evaluate(
        distmat, q_pids, g_pids, q_camids, g_camids, max_rank, rule="none", cmc="standard"
    )
