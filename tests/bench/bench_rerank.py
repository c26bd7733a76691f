"""k-reciprocal re-ranking at the protocols' sizes: time and peak memory (issue 13).

Run: ``nox -s bench`` (or ``pytest tests/bench/bench_rerank.py -o python_files=bench_*.py
--benchmark-only``). One trial's re-ranking, float32 features, d = 2048, 96 identities (SYSU-MM01)
or 206 (RegDB): SYSU-MM01 single-shot 3,803 x 301, multi-shot 3,803 x 3,010, RegDB 2,060 x
2,060. Each size runs once in a fresh process (so the peak belongs to the run: Linux ``VmHWM``
reset after the features are made); ``extra_info`` holds the time, the resident set before the
run and the run's peak. Baseline for the memory: the three N x N float32 matrices a dense
implementation would hold at least (distance, encoding, Jaccard), ``dense_floor_mb``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SIZES = {"sysu-single": (3803, 301, 96), "sysu-multi": (3803, 3010, 96), "regdb": (2060, 2060, 206)}
DIM = 2048


def run_once(n_query: int, n_gallery: int, ids: int) -> dict[str, float]:
    code = textwrap.dedent(
        f"""
        import json, time
        import numpy as np, torch
        from reference.evaluation.rerank import k_reciprocal_distance

        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024

        gen = np.random.default_rng(0)
        centres = gen.standard_normal(({ids}, {DIM}), dtype=np.float32)
        def noisy(n):
            return centres[np.arange(n) % {ids}] + gen.standard_normal((n, {DIM}), dtype=np.float32)

        q, g = noisy({n_query}), noisy({n_gallery})
        q, g = torch.from_numpy(q), torch.from_numpy(g)
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        start = time.perf_counter()
        out = k_reciprocal_distance(q, g)
        seconds = time.perf_counter() - start
        peak = status("VmHWM")
        n = {n_query} + {n_gallery}
        print(json.dumps({{"seconds": round(seconds, 2), "rss_before_run_mb": round(before, 1),
                          "peak_rss_during_run_mb": round(peak, 1),
                          "run_adds_mb": round(peak - before, 1),
                          "dense_floor_mb": round(3 * n * n * 4 / 2**20, 1)}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("size", list(SIZES))
def test_rerank_time_and_peak(benchmark, size):
    benchmark.group = "rerank-one-trial"
    benchmark.name = size
    info = benchmark.pedantic(run_once, args=SIZES[size], rounds=1, iterations=1)
    benchmark.extra_info.update({"shape": list(SIZES[size][:2]), **info})
