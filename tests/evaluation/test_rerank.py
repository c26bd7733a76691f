"""k-reciprocal re-ranking against a float64 loop oracle written from spec/evaluation/rerank.md.

The oracle works on plain Python lists and sets, one item at a time, with the definitions of the
spec (no vectorisation, no sparse tricks, max computed directly), so a disagreement is the fast
code's error. The fast code runs on the ``device`` fixture.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.distance import pairwise_distance
from reference.evaluation.metrics import rank_metrics
from reference.evaluation.rerank import RerankSettings, k_reciprocal_distance, pair_groups

# ---------------------------------------------------------------------------------------------
# the oracle
# ---------------------------------------------------------------------------------------------


def oracle(q: np.ndarray, g: np.ndarray, k1: int, k2: int, lam: float, metric="euclidean"):
    items = np.concatenate([q, g]).astype(np.float64)
    n, nq = len(items), len(q)

    def d(i, j):
        a, b = items[i], items[j]
        if metric == "euclidean":
            return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))
        na = math.sqrt(sum(x * x for x in a))
        nb = math.sqrt(sum(x * x for x in b))
        return 1.0 - sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)

    raw = [[d(i, j) ** 2 for j in range(n)] for i in range(n)]
    o = []
    for i in range(n):
        top = max(raw[i])
        o.append([raw[i][j] / top if top > 0 else 0.0 for j in range(n)])
    ranking = [sorted(range(n), key=lambda j, i=i: (o[i][j], j)) for i in range(n)]

    def nn(i, k):
        return ranking[i][: min(k + 1, n)]

    def r(i, k):
        return {j for j in nn(i, k) if i in nn(j, k)}

    h = round(k1 / 2)
    v = []
    for i in range(n):
        base = r(i, k1)
        star = set(base)
        for c in base:
            rc = r(c, h)
            if 3 * len(base & rc) > 2 * len(rc):
                star |= rc
        weights = {j: math.exp(-o[i][j]) for j in star}
        total = sum(weights.values())
        v.append([weights.get(j, 0.0) / total if total > 0 else 0.0 for j in range(n)])
    w = []
    for i in range(n):
        first = ranking[i][: min(k2, n)]
        w.append([sum(v[j][t] for j in first) / len(first) for t in range(n)])
    out = np.zeros((nq, n - nq))
    for i in range(nq):
        for j in range(nq, n):
            lo = sum(min(w[i][t], w[j][t]) for t in range(n))
            hi = sum(max(w[i][t], w[j][t]) for t in range(n))
            jac = 1.0 - lo / hi if hi > 0 else 1.0
            out[i, j - nq] = (1 - lam) * jac + lam * o[i][j]
    return out


def features(seed: int, n_q: int, n_g: int, dim: int, ids: int):
    """Clustered features: a few identities, so reciprocal neighbours exist."""
    gen = np.random.default_rng(seed)
    centers = gen.normal(size=(ids, dim))
    q = centers[gen.integers(0, ids, n_q)] + 0.6 * gen.normal(size=(n_q, dim))
    g = centers[gen.integers(0, ids, n_g)] + 0.6 * gen.normal(size=(n_g, dim))
    return q, g


# ---------------------------------------------------------------------------------------------
# fast code == oracle
# ---------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_q=st.integers(1, 9),
    n_g=st.integers(1, 14),
    dim=st.integers(1, 5),
    ids=st.integers(1, 5),
    k1=st.integers(1, 8),
    k2=st.integers(1, 5),
    lam=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    metric=st.sampled_from(["euclidean", "cosine"]),
)
def test_matches_the_oracle(device, seed, n_q, n_g, dim, ids, k1, k2, lam, metric):
    q, g = features(seed, n_q, n_g, dim, ids)
    expected = oracle(q, g, k1, k2, lam, metric)
    got = k_reciprocal_distance(
        torch.tensor(q, device=device),
        torch.tensor(g, device=device),
        metric,
        k1=k1,
        k2=k2,
        lambda_=lam,
    )
    assert got.dtype == torch.float64 and got.shape == (n_q, n_g)
    np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=0, atol=1e-12)


def test_matches_the_oracle_at_the_published_defaults(device):
    q, g = features(3, 12, 40, 6, 6)
    expected = oracle(q, g, 20, 6, 0.3)
    got = k_reciprocal_distance(torch.tensor(q, device=device), torch.tensor(g, device=device))
    np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("chunk", "budget"), [(50, 7), (100, 60), (180, 1), (400, 10**6)])
def test_small_chunks_and_pair_budget_change_nothing(device, monkeypatch, chunk, budget):
    # N = 45 items, k1 = 6 (7 neighbours, M = 35), k2 = 3: chunks of 1 to 8 rows in the
    # passes (the last one short), 1 to 3 in the expansion, pair groups of one row to all
    import reference.evaluation.rerank as rerank

    q, g = features(5, 15, 30, 4, 5)
    args = (torch.tensor(q, device=device), torch.tensor(g, device=device))
    whole = k_reciprocal_distance(*args, k1=6, k2=3)
    monkeypatch.setattr(rerank, "CHUNK_ELEMENTS", chunk)
    monkeypatch.setattr(rerank, "PAIR_BUDGET", budget)
    chunked = k_reciprocal_distance(*args, k1=6, k2=3)
    np.testing.assert_allclose(chunked.cpu().numpy(), whole.cpu().numpy(), rtol=0, atol=1e-14)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_q=st.integers(1, 6),
    n_g=st.integers(1, 12),
    k1=st.integers(1, 6),
    k2=st.integers(1, 6),
    lam=st.sampled_from([0.0, 0.3]),
)
def test_duplicates_and_ties_match_the_oracle(device, seed, n_q, n_g, k1, k2, lam):
    # integer features on a tiny grid: many exact duplicates (distance 0, rows of o with equal
    # values, items whose R(i, k1) is empty because k1 + 1 duplicates precede them) and many
    # equal distances; small integers keep every distance exact, so ties are the same as the
    # oracle's and the order by (o, j) is fully determined
    gen = np.random.default_rng(seed)
    q = gen.integers(0, 3, size=(n_q, 2)).astype(np.float64)
    g = gen.integers(0, 3, size=(n_g, 2)).astype(np.float64)
    expected = oracle(q, g, k1, k2, lam)
    got = k_reciprocal_distance(
        torch.tensor(q, device=device), torch.tensor(g, device=device), k1=k1, k2=k2, lambda_=lam
    )
    np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=0, atol=1e-12)


def test_many_ties_at_the_published_defaults(device):
    # 120 items on a 3 x 3 grid: rows of o with about 13 items at each distance, so the order
    # of equal distances (by item index, a stable sort) decides the neighbour lists
    gen = np.random.default_rng(4)
    q = gen.integers(0, 3, size=(5, 2)).astype(np.float64)
    g = gen.integers(0, 3, size=(115, 2)).astype(np.float64)
    got = k_reciprocal_distance(torch.tensor(q, device=device), torch.tensor(g, device=device))
    np.testing.assert_allclose(got.cpu().numpy(), oracle(q, g, 20, 6, 0.3), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("k1", "k2"), [(1, 4), (2, 5), (1, 6)])
def test_items_with_an_empty_reciprocal_set(device, k1, k2):
    # seven copies of one point: the copies after the first k1 + 1 have no reciprocal
    # neighbour (R(i, k1) and V[i] empty) yet sit among the first k2 neighbours of the others,
    # so their zero rows of V enter W; the other points sit at several distances
    gen = np.random.default_rng(k1 * 10 + k2)
    copies = np.zeros((7, 2))
    others = gen.integers(1, 4, size=(9, 2)).astype(np.float64)
    q = np.concatenate([copies[:2], others[:2]])
    g = np.concatenate([copies[2:], others[2:]])
    got = k_reciprocal_distance(
        torch.tensor(q, device=device), torch.tensor(g, device=device), k1=k1, k2=k2
    )
    np.testing.assert_allclose(got.cpu().numpy(), oracle(q, g, k1, k2, 0.3), rtol=0, atol=1e-12)


def test_pair_groups_by_hand():
    assert pair_groups([3, 3, 3], 6) == [0, 2, 3]
    assert pair_groups([3, 3, 3], 5) == [0, 1, 2, 3]
    assert pair_groups([3, 3, 3], 9) == [0, 3]
    assert pair_groups([7, 1], 5) == [0, 1, 2]  # a row above the budget is a group alone
    assert pair_groups([1, 7], 5) == [0, 1, 2]
    assert pair_groups([0, 7, 0], 5) == [0, 2, 3]  # rows without pairs join the open group
    assert pair_groups([0, 0], 5) == [0, 2]
    assert pair_groups([], 5) == [0, 0]


@settings(max_examples=100, deadline=None)
@given(per_row=st.lists(st.integers(0, 12), max_size=30), budget=st.integers(1, 20))
def test_pair_groups_cover_rows_within_the_budget(per_row, budget):
    bounds = pair_groups(per_row, budget)
    assert bounds[0] == 0 and bounds[-1] == len(per_row)
    assert per_row == [] or all(a < b for a, b in itertools.pairwise(bounds))
    for a, b in itertools.pairwise(bounds):
        pairs = per_row[a:b]
        # within the budget, or one row with pairs (a row is never split)
        assert sum(pairs) <= budget or sum(p > 0 for p in pairs) == 1
        if b < len(per_row):  # greedy: the next group's first row did not fit
            assert sum(pairs) > 0 and sum(pairs) + per_row[b] > budget


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n_q=st.integers(1, 12), n_g=st.integers(2, 25))
def test_lambda_one_is_the_original_distance(device, seed, n_q, n_g):
    q, g = features(seed, n_q, n_g, 4, 4)
    qt, gt = torch.tensor(q, device=device), torch.tensor(g, device=device)
    got = k_reciprocal_distance(qt, gt, k1=5, k2=3, lambda_=1.0)
    d = pairwise_distance(torch.cat([qt, gt]), torch.cat([qt, gt])).square()
    top = d.max(dim=1, keepdim=True).values
    expected = (d / top)[:n_q, n_q:]
    # the Jaccard term has weight 0; o itself may differ in the last bit (a matrix product over
    # a chunk of rows rounds like the product over all rows only up to the kernel's choice)
    np.testing.assert_allclose(got.cpu().numpy(), expected.cpu().numpy(), rtol=0, atol=1e-14)
    q_pids, g_pids = np.arange(n_q) % 3, np.arange(n_g) % 3
    cams = (np.zeros(n_q, dtype=int), np.ones(n_g, dtype=int))
    a = rank_metrics(got, q_pids, g_pids, *cams, exclusion="none")
    b = rank_metrics(pairwise_distance(qt, gt), q_pids, g_pids, *cams, exclusion="none")
    assert a.cmc.tolist() == b.cmc.tolist() and a.mAP == b.mAP


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n_q=st.integers(1, 10), n_g=st.integers(2, 30))
def test_invariant_to_gallery_order(device, seed, n_q, n_g):
    # generic real features have no ties, so a permuted gallery permutes the columns
    q, g = features(seed, n_q, n_g, 5, 4)
    perm = np.random.default_rng(seed).permutation(n_g)
    qt = torch.tensor(q, device=device)
    a = k_reciprocal_distance(qt, torch.tensor(g, device=device), k1=6, k2=3)
    b = k_reciprocal_distance(qt, torch.tensor(g[perm], device=device), k1=6, k2=3)
    np.testing.assert_allclose(b.cpu().numpy(), a.cpu().numpy()[:, perm], rtol=0, atol=1e-12)


def test_identical_items_do_not_break_it(device):
    # every item equal: all distances 0, every row's maximum 0, ties everywhere
    x = torch.ones(6, 3, dtype=torch.float64, device=device)
    got = k_reciprocal_distance(x[:2], x[2:], k1=2, k2=2)
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(
        got.cpu().numpy(), oracle(x[:2].cpu().numpy(), x[2:].cpu().numpy(), 2, 2, 0.3), atol=1e-12
    )


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(method="knn"), "rerank: unknown method 'knn'; expected one of 'k-reciprocal'"),
        (dict(k1=0), "k1: expected an integer >= 1, got 0"),
        (dict(k2=2.5), "k2: expected an integer >= 1, got 2.5"),
        (dict(lambda_=1.5), "lambda: expected a number in [0, 1], got 1.5"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(VireidError) as info:
        RerankSettings(**kwargs)
    assert str(info.value) == message


def test_bad_features_are_named(device):
    q = torch.zeros(2, 3, device=device)
    with pytest.raises(VireidError, match=r"^gallery_features: expected 3 columns"):
        k_reciprocal_distance(q, torch.zeros(2, 4, device=device))
    with pytest.raises(VireidError, match=r"^metric: unknown metric 'l1'"):
        k_reciprocal_distance(q, q, "l1")


def test_settings_are_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        RerankSettings().k1 = 5  # type: ignore[misc]


def test_settings_record():
    s = RerankSettings()
    assert s.to_dict() == {"method": "k-reciprocal", "k1": 20, "k2": 6, "lambda": 0.3}
    assert s.describe() == "k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)"
