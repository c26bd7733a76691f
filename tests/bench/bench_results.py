"""Bootstrap intervals: the vectorised replicates against a plain per-replicate loop.

Run: ``nox -s bench`` (or ``pytest tests/bench/bench_results.py -o python_files=bench_*.py
--benchmark-only``). Result sizes of the real protocols, 1,000 replicates each:

- SYSU-MM01, 10 trials sharing their 3,803 queries of 96 identities (one draw for all trials);
- RegDB, 10 trials of 2,060 queries of 206 identities, a different identity set per trial.

The baseline ``loop`` is the plain form of the definition: per replicate and trial, the drawn
identities' valid queries are gathered (each as often as drawn) and the figures are their means.
It gets the same draws, and its replicates are checked equal to the vectorised ones; it runs
100 replicates and its time is scaled to 1,000 (``loop_s``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from reference.evaluation.metrics import QueryValues
from reference.results.intervals import (
    FIGURES,
    bootstrap_replicates,
    draw_counts,
    per_query_values,
)
from tests.plugin import benchmark_seconds

RESAMPLES = 1000
LOOP_RESAMPLES = 100  # the loop takes ~30 ms a replicate; its time is scaled to RESAMPLES
SIZES = {"sysu-10x3803": (10, 3803, 96, True), "regdb-10x2060": (10, 2060, 206, False)}


def make_result(name: str) -> list[QueryValues]:
    trials, n_query, n_ids, shared = SIZES[name]
    rng = np.random.default_rng(0)
    base = rng.permutation(np.resize(np.arange(n_ids), n_query))
    out = []
    for t in range(trials):
        pids = base if shared else rng.permutation(np.resize(np.arange(n_ids), n_query)) + 1000 * t
        valid = rng.random(n_query) < 0.9
        ap = np.where(valid, rng.random(n_query), np.nan)
        out.append(
            QueryValues(
                ap=ap,
                inp=ap / 2,
                first_hit=np.where(valid, rng.integers(1, 40, n_query), 0),
                valid=valid,
                pids=pids.astype(np.int64),
            )
        )
    return out


def loop_replicates(per_trial: list[QueryValues], resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    groups: dict[bytes, list[int]] = {}
    for t, q in enumerate(per_trial):
        groups.setdefault(np.unique(q.pids).tobytes(), []).append(t)
    out = np.zeros((resamples, len(FIGURES)))
    for trials in groups.values():
        ids = np.unique(per_trial[trials[0]].pids)
        counts = draw_counts(rng, ids.size, resamples)
        for t in trials:
            q = per_trial[t]
            rows_of = [np.flatnonzero((q.pids == u) & q.valid) for u in ids]
            values = np.stack([per_query_values(q, f) for f in FIGURES], axis=1)
            for b in range(resamples):
                rows = np.concatenate(
                    [np.tile(rows_of[i], c) for i, c in enumerate(counts[b]) if c]
                )
                out[b] += values[rows].mean(axis=0)
    return out / len(per_trial)


@pytest.mark.parametrize("name", list(SIZES))
def test_bootstrap_vectorised(benchmark, name):
    per_trial = make_result(name)
    reps = benchmark.pedantic(
        bootstrap_replicates, args=(per_trial,), kwargs={"resamples": RESAMPLES}, rounds=5
    )
    start = time.perf_counter()
    loop = loop_replicates(per_trial, LOOP_RESAMPLES, 0)
    loop_s = (time.perf_counter() - start) * RESAMPLES / LOOP_RESAMPLES
    want = bootstrap_replicates(per_trial, resamples=LOOP_RESAMPLES)
    np.testing.assert_allclose(want, loop, rtol=1e-10)
    assert reps.shape == (RESAMPLES, len(FIGURES))
    best = benchmark_seconds(benchmark, "min")
    benchmark.extra_info.update(
        {"resamples": RESAMPLES, "loop_s": loop_s, "vectorised_s": best, "speedup": loop_s / best}
    )
    assert best < 1.0, f"{RESAMPLES} replicates of {name} took {best:.2f} s (target: under 1 s)"
