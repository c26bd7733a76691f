"""Rank-metric kernel: vectorised ``rank_metrics`` against per-query loops, time and memory.

Run: ``nox -s bench`` (or ``pytest tests/bench/bench_metrics.py -o python_files=bench_*.py
--benchmark-only``). Problems are synthetic with the real set sizes: SYSU-MM01 single-shot
(3,803 queries x 301 gallery), multi-shot (3,803 x 3,010), both with the SYSU camera rule, and
RegDB (2,060 x 2,060, no rule); float32 distances, as from float32 features.

Baselines in the same run:
- ``loop``: one NumPy pass per query (stable argsort, then the metric on the ranked row), the
  structure of the field's common evaluation code, computing this project's definitions;
- ``oracle``: the exact-fraction pure-Python oracle of ``tests/evaluation/test_metrics.py``
  (single-shot only: it takes seconds).
Each baseline is also checked to give the same figures as the vectorised code.

Memory: ``rank_metrics_from_features`` runs in a fresh subprocess for N x N problems of growing N;
the extra peak resident memory (``ru_maxrss`` after minus before the call) stays near the chunk's
working set, ``O(chunk * N)``, while a full float32 distance matrix would take ``4 N^2`` bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from reference.evaluation.metrics import (
    RankMetrics,
    rank_metrics,
    rank_metrics_from_features,
)
from tests.evaluation.test_metrics import oracle
from tests.strategies import RankProblem

PROBLEMS = {
    # name: (n_query, n_gallery, n_ids, exclusion)
    "sysu-single-3803x301": (3803, 301, 96, "sysu"),
    "sysu-multi-3803x3010": (3803, 3010, 96, "sysu"),
    "regdb-2060x2060": (2060, 2060, 206, "none"),
}


def make_problem(name: str, seed: int = 0) -> tuple[RankProblem, str]:
    """Identities and cameras shaped like the protocol; distances closer for the right identity."""
    n_query, n_gallery, n_ids, rule = PROBLEMS[name]
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(0, n_ids, n_query)
    g_pids = np.resize(np.arange(n_ids), n_gallery)
    if rule == "sysu":
        q_camids = rng.choice([3, 6], n_query)
        g_camids = np.resize(np.array([1, 2, 4, 5]), n_gallery)
    else:
        q_camids = np.ones(n_query, dtype=np.int64)
        g_camids = np.full(n_gallery, 2)
    same = q_pids[:, None] == g_pids[None, :]
    distmat = (rng.random((n_query, n_gallery)) + 0.7 * ~same).astype(np.float32)
    problem = RankProblem(distmat, q_pids, g_pids, q_camids, g_camids)
    return problem, rule


def loop_baseline(problem: RankProblem, rule: str, max_rank: int = 20) -> tuple:
    """Per-query NumPy loop: (cmc, mAP, mINP, num_valid)."""
    curves, aps, inps = [], [], []
    for i in range(len(problem.q_pids)):
        order = np.argsort(problem.distmat[i], kind="stable")
        g_pids = problem.g_pids[order]
        if rule == "sysu" and problem.q_camids[i] == 3:
            g_pids = g_pids[problem.g_camids[order] != 2]
        match = g_pids == problem.q_pids[i]
        if not match.any():
            continue
        ranks = np.flatnonzero(match) + 1
        hits = np.arange(1, len(ranks) + 1)
        aps.append(np.mean(hits / ranks))
        inps.append(len(ranks) / ranks[-1])
        _, first = np.unique(g_pids, return_index=True)
        distinct = g_pids[np.sort(first)]
        rank = int(np.flatnonzero(distinct == problem.q_pids[i])[0]) + 1
        curves.append(np.arange(1, max_rank + 1) >= rank)
    cmc = np.mean(curves, axis=0, dtype=np.float64)
    return cmc, float(np.mean(aps)), float(np.mean(inps)), len(aps)


def fast(problem: RankProblem, rule: str) -> RankMetrics:
    arrays = (problem.distmat, problem.q_pids, problem.g_pids, problem.q_camids, problem.g_camids)
    return rank_metrics(*(torch.from_numpy(x) for x in arrays), exclusion=rule)


def check(got: RankMetrics, cmc, m_ap, m_inp, v) -> None:
    np.testing.assert_allclose(got.cmc, np.asarray(cmc, dtype=np.float64), rtol=0, atol=1e-12)
    assert abs(got.mAP - float(m_ap)) < 1e-12 and abs(got.mINP - float(m_inp)) < 1e-12
    assert got.num_valid == v


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_vectorised(benchmark, name):
    problem, rule = make_problem(name)
    got = benchmark.pedantic(fast, args=(problem, rule), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(problem=name, torch_threads=torch.get_num_threads())
    check(got, *loop_baseline(problem, rule))


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_loop_baseline(benchmark, name):
    problem, rule = make_problem(name)
    out = benchmark.pedantic(loop_baseline, args=(problem, rule), rounds=1, iterations=1)
    benchmark.extra_info.update(problem=name)
    check(fast(problem, rule), *out)


def test_oracle_baseline_single_shot(benchmark):
    problem, rule = make_problem("sysu-single-3803x301")
    out = benchmark.pedantic(oracle, args=(problem, rule, "identity", 20), rounds=1, iterations=1)
    check(fast(problem, rule), *out)


def test_vectorised_from_features_multi_shot(benchmark):
    """Distances included: 3,803 x 3,010 from 1,536-d float32 features (6 x 256 stripes)."""
    n_query, n_gallery, _, rule = PROBLEMS["sysu-multi-3803x3010"]
    gen = torch.Generator().manual_seed(0)
    qf = torch.randn(n_query, 1536, generator=gen)
    gf = torch.randn(n_gallery, 1536, generator=gen)
    problem, _ = make_problem("sysu-multi-3803x3010")
    ids = [torch.from_numpy(x) for x in (problem.q_pids, problem.g_pids)]
    cams = [torch.from_numpy(x) for x in (problem.q_camids, problem.g_camids)]
    benchmark.pedantic(
        rank_metrics_from_features,
        args=(qf, gf, ids[0], ids[1], cams[0], cams[1]),
        kwargs={"exclusion": rule},
        rounds=3,
        iterations=1,
        warmup_rounds=1,
    )


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from reference.evaluation.metrics import rank_metrics_from_features

    def status_mb(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024

    n, d = int(sys.argv[1]), int(sys.argv[2])
    gen = torch.Generator().manual_seed(0)
    qf = torch.randn(n, d, generator=gen)
    gf = torch.randn(n, d, generator=gen)
    pids = torch.arange(n) % 500
    q_cams = 3 + 3 * (torch.arange(n) % 2)
    g_cams = torch.tensor([1, 2, 4, 5]).repeat(n // 4 + 1)[:n]
    rank_metrics_from_features(qf[:64], gf[:64], pids[:64], pids[:64], q_cams[:64], g_cams[:64])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size (VmHWM) to the current one
    before = status_mb("VmRSS")
    start = time.perf_counter()
    m = rank_metrics_from_features(qf, gf, pids, pids, q_cams, g_cams)
    seconds = time.perf_counter() - start
    print(json.dumps({"extra_mb": status_mb("VmHWM") - before, "seconds": seconds}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux)")
@pytest.mark.parametrize("n", [4000, 8000, 16000])
def test_peak_memory_from_features_is_bounded(benchmark, n):
    """Extra peak RSS of an n x n run (64-d features); a full float32 matrix is 4 n^2 bytes."""

    def run():
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, str(n), "64"],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout)

    info = benchmark.pedantic(run, rounds=1, iterations=1)
    full_matrix_mb = 4 * n * n / 2**20
    benchmark.extra_info.update(
        n=n,
        extra_peak_rss_mb=round(info["extra_mb"], 1),
        full_float32_matrix_mb=round(full_matrix_mb, 1),
        seconds_in_call=round(info["seconds"], 2),
    )
    print(
        f"\n{n} x {n}: extra peak RSS {info['extra_mb']:.1f} MB "
        f"(a full float32 matrix would be {full_matrix_mb:.0f} MB), {info['seconds']:.2f} s"
    )
