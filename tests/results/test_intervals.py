"""Bootstrap intervals: an oracle that resamples the queries literally, properties, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.metrics import QueryValues, rank_metrics
from reference.results.intervals import (
    FIGURES,
    bootstrap_intervals,
    bootstrap_replicates,
    per_query_values,
)


def make_queries(rng: np.random.Generator, pids: np.ndarray, p_valid: float = 0.8) -> QueryValues:
    n = pids.size
    valid = rng.random(n) < p_valid
    first = np.where(valid, rng.integers(1, 30, n), 0)
    ap = np.where(valid, rng.random(n), np.nan)
    inp = np.where(valid, rng.random(n) * np.nan_to_num(ap, nan=1.0), np.nan)
    return QueryValues(ap=ap, inp=inp, first_hit=first, valid=valid, pids=pids.astype(np.int64))


def oracle_replicates(per_trial, figures, resamples, seed):
    """Float64 loop from the spec: draw the identities (same generator calls), then copy every
    query of each drawn identity into a new query list, once per draw, and take plain means."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[int]] = {}
    for t, q in enumerate(per_trial):
        groups.setdefault(tuple(sorted(set(q.pids.tolist()))), []).append(t)
    per_trial_reps = [None] * len(per_trial)
    for ids, trials in groups.items():
        n = len(ids)
        draws = rng.integers(0, n, size=(resamples, n))  # positions in the sorted identities
        for t in trials:
            q = per_trial[t]
            reps = np.empty((resamples, len(figures)))
            for b in range(resamples):
                rows = []
                for k in draws[b]:
                    rows += [i for i in range(q.pids.size) if q.pids[i] == ids[k] and q.valid[i]]
                for j, f in enumerate(figures):
                    v = per_query_values(q, f)
                    reps[b, j] = sum(v[i] for i in rows) / len(rows) if rows else np.nan
            per_trial_reps[t] = reps
    return np.mean(per_trial_reps, axis=0)


@given(
    seed=st.integers(0, 2**32 - 1),
    n_ids=st.integers(1, 6),
    trials=st.integers(1, 3),
    shared=st.booleans(),
)
def test_replicates_equal_the_literal_resampling_oracle(seed, n_ids, trials, shared):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 50, n_ids * 3)
    per_trial = []
    for _ in range(trials):
        pids = base if shared else rng.integers(0, 50, rng.integers(1, 12))
        per_trial.append(make_queries(rng, pids, p_valid=0.9))
    per_trial = [q if q.valid.any() else make_queries(rng, q.pids, 1.0) for q in per_trial]
    got = bootstrap_replicates(per_trial, resamples=7, seed=seed % 1000)
    want = oracle_replicates(per_trial, FIGURES, 7, seed % 1000)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_figures_are_the_means_of_rank_metrics_and_the_interval_brackets_them():
    rng = np.random.default_rng(1)
    q_pids = rng.integers(0, 40, 400)
    g_pids = np.resize(np.arange(40), 120)
    dist = rng.random((400, 120)) + 0.6 * (q_pids[:, None] != g_pids[None])
    metrics = [
        rank_metrics(
            dist + 0.1 * rng.random(dist.shape),
            q_pids,
            g_pids,
            np.full(400, 6),
            np.full(120, 1),
            exclusion="none",
            cmc_kind="standard",
        )
        for _ in range(3)
    ]
    got = bootstrap_intervals([m.queries for m in metrics], resamples=300, seed=0)
    assert list(got) == list(FIGURES)
    for f in FIGURES:
        mean = np.mean([m.rank(int(f[1:])) if f[0] == "R" else getattr(m, f) for m in metrics])
        assert got[f].value == pytest.approx(mean, abs=1e-12)
        assert 0.0 <= got[f].low <= got[f].value <= got[f].high <= 1.0
        assert got[f].resamples == 300 and got[f].level == 0.95
        assert got[f].high - got[f].low > 0.0


def test_seeded_and_identical_values_give_a_zero_width_interval():
    rng = np.random.default_rng(2)
    per_trial = [make_queries(rng, rng.integers(0, 20, 100)) for _ in range(2)]
    a = bootstrap_intervals(per_trial, resamples=50, seed=3)
    assert a == bootstrap_intervals(per_trial, resamples=50, seed=3)
    assert a != bootstrap_intervals(per_trial, resamples=50, seed=4)
    q = per_trial[0]
    flat = QueryValues(
        ap=np.where(q.valid, 0.5, np.nan), inp=np.where(q.valid, 0.25, np.nan),
        first_hit=np.where(q.valid, 1, 0), valid=q.valid, pids=q.pids,
    )  # fmt: skip
    got = bootstrap_intervals([flat], resamples=50, seed=0)
    assert (got["mAP"].low, got["mAP"].high) == (0.5, 0.5)
    assert (got["R1"].low, got["R1"].high) == (1.0, 1.0)


def test_replicates_with_a_trial_without_valid_queries_are_left_out():
    # identity 1 has only invalid queries: a draw of identity 1 alone has no valid query
    q = QueryValues(
        ap=np.array([1.0, np.nan]), inp=np.array([1.0, np.nan]), first_hit=np.array([1, 0]),
        valid=np.array([True, False]), pids=np.array([0, 1]),
    )  # fmt: skip
    reps = bootstrap_replicates([q], resamples=400, seed=0)
    lost = np.isnan(reps[:, 0]).sum()
    assert 60 < lost < 140  # P(both draws are identity 1) = 1/4
    assert bootstrap_intervals([q], resamples=400, seed=0)["mAP"].resamples == 400 - lost


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_trial": []}, "trials: expected the per-query values of at least one trial"),
        ({"per_trial": [None]}, "trial 0: no per-query values (metrics.queries is None)"),
        ({"resamples": 0}, "resamples: expected a positive integer, got 0"),
        ({"level": 1.0}, "level: expected a float in (0, 1), got 1.0"),
        ({"figures": ("R1", "AP")}, "figures: unknown figure 'AP'; expected R<k>, mAP or mINP"),
    ],
)
def test_bad_input(kwargs, message):
    rng = np.random.default_rng(0)
    args = {"per_trial": [make_queries(rng, np.arange(10), 1.0)], **kwargs}
    with pytest.raises(VireidError) as info:
        bootstrap_intervals(**args)
    assert str(info.value).startswith(message)


def test_a_trial_without_valid_query_is_an_error():
    rng = np.random.default_rng(0)
    with pytest.raises(VireidError, match="trial 0: no valid query"):
        bootstrap_intervals([make_queries(rng, np.arange(5), 0.0)])
