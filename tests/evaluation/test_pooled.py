"""Galleries drawn from one pool (``spec/evaluation/pooled.md``): the pooled scorer and
``rank_metrics_pooled`` against the per-gallery kernel and ``rank_metrics``, to the last bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.metrics import rank_metrics
from reference.evaluation.pooled import (
    PooledScorer,
    rank_metrics_pooled,
)
from reference.evaluation.ranking import QueryScorer
from tests.evaluation.test_ranking import KINDS, RULES, problem
from tests.plugin import torch_threads


def pool_problem(seed: int, n_query: int, n_pool: int, n_trials: int, levels: int, neg: bool):
    dist, qp, gp, qc, gc = problem(seed, n_query, n_pool, levels, neg)
    gen = np.random.default_rng(seed + 1)
    trials = [
        torch.from_numpy(gen.permutation(n_pool)[: int(gen.integers(1, n_pool + 1))])
        for _ in range(n_trials)
    ]
    return dist, qp, gp, qc, gc, trials


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 2),
    n_query=st.integers(1, 12),
    n_pool=st.integers(1, 40),
    n_trials=st.integers(1, 12),
    levels=st.sampled_from([0, 1, 2, 3, 6, 20]),
    negative=st.booleans(),
    rule=st.sampled_from(RULES),
    kind=st.sampled_from(KINDS),
    head=st.sampled_from([1, 3, 256]),
    run=st.sampled_from([1, 2, 8]),
    key_bits=st.sampled_from([1, 3, 63]),
    near=st.sampled_from([1, 16]),
)
def test_pooled_scorer_equals_per_gallery_scorer(
    device, seed, n_query, n_pool, n_trials, levels, negative, rule, kind, head, run, key_bits, near
):
    # galleries drawn from one pool (random subsets in random order, up to 12 of them: fields
    # of several words); the head size decides which rows take the row-by-row identity count,
    # the run length which tied positives are counted on their row's keys, the bucket bits how
    # many items share a bucket, and near which rows read a short head
    dist, qp, gp, qc, gc, trials = (
        x for x in pool_problem(seed, n_query, n_pool, n_trials, levels, negative)
    )
    dist, qp, gp, qc, gc = (t.to(device) for t in (dist, qp, gp, qc, gc))
    trials = [c.to(device) for c in trials]
    pooled = PooledScorer(gp, gc, trials, rule, kind, key_bits=key_bits)
    pooled.HEAD, pooled.RUN, pooled.NEAR = head, run, near
    got = pooled.chunk(dist, qp, qc)
    assert len(got) == len(trials)
    for cols, values in zip(trials, got, strict=True):
        expected = QueryScorer(gp[cols], gc[cols], rule, kind).fast_chunk(dist[:, cols], qp, qc)
        valid = expected[0]
        assert torch.equal(values[0], valid)
        for a, b in zip(values[1:4], expected[1:4], strict=True):
            assert torch.equal(a[valid], b[valid])


def test_pooled_scorer_on_real_sized_float32_rows(device):
    # d = 2048 float32 distances (ties present), two draws of 1,500 from a pool of 3,000, and
    # a head of 8 so that many rows take the row-by-row identity count (with runs of one slot,
    # every tied positive is counted on its row's keys)
    gen = torch.Generator().manual_seed(1)
    q, g = torch.randn(64, 2048, generator=gen), torch.randn(3000, 2048, generator=gen)
    dist = torch.cdist(q, g).to(device)
    gp = (torch.arange(3000) % 96).to(device)
    qp, qc = (torch.arange(64) % 96).to(device), torch.tensor([3, 6]).repeat(32).to(device)
    gc = torch.tensor([1, 2, 4, 5]).repeat(750).to(device)
    trials = [torch.randperm(3000, generator=gen)[:1500].to(device) for _ in range(4)]
    for kind, head, run in (("identity", 8, 1), ("identity", 256, 8), ("standard", 256, 2)):
        pooled = PooledScorer(gp, gc, trials, "sysu", kind)
        pooled.HEAD, pooled.RUN = head, run
        for cols, values in zip(trials, pooled.chunk(dist, qp, qc), strict=True):
            scorer = QueryScorer(gp[cols], gc[cols], "sysu", kind)
            expected = scorer.fast_chunk(dist[:, cols], qp, qc)
            valid = expected[0]
            assert torch.equal(values[0], valid) and valid.sum() > 32
            for a, b in zip(values[1:4], expected[1:4], strict=True):
                assert torch.equal(a[valid], b[valid])


def test_pooled_scorer_applies_only_where_it_pays_and_without_repeats():
    two = [torch.arange(10), torch.arange(10)]
    assert PooledScorer.applies(10, two) is True
    assert PooledScorer.applies(11, two) is False  # less than twice the pool
    assert PooledScorer.applies(10, [torch.tensor([0, 0, 1, 2, 3]), *two]) is False


def test_pooled_scorer_with_fields_in_two_words(device):
    # 14 galleries of the whole pool of 24 (counts up to 24: fields of 5 bits, 12 to a word,
    # so galleries 12 and 13 sit in a second word) and positives ranked deep (counts of 16 and
    # more use a field's top bit)
    gen = torch.Generator().manual_seed(3)
    # query i's one positive is pool item i, at the distance of the (5 + i)-th nearest item
    # of its row (a tie, resolved by gallery index)
    dist = torch.rand(20, 24, generator=gen)
    rows = torch.arange(20)
    dist[rows, rows] = dist.sort(dim=1).values[rows, 4 + rows]
    dist = dist.to(device)
    qp, gp = torch.arange(20, device=device), torch.arange(24, device=device)
    qc, gc = torch.zeros(20, dtype=torch.int64, device=device), torch.zeros_like(gp)
    trials = [torch.randperm(24, generator=gen).to(device) for _ in range(14)]
    for kind in KINDS:
        pooled = PooledScorer(gp, gc, trials, "none", kind)
        assert (pooled.field, pooled.per_word, pooled.members.shape[0]) == (5, 12, 2)
        for cols, values in zip(trials, pooled.chunk(dist, qp, qc), strict=True):
            expected = QueryScorer(gp[cols], gc[cols], "none", kind).fast_chunk(
                dist[:, cols], qp, qc
            )
            valid = expected[0]
            assert torch.equal(values[0], valid)
            assert int(expected[1][valid].max()) >= 17
            for a, b in zip(values[1:4], expected[1:4], strict=True):
                assert torch.equal(a[valid], b[valid])


def assert_named_as_the_loop_finds(exc: VireidError, per_gallery) -> None:
    """``exc``, raised by ``rank_metrics_pooled``, is the first gallery without a valid query,
    named as scoring the galleries one by one (``per_gallery(t)``) finds it."""
    t = int(str(exc).split("]")[0].removeprefix("galleries["))
    with pytest.raises(VireidError, match="no valid query") as info:
        per_gallery(t)
    assert str(exc) == f"galleries[{t}]: {info.value}"
    for earlier in range(t):
        per_gallery(earlier)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 2),
    n_pool=st.integers(1, 30),
    n_trials=st.integers(1, 8),
    levels=st.sampled_from([0, 2, 6]),
    rule=st.sampled_from(RULES),
    kind=st.sampled_from(KINDS),
    float64=st.booleans(),
)
def test_rank_metrics_pooled_equals_rank_metrics_per_gallery(
    device, seed, n_pool, n_trials, levels, rule, kind, float64
):
    # the same figures to the last bit, through the pooled scorer or gallery by gallery
    # (float64, or galleries that hold less than twice the pool)
    dist, qp, gp, qc, gc, trials = pool_problem(seed, 10, n_pool, n_trials, levels, False)
    qp = gp[torch.from_numpy(np.random.default_rng(seed).integers(0, n_pool, 10))]
    dist = (dist.double() if float64 else dist).to(device)

    def per_gallery(t: int):
        cols = trials[t]
        return rank_metrics(
            dist[:, cols.to(device)], qp, gp[cols], qc, gc[cols], exclusion=rule, cmc_kind=kind
        )

    try:
        got = rank_metrics_pooled(
            dist, qp, gp, qc, gc, [c.numpy() for c in trials], exclusion=rule, cmc_kind=kind
        )
    except VireidError as exc:
        assert_named_as_the_loop_finds(exc, per_gallery)
        return
    for t, metrics in enumerate(got):
        expected = per_gallery(t)
        assert np.array_equal(metrics.cmc, expected.cmc)
        assert (metrics.mAP, metrics.mINP, metrics.num_valid) == (
            expected.mAP,
            expected.mINP,
            expected.num_valid,
        )
        for name in ("ap", "inp", "first_hit", "valid"):
            a, b = getattr(metrics.queries, name), getattr(expected.queries, name)
            assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("pooled", [False, True])
@pytest.mark.parametrize("threads", [2, 3])
def test_pieces_side_by_side_give_the_figures_of_the_loop(device, threads, pooled):
    # on the CPU the galleries (gallery by gallery) or the pooled scorer's chunks of queries
    # (here 43 chunks of 7) are scored on torch's threads (threads.md); CI runs the suite with
    # one torch thread per worker, so the count is set here
    gen = torch.Generator().manual_seed(5)
    q, g = torch.randn(300, 64, generator=gen), torch.randn(400, 64, generator=gen)
    dist = torch.cdist(q, g).to(device)
    gp, qp = torch.arange(400) % 37, torch.arange(300) % 37
    gc, qc = torch.tensor([1, 2, 4, 5]).repeat(100), torch.tensor([3, 6]).repeat(150)
    galleries = [
        torch.randperm(400, generator=gen)[:150].numpy() for _ in range(6 if pooled else 5)
    ]
    takes = [torch.from_numpy(c) for c in galleries]
    assert PooledScorer.applies(400, takes) == pooled
    with torch_threads(threads):
        got = rank_metrics_pooled(dist, qp, gp, qc, gc, galleries, chunk_size=7 if pooled else None)
    for cols, metrics in zip(galleries, got, strict=True):
        c = torch.from_numpy(cols)
        expected = rank_metrics(dist[:, c.to(device)], qp, gp[c], qc, gc[c])
        assert np.array_equal(metrics.cmc, expected.cmc)
        assert (metrics.mAP, metrics.mINP) == (expected.mAP, expected.mINP)
        for name in ("ap", "inp", "first_hit", "valid"):
            a, b = getattr(metrics.queries, name), getattr(expected.queries, name)
            assert np.array_equal(a, b, equal_nan=True)


def test_rank_metrics_pooled_bad_galleries():
    dist = torch.rand(3, 6)
    ids = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2, 0, 1, 2])
    cams = torch.tensor([3, 3, 6]), torch.tensor([1, 2, 4, 5, 1, 2])
    for bad in ([np.array([0, 6])], [np.array([], dtype=np.int64)], [np.array([[0, 1]])]):
        with pytest.raises(VireidError, match=r"^galleries\[0\]: expected a non-empty 1-D array"):
            rank_metrics_pooled(dist, ids[0], ids[1], cams[0], cams[1], bad)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_pooled_path_in_chunks_and_float64_near_ties(device, chunk_size):
    # ten galleries of the whole pool (the pooled path applies to float32), 10 queries in
    # chunks of 3; float64 distances one ulp apart must keep their order (float32 would merge)
    gen = np.random.default_rng(7)
    n_query, n_pool = 10, 12
    base = gen.integers(1, 4, (n_query, n_pool)).astype(np.float64)
    ulp = np.where(gen.random((n_query, n_pool)) < 0.5, np.nextafter(base, 5.0), base)
    qp, gp = gen.integers(0, 4, n_query), np.arange(n_pool) % 4
    qc, gc = np.full(n_query, 3), np.tile([1, 2, 4, 5], 3)
    galleries = [gen.permutation(n_pool) for _ in range(10)]
    assert PooledScorer.applies(n_pool, [torch.from_numpy(g) for g in galleries])
    for dist in (ulp.astype(np.float32), ulp):
        d = torch.from_numpy(dist).to(device)
        got = rank_metrics_pooled(d, qp, gp, qc, gc, galleries, chunk_size=chunk_size)
        for metrics, cols in zip(got, galleries, strict=True):
            want = rank_metrics(d[:, torch.from_numpy(cols).to(device)], qp, gp[cols], qc, gc[cols])
            assert np.array_equal(metrics.cmc, want.cmc) and metrics.mAP == want.mAP
            assert metrics.num_query == n_query


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 2),
    n_query=st.integers(1, 14),
    n_pool=st.integers(2, 30),
    n_trials=st.integers(2, 8),
    levels=st.sampled_from([0, 2, 6]),
    kind=st.sampled_from(KINDS),
    chunk_size=st.sampled_from([None, 1, 3]),
)
def test_camera_3_queries_sort_only_the_columns_before_camera_2(
    device, seed, n_query, n_pool, n_trials, levels, kind, chunk_size
):
    # SYSU-MM01's rule with camera 2 listed last in the pool (as sysu.py lists it): chunks of
    # camera-3 queries sort only the columns before, the queries of both kinds chunked apart
    # and put back in their order; the figures of rank_metrics gallery by gallery
    dist, qp, gp, qc, gc, _ = pool_problem(seed, n_query, n_pool, n_trials, levels, False)
    gen = np.random.default_rng(seed + 2)
    gc = torch.from_numpy(gen.choice([1, 2, 4, 5], n_pool))
    order = torch.argsort((gc == 2).to(torch.int64), stable=True)  # camera 2 last
    gc, gp, dist = gc[order], gp[order], dist[:, order]
    qc = torch.from_numpy(gen.choice([3, 6], n_query))
    qp = gp[torch.from_numpy(gen.integers(0, n_pool, n_query))]
    trials = [
        np.arange(n_pool)[::-1].copy(),
        *(gen.permutation(n_pool) for _ in range(n_trials - 1)),
    ]
    dist = dist.to(device)
    scorer = PooledScorer(
        gp.to(device), gc.to(device), [torch.from_numpy(t).to(device) for t in trials], "sysu", kind
    )
    assert (scorer.short is None) == bool((gc != 2).all() or (gc == 2).all())

    def per_gallery(t: int):
        c = torch.from_numpy(trials[t])
        return rank_metrics(dist[:, c.to(device)], qp, gp[c], qc, gc[c], cmc_kind=kind)

    try:
        got = rank_metrics_pooled(
            dist, qp, gp, qc, gc, trials, cmc_kind=kind, chunk_size=chunk_size
        )
    except VireidError as exc:
        assert_named_as_the_loop_finds(exc, per_gallery)
        return
    for t, metrics in enumerate(got):
        expected = per_gallery(t)
        assert np.array_equal(metrics.cmc, expected.cmc)
        assert (metrics.mAP, metrics.mINP) == (expected.mAP, expected.mINP)
        for name in ("ap", "inp", "first_hit", "valid", "pids"):
            a, b = getattr(metrics.queries, name), getattr(expected.queries, name)
            assert np.array_equal(a, b, equal_nan=True)
