"""The float32 fast path of the per-query values against the reference kernel (exact equality).

``QueryScorer.fast_chunk`` claims to equal ``QueryScorer.reference_chunk`` to the last bit for
float32 distances. Ties decide where they could differ, so the rows here are drawn from a few
values (ties everywhere), from all distinct values, and mixed; every exclusion rule and CMC kind.
The reference kernel itself is checked against the loop oracle in ``test_metrics.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.metrics import rank_metrics, rank_metrics_pooled
from reference.evaluation.ranking import PooledScorer, QueryScorer, float32_keys, order_keys

RULES = ("sysu", "same-id-same-camera", "none")
KINDS = ("identity", "standard")


def problem(seed: int, n_query: int, n_gallery: int, levels: int, negative: bool):
    gen = np.random.default_rng(seed)
    if levels:
        dist = gen.integers(0, levels, (n_query, n_gallery)).astype(np.float32) / 4
    else:
        dist = gen.random((n_query, n_gallery), dtype=np.float32)
    if negative:
        dist -= 0.5
        dist[gen.random(dist.shape) < 0.05] = -0.0
    ids = int(gen.integers(1, 8))
    return (
        torch.from_numpy(dist),
        torch.from_numpy(gen.integers(0, ids + 1, n_query)),
        torch.from_numpy(gen.integers(0, ids, n_gallery)),
        torch.from_numpy(gen.choice([1, 2, 3, 4, 5, 6], n_query)),
        torch.from_numpy(gen.choice([1, 2, 3, 4, 5, 6], n_gallery)),
    )


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_query=st.integers(1, 12),
    n_gallery=st.integers(1, 40),
    levels=st.sampled_from([0, 1, 2, 3, 6, 20]),
    negative=st.booleans(),
    rule=st.sampled_from(RULES),
    kind=st.sampled_from(KINDS),
)
def test_fast_chunk_equals_reference_chunk(
    device, seed, n_query, n_gallery, levels, negative, rule, kind
):
    dist, qp, gp, qc, gc = (
        t.to(device) for t in problem(seed, n_query, n_gallery, levels, negative)
    )
    scorer = QueryScorer(gp, gc, rule, kind)
    fast = scorer.fast_chunk(dist, qp, qc)
    reference = scorer.reference_chunk(dist, qp, qc)
    valid = reference[0]
    assert torch.equal(fast[0], valid)
    for a, b in zip(fast[1:4], reference[1:4], strict=True):  # rank, AP, INP of valid queries
        assert torch.equal(a[valid], b[valid])


def test_fast_chunk_on_real_sized_float32_rows(device):
    # d = 2048 float32 distances tie often (about 800k distinct values per row's range)
    gen = torch.Generator().manual_seed(0)
    q, g = torch.randn(64, 2048, generator=gen), torch.randn(3000, 2048, generator=gen)
    dist = torch.cdist(q, g).to(device)
    gp = (torch.arange(3000) % 96).to(device)
    qp, qc = (torch.arange(64) % 96).to(device), torch.full((64,), 3).to(device)
    gc = torch.tensor([1, 2, 4, 5]).repeat(750).to(device)
    keys = float32_keys(dist)
    assert (torch.sort(keys, dim=1).values.diff(dim=1) == 0).any()  # ties are present
    for kind in KINDS:
        scorer = QueryScorer(gp, gc, "sysu", kind)
        fast, reference = scorer.fast_chunk(dist, qp, qc), scorer.reference_chunk(dist, qp, qc)
        valid = reference[0]
        assert torch.equal(fast[0], valid) and valid.sum() > 32
        for a, b in zip(fast[1:4], reference[1:4], strict=True):
            assert torch.equal(a[valid], b[valid])


def test_keys_order_like_the_floats():
    values = torch.tensor([[-2.0, -0.0, 0.0, 1e-30, 3.5, -1e-30]])
    keys = float32_keys(values)
    assert torch.equal(torch.argsort(keys, stable=True), torch.argsort(values, stable=True))
    assert keys[0, 1] == keys[0, 2]  # -0.0 and +0.0 are equal
    long = order_keys(values, torch.arange(6), 3)
    assert torch.equal(torch.argsort(long), torch.tensor([[0, 5, 1, 2, 3, 4]]))


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
)
def test_pooled_scorer_equals_per_gallery_scorer(
    device, seed, n_query, n_pool, n_trials, levels, negative, rule, kind, head
):
    # galleries drawn from one pool (random subsets in random order, up to 12 of them: fields
    # of several words); the head size decides which rows take the row-by-row identity count
    dist, qp, gp, qc, gc, trials = (
        x for x in pool_problem(seed, n_query, n_pool, n_trials, levels, negative)
    )
    dist, qp, gp, qc, gc = (t.to(device) for t in (dist, qp, gp, qc, gc))
    trials = [c.to(device) for c in trials]
    pooled = PooledScorer(gp, gc, trials, rule, kind)
    pooled.HEAD = head
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
    # a head of 8 so that many rows take the row-by-row identity count
    gen = torch.Generator().manual_seed(1)
    q, g = torch.randn(64, 2048, generator=gen), torch.randn(3000, 2048, generator=gen)
    dist = torch.cdist(q, g).to(device)
    gp = (torch.arange(3000) % 96).to(device)
    qp, qc = (torch.arange(64) % 96).to(device), torch.tensor([3, 6]).repeat(32).to(device)
    gc = torch.tensor([1, 2, 4, 5]).repeat(750).to(device)
    trials = [torch.randperm(3000, generator=gen)[:1500].to(device) for _ in range(4)]
    for kind, head in (("identity", 8), ("identity", 256), ("standard", 256)):
        pooled = PooledScorer(gp, gc, trials, "sysu", kind)
        pooled.HEAD = head
        for cols, values in zip(trials, pooled.chunk(dist, qp, qc), strict=True):
            scorer = QueryScorer(gp[cols], gc[cols], "sysu", kind)
            expected = scorer.fast_chunk(dist[:, cols], qp, qc)
            valid = expected[0]
            assert torch.equal(values[0], valid) and valid.sum() > 32
            for a, b in zip(values[1:4], expected[1:4], strict=True):
                assert torch.equal(a[valid], b[valid])


def test_pooled_scorer_applies_only_where_it_pays_and_without_repeats():
    two = [torch.arange(10), torch.arange(10)]
    assert PooledScorer.applies(10, two)
    assert not PooledScorer.applies(11, two)  # the galleries hold less than twice the pool
    assert not PooledScorer.applies(10, [torch.tensor([0, 0, 1, 2, 3]), *two])


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
    except VireidError as exc:  # a gallery without a valid query: named, as the loop finds
        t = int(str(exc).split("]")[0].removeprefix("galleries["))
        with pytest.raises(VireidError, match="no valid query") as info:
            per_gallery(t)
        assert str(exc) == f"galleries[{t}]: {info.value}"
        for earlier in range(t):
            per_gallery(earlier)
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
