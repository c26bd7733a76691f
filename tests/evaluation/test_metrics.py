"""Rank metrics against a pure-Python oracle written from ``spec/evaluation/metrics.md``.

The oracle loops over queries and ranks with exact fractions (no torch, no vectorisation), so a
disagreement is the fast code's error, not rounding. The fast code runs on the ``device`` fixture.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.distance import pairwise_distance
from reference.evaluation.metrics import (
    RankMetrics,
    chunk_rows,
    exclusion_mask,
    rank_metrics,
    rank_metrics_from_features,
)
from tests.strategies import RankProblem, rank_problems

RULES = ("sysu", "same-id-same-camera", "none")
KINDS = ("identity", "standard")

# ---------------------------------------------------------------------------------------------
# the oracle
# ---------------------------------------------------------------------------------------------


def oracle_skips(q_pid: int, q_cam: int, g_pid: int, g_cam: int, rule: str) -> bool:
    """Whether a query skips a gallery item (spec/evaluation/exclusion.md)."""
    if rule == "sysu":
        return q_cam == 3 and g_cam == 2
    if rule == "same-id-same-camera":
        return q_pid == g_pid and q_cam == g_cam
    assert rule == "none"
    return False


def oracle_query(distances, q_pid, q_cam, g_pids, g_cams, rule, kind):
    """(rank, AP, INP) of one query as exact fractions, or None when it has no positive."""
    order = sorted(range(len(distances)), key=lambda j: (float(distances[j]), j))
    ranked = [j for j in order if not oracle_skips(q_pid, q_cam, g_pids[j], g_cams[j], rule)]
    positive_ranks = [k for k, j in enumerate(ranked, start=1) if g_pids[j] == q_pid]
    if not positive_ranks:
        return None
    n = len(positive_ranks)
    ap = sum(Fraction(m, k) for m, k in enumerate(positive_ranks, start=1)) / n
    inp = Fraction(n, positive_ranks[-1])
    if kind == "standard":
        rank = positive_ranks[0]
    else:
        seen: list[int] = []
        for j in ranked:
            if g_pids[j] not in seen:
                seen.append(g_pids[j])
        rank = seen.index(q_pid) + 1
    return rank, ap, inp


def oracle(problem: RankProblem, rule: str, kind: str, max_rank: int):
    """(cmc list, mAP, mINP, num_valid) as exact fractions; num_valid 0 means 'no valid query'."""
    g_pids = [int(p) for p in problem.g_pids]
    g_cams = [int(c) for c in problem.g_camids]
    results = []
    for i in range(len(problem.q_pids)):
        out = oracle_query(
            problem.distmat[i],
            int(problem.q_pids[i]),
            int(problem.q_camids[i]),
            g_pids,
            g_cams,
            rule,
            kind,
        )
        if out is not None:
            results.append(out)
    v = len(results)
    if v == 0:
        return None, None, None, 0
    cmc = [
        Fraction(sum(1 for rank, _, _ in results if rank <= r), v) for r in range(1, max_rank + 1)
    ]
    m_ap = sum(ap for _, ap, _ in results) / v
    m_inp = sum(inp for _, _, inp in results) / v
    return cmc, m_ap, m_inp, v


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def on(device, problem: RankProblem, distmat=None) -> dict:
    """The problem's arrays as tensors on ``device``."""
    return dict(
        distmat=torch.as_tensor(problem.distmat if distmat is None else distmat, device=device),
        q_pids=torch.as_tensor(problem.q_pids, device=device),
        g_pids=torch.as_tensor(problem.g_pids, device=device),
        q_camids=torch.as_tensor(problem.q_camids, device=device),
        g_camids=torch.as_tensor(problem.g_camids, device=device),
    )


def call(device, problem: RankProblem, distmat=None, **settings) -> RankMetrics:
    args = on(device, problem, distmat)
    return rank_metrics(
        args["distmat"],
        args["q_pids"],
        args["g_pids"],
        args["q_camids"],
        args["g_camids"],
        **settings,
    )


def has_valid_query(problem: RankProblem, rule: str) -> bool:
    return oracle(problem, rule, "standard", 1)[3] > 0


def assert_same(a: RankMetrics, b: RankMetrics, *, exact: bool = False) -> None:
    assert (a.num_valid, a.num_query, a.max_rank) == (b.num_valid, b.num_query, b.max_rank)
    assert (a.exclusion, a.cmc_kind) == (b.exclusion, b.cmc_kind)
    if exact:
        np.testing.assert_array_equal(a.cmc, b.cmc)
        assert (a.mAP, a.mINP) == (b.mAP, b.mINP)
    else:
        np.testing.assert_allclose(a.cmc, b.cmc, rtol=0, atol=1e-12)
        assert a.mAP == pytest.approx(b.mAP, rel=0, abs=1e-12)
        assert a.mINP == pytest.approx(b.mINP, rel=0, abs=1e-12)


# float64 sums of at most a few hundred terms: 1e-12 is far above rounding, far below any
# real difference (the smallest non-zero difference of two APs here is ~1/30**2)
TOL = 1e-12


# ---------------------------------------------------------------------------------------------
# the oracle itself, on hand-computed cases
# ---------------------------------------------------------------------------------------------


def test_oracle_on_a_hand_computed_case():
    problem = RankProblem(
        distmat=np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]),
        q_pids=np.array([1, 2]),
        g_pids=np.array([1, 2, 1, 3]),
        q_camids=np.array([3, 6]),
        g_camids=np.array([1, 2, 4, 5]),
    )
    # query 0 (camera 3) skips item 1 (camera 2): list [0, 2, 3], positives at ranks 1, 2
    # query 1: list [3, 2, 1, 0], its one positive (item 1) at rank 3, identities 3, 1, 2
    cmc, m_ap, m_inp, v = oracle(problem, "sysu", "identity", 4)
    assert v == 2
    assert cmc == [Fraction(1, 2), Fraction(1, 2), 1, 1]
    assert m_ap == (1 + Fraction(1, 3)) / 2 and m_inp == (1 + Fraction(1, 3)) / 2
    # with no exclusion query 0's list is [0, 1, 2, 3]: positives at ranks 1 and 3
    _, m_ap, m_inp, _ = oracle(problem, "none", "identity", 4)
    assert m_ap == ((1 + Fraction(2, 3)) / 2 + Fraction(1, 3)) / 2
    assert m_inp == (Fraction(2, 3) + Fraction(1, 3)) / 2


def test_oracle_identity_and_standard_ranks_differ_on_repeated_identities():
    # gallery ranked: id 5, id 5, id 7, id 1 (query id 1): standard rank 4, identity rank 3
    out_std = oracle_query([0, 1, 2, 3], 1, 6, [5, 5, 7, 1], [1, 1, 1, 1], "none", "standard")
    out_id = oracle_query([0, 1, 2, 3], 1, 6, [5, 5, 7, 1], [1, 1, 1, 1], "none", "identity")
    assert out_std[0] == 4 and out_id[0] == 3
    assert out_std[1:] == out_id[1:] == (Fraction(1, 4), Fraction(1, 4))


# ---------------------------------------------------------------------------------------------
# fast code == oracle
# ---------------------------------------------------------------------------------------------


@given(
    problem=rank_problems(sysu_cameras=False),
    rule=st.sampled_from(RULES),
    kind=st.sampled_from(KINDS),
    max_rank=st.integers(1, 12),
    chunk_size=st.sampled_from([None, 1, 2, 5]),
    dtype=st.sampled_from([torch.float64, torch.float32]),
)
def test_matches_oracle(device, problem, rule, kind, max_rank, chunk_size, dtype):
    distmat = torch.as_tensor(problem.distmat, dtype=dtype)
    # the oracle ranks the distances the fast code sees (float32 rounding included)
    problem = RankProblem(
        distmat.double().numpy(),
        problem.q_pids,
        problem.g_pids,
        problem.q_camids,
        problem.g_camids,
    )
    cmc, m_ap, m_inp, v = oracle(problem, rule, kind, max_rank)
    settings = dict(exclusion=rule, cmc_kind=kind, max_rank=max_rank, chunk_size=chunk_size)
    if v == 0:
        with pytest.raises(VireidError, match="no valid query"):
            call(device, problem, distmat, **settings)
        return
    got = call(device, problem, distmat, **settings)
    assert got.cmc.dtype == np.float64 and got.cmc.shape == (max_rank,)
    np.testing.assert_allclose(got.cmc, [float(x) for x in cmc], rtol=0, atol=TOL)
    assert got.mAP == pytest.approx(float(m_ap), rel=0, abs=TOL)
    assert got.mINP == pytest.approx(float(m_inp), rel=0, abs=TOL)
    assert (got.num_valid, got.num_query, got.max_rank) == (v, len(problem.q_pids), max_rank)
    assert (got.exclusion, got.cmc_kind) == (rule, kind)


@given(problem=rank_problems(), kind=st.sampled_from(KINDS))
def test_matches_oracle_with_sysu_cameras(device, problem, kind):
    assume(has_valid_query(problem, "sysu"))
    cmc, m_ap, m_inp, v = oracle(problem, "sysu", kind, 20)
    got = call(device, problem, cmc_kind=kind)
    np.testing.assert_allclose(got.cmc, [float(x) for x in cmc], rtol=0, atol=TOL)
    assert got.mAP == pytest.approx(float(m_ap), rel=0, abs=TOL)
    assert got.mINP == pytest.approx(float(m_inp), rel=0, abs=TOL)
    assert got.num_valid == v


# ---------------------------------------------------------------------------------------------
# per-query values
# ---------------------------------------------------------------------------------------------


@given(
    problem=rank_problems(sysu_cameras=False),
    rule=st.sampled_from(RULES),
    kind=st.sampled_from(KINDS),
    max_rank=st.integers(1, 12),
    chunk_size=st.sampled_from([None, 1, 3]),
)
def test_query_values_match_the_oracle_query_by_query(
    device, problem, rule, kind, max_rank, chunk_size
):
    assume(has_valid_query(problem, rule))
    got = call(
        device, problem, exclusion=rule, cmc_kind=kind, max_rank=max_rank, chunk_size=chunk_size
    )
    q = got.queries
    assert q is not None and q.num_query == got.num_query == len(problem.q_pids)
    assert (q.ap.dtype, q.inp.dtype, q.first_hit.dtype) == (np.float64, np.float64, np.int64)
    assert q.valid.dtype == np.bool_ and q.pids.dtype == np.int64
    np.testing.assert_array_equal(q.pids, problem.q_pids)
    g_pids = [int(p) for p in problem.g_pids]
    g_cams = [int(c) for c in problem.g_camids]
    for i in range(len(problem.q_pids)):
        out = oracle_query(
            problem.distmat[i],
            int(problem.q_pids[i]),
            int(problem.q_camids[i]),
            g_pids,
            g_cams,
            rule,
            kind,
        )
        if out is None:
            assert not q.valid[i] and q.first_hit[i] == 0
            assert np.isnan(q.ap[i]) and np.isnan(q.inp[i])
        else:
            rank, ap, inp = out
            assert q.valid[i] and q.first_hit[i] == rank  # not clipped at max_rank
            assert q.ap[i] == pytest.approx(float(ap), rel=0, abs=TOL)
            assert q.inp[i] == pytest.approx(float(inp), rel=0, abs=TOL)


@given(
    problem=rank_problems(max_query=20), rule=st.sampled_from(RULES), kind=st.sampled_from(KINDS)
)
def test_figures_are_exactly_the_means_of_the_query_values(device, problem, rule, kind):
    assume(has_valid_query(problem, rule))
    got = call(device, problem, exclusion=rule, cmc_kind=kind, max_rank=8)
    q = got.queries
    assert got.mAP == float(np.mean(q.ap[q.valid]))
    assert got.mINP == float(np.mean(q.inp[q.valid]))
    assert got.num_valid == int(q.valid.sum())
    cmc = [float(np.mean(q.first_hit[q.valid] <= r)) for r in range(1, 9)]
    assert got.cmc.tolist() == cmc
    with pytest.raises(ValueError):
        q.ap[0] = 0.5  # read-only: the record cannot drift from its figures


@given(
    problem=rank_problems(max_query=20), rule=st.sampled_from(RULES), kind=st.sampled_from(KINDS)
)
def test_chunk_size_does_not_change_anything(device, problem, rule, kind):
    assume(has_valid_query(problem, rule))
    whole = call(device, problem, exclusion=rule, cmc_kind=kind)
    for chunk_size in (1, 3, 7, 1000):
        chunked = call(device, problem, exclusion=rule, cmc_kind=kind, chunk_size=chunk_size)
        assert_same(chunked, whole, exact=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_distances_are_ranked_like_float64(device, dtype):
    rng = np.random.default_rng(7)
    problem = RankProblem(
        distmat=rng.integers(0, 50, (40, 60)).astype(np.float64) / 8,  # exact in float32
        q_pids=rng.integers(0, 10, 40),
        g_pids=rng.integers(0, 10, 60),
        q_camids=rng.choice([3, 6], 40),
        g_camids=rng.choice([1, 2, 4, 5], 60),
    )
    got = call(device, problem, torch.as_tensor(problem.distmat, dtype=dtype))
    cmc, m_ap, m_inp, _ = oracle(problem, "sysu", "identity", 20)
    np.testing.assert_allclose(got.cmc, [float(x) for x in cmc], rtol=0, atol=TOL)
    assert got.mAP == pytest.approx(float(m_ap), rel=0, abs=TOL)
    assert got.mINP == pytest.approx(float(m_inp), rel=0, abs=TOL)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_and_autograd_distances(device, dtype):
    """Narrow floats rank like their float64 values; a tensor that requires grad is accepted."""
    rng = np.random.default_rng(8)
    distmat = rng.integers(-8, 9, (10, 30)).astype(np.float64) / 4  # exact in 8 bits
    problem = RankProblem(
        distmat,
        rng.integers(0, 4, 10),
        rng.integers(0, 4, 30),
        rng.choice([3, 6], 10),
        rng.choice([1, 2, 4, 5], 30),
    )
    narrow = torch.as_tensor(distmat, dtype=dtype, device=device).requires_grad_()
    assert_same(call(device, problem, narrow), call(device, problem), exact=True)


def test_numpy_inputs_give_the_same_figures(device):
    rng = np.random.default_rng(3)
    problem = RankProblem(
        distmat=rng.random((15, 25)),
        q_pids=rng.integers(0, 5, 15).astype(np.int32),
        g_pids=rng.integers(0, 5, 25),
        q_camids=rng.choice([3, 6], 15),
        g_camids=rng.choice([1, 2, 4, 5], 25).astype(np.int16),
    )
    from_numpy = rank_metrics(
        problem.distmat, problem.q_pids, problem.g_pids, problem.q_camids, problem.g_camids
    )
    assert_same(from_numpy, call(device, problem), exact=True)


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------


@given(
    problem=rank_problems(),
    rule=st.sampled_from(RULES),
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 2**32 - 1),
)
def test_invariant_to_query_order(device, problem, rule, kind, seed):
    assume(has_valid_query(problem, rule))
    perm = np.random.default_rng(seed).permutation(len(problem.q_pids))
    permuted = RankProblem(
        problem.distmat[perm],
        problem.q_pids[perm],
        problem.g_pids,
        problem.q_camids[perm],
        problem.g_camids,
    )
    a = call(device, problem, exclusion=rule, cmc_kind=kind)
    b = call(device, permuted, exclusion=rule, cmc_kind=kind)
    assert_same(a, b)
    np.testing.assert_array_equal(a.cmc, b.cmc)  # counts over the same set: exactly equal


def stable_positions(distmat: np.ndarray) -> np.ndarray:
    """Distinct distances encoding the tie rule: each item's position in its row's order."""
    order = np.argsort(distmat, axis=1, kind="stable")
    positions = np.empty_like(order)
    np.put_along_axis(positions, order, np.arange(distmat.shape[1])[None], axis=1)
    return positions.astype(np.float64)


@given(
    problem=rank_problems(),
    rule=st.sampled_from(RULES),
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 2**32 - 1),
)
def test_invariant_to_gallery_order_under_the_tie_rule(device, problem, rule, kind, seed):
    """Permuting the gallery changes nothing once ties carry the original index.

    Ties are resolved by gallery index, so a permuted gallery with the *same* tied distances may
    legitimately rank differently. Replacing each distance by its item's position in the original
    stable order keeps the original ranking exactly and has no ties, so any permutation of it must
    give the original (tied) figures.
    """
    assume(has_valid_query(problem, rule))
    original = call(device, problem, exclusion=rule, cmc_kind=kind)
    perm = np.random.default_rng(seed).permutation(len(problem.g_pids))
    permuted = RankProblem(
        stable_positions(problem.distmat)[:, perm],
        problem.q_pids,
        problem.g_pids[perm],
        problem.q_camids,
        problem.g_camids[perm],
    )
    assert_same(call(device, permuted, exclusion=rule, cmc_kind=kind), original, exact=True)


@given(problem=rank_problems(), rule=st.sampled_from(RULES), kind=st.sampled_from(KINDS))
def test_ties_follow_gallery_index(device, problem, rule, kind):
    """Tied distances rank exactly as if the lower gallery index were slightly closer."""
    assume(has_valid_query(problem, rule))
    tied = call(device, problem, exclusion=rule, cmc_kind=kind)
    untied = call(device, problem, stable_positions(problem.distmat), exclusion=rule, cmc_kind=kind)
    assert_same(tied, untied, exact=True)


TRANSFORMS = {
    "affine": lambda d: 3.0 * d + 2.0,
    "negative": lambda d: d - 3.0,
    "minus-reciprocal": lambda d: -1.0 / (1.0 + d),
    "exp": np.exp,
    "cube": lambda d: (d - 0.5) ** 3,
    "log1p": np.log1p,
}


@given(
    problem=rank_problems(),
    rule=st.sampled_from(RULES),
    kind=st.sampled_from(KINDS),
    name=st.sampled_from(sorted(TRANSFORMS)),
)
def test_invariant_to_increasing_transforms(device, problem, rule, kind, name):
    assume(has_valid_query(problem, rule))
    transformed = TRANSFORMS[name](problem.distmat)
    # rounding may merge two distinct close distances; such draws test nothing about ranking
    assume(np.array_equal(stable_positions(transformed), stable_positions(problem.distmat)))
    assume(
        np.array_equal(
            transformed[:, :, None] == transformed[:, None, :],
            problem.distmat[:, :, None] == problem.distmat[:, None, :],
        )
    )
    a = call(device, problem, exclusion=rule, cmc_kind=kind)
    b = call(device, problem, transformed, exclusion=rule, cmc_kind=kind)
    assert_same(a, b, exact=True)


@given(
    problem=rank_problems(),
    rule=st.sampled_from(RULES),
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 2**32 - 1),
)
def test_perfect_ranking_scores_one_everywhere(device, problem, rule, kind, seed):
    assume(has_valid_query(problem, rule))
    rng = np.random.default_rng(seed)
    same = problem.q_pids[:, None] == problem.g_pids[None, :]
    # every positive closer than every other item
    distmat = np.where(same, rng.random(same.shape), 2.0 + rng.random(same.shape))
    got = call(device, problem, distmat, exclusion=rule, cmc_kind=kind)
    np.testing.assert_array_equal(got.cmc, np.ones(20))
    assert got.mAP == 1.0 and got.mINP == 1.0


@given(
    problem=rank_problems(),
    rule=st.sampled_from(RULES),
    kind=st.sampled_from(KINDS),
    camera=st.integers(1, 6),
    at=st.integers(0, 1000),
)
def test_far_negative_changes_nothing(device, problem, rule, kind, camera, at):
    """A gallery item farther than all others, of an identity no query has, changes nothing."""
    assume(has_valid_query(problem, rule))
    n_gallery = len(problem.g_pids)
    at = at % (n_gallery + 1)  # anywhere in the gallery: the tie rule is not involved
    new_id = int(max(problem.q_pids.max(), problem.g_pids.max())) + 1
    far = problem.distmat.max() + 1.0
    extended = RankProblem(
        np.insert(problem.distmat, at, far, axis=1),
        problem.q_pids,
        np.insert(problem.g_pids, at, new_id),
        problem.q_camids,
        np.insert(problem.g_camids, at, camera),
    )
    a = call(device, problem, exclusion=rule, cmc_kind=kind)
    b = call(device, extended, exclusion=rule, cmc_kind=kind)
    assert_same(a, b, exact=True)


@given(problem=rank_problems(max_gallery=8, max_ids=12), kind=st.sampled_from(KINDS))
def test_fewer_identities_than_max_rank(device, problem, kind):
    """Rows with fewer distinct identities than max_rank work; the curve ends at 1."""
    assume(has_valid_query(problem, "none"))
    got = call(device, problem, exclusion="none", cmc_kind=kind, max_rank=50)
    assert got.cmc.shape == (50,)
    assert np.all(np.diff(got.cmc) >= 0)
    # every valid query is found within the whole list, at most 8 items long
    np.testing.assert_array_equal(got.cmc[8:], np.ones(42))


@given(problem=rank_problems(), rule=st.sampled_from(RULES))
def test_cmc_identity_never_below_standard(device, problem, rule):
    """De-duplicating identities can only move the query's identity up."""
    assume(has_valid_query(problem, rule))
    ident = call(device, problem, exclusion=rule, cmc_kind="identity")
    std = call(device, problem, exclusion=rule, cmc_kind="standard")
    assert np.all(ident.cmc >= std.cmc)
    assert ident.cmc[0] == std.cmc[0]  # rank 1 is the same event for both kinds
    assert (ident.mAP, ident.mINP) == (std.mAP, std.mINP)


def test_single_positive_at_rank_k_hand_example(device):
    problem = RankProblem(
        distmat=np.array([[0.0, 0.1, 0.2, 0.3, 0.4]]),
        q_pids=np.array([9]),
        g_pids=np.array([1, 2, 2, 9, 3]),
        q_camids=np.array([6]),
        g_camids=np.array([1, 1, 1, 1, 1]),
    )
    std = call(device, problem, cmc_kind="standard", max_rank=5)
    ident = call(device, problem, cmc_kind="identity", max_rank=5)
    np.testing.assert_array_equal(std.cmc, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(ident.cmc, [0, 0, 1, 1, 1])
    assert std.mAP == 0.25 and std.mINP == 0.25
    assert std.rank(4) == 1.0 and ident.rank(3) == 1.0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_negative_zero_ties_with_zero(device, dtype):
    """-0.0 == 0.0: a tie, resolved by gallery index like any other."""
    args = dict(
        q_pids=torch.tensor([1], device=device),
        g_pids=torch.tensor([2, 1], device=device),
        q_camids=torch.tensor([6], device=device),
        g_camids=torch.tensor([1, 1], device=device),
        cmc_kind="standard",
        max_rank=2,
    )
    for row in ([0.0, -0.0], [-0.0, 0.0]):
        got = rank_metrics(torch.tensor([row], dtype=dtype, device=device), **args)
        np.testing.assert_array_equal(got.cmc, [0.0, 1.0])  # item 0 first: positive at rank 2
        assert got.mAP == 0.5


def test_float64_distances_one_ulp_apart_are_ranked_by_distance(device):
    """Distances closer than the sort keys' resolution (low bits dropped) still rank exactly."""
    one = 1.0
    above = float(np.nextafter(one, 2.0))
    below = float(np.nextafter(one, 0.0))
    args = dict(
        q_pids=torch.tensor([1, 1], device=device),
        g_pids=torch.tensor([2, 1, 3], device=device),
        q_camids=torch.tensor([6, 6], device=device),
        g_camids=torch.tensor([1, 1, 1], device=device),
        cmc_kind="standard",
        max_rank=3,
    )
    # row 0: the positive (item 1) is one ulp closer than item 0; row 1: one ulp farther
    # than item 2, which is one ulp farther than item 0
    distmat = torch.tensor(
        [[above, one, 5.0], [below, above, one]], dtype=torch.float64, device=device
    )
    got = rank_metrics(distmat, **args)
    np.testing.assert_array_equal(got.cmc, [0.5, 0.5, 1.0])
    assert got.mAP == pytest.approx((1.0 + 1.0 / 3.0) / 2, rel=0, abs=TOL)
    # a chunk in which a single row needs the exact keys
    one_row = {**args, "q_pids": args["q_pids"][:1], "q_camids": args["q_camids"][:1]}
    np.testing.assert_array_equal(rank_metrics(distmat[:1], **one_row).cmc, [1.0, 1.0, 1.0])
    two = rank_metrics(distmat, **args, chunk_size=1)
    np.testing.assert_array_equal(two.cmc, [0.5, 0.5, 1.0])


def test_large_gallery_with_ties_and_near_ties_matches_oracle(device):
    """Thousands of columns (more index bits) with exact ties and ulp-close float64 values."""
    rng = np.random.default_rng(5)
    n_query, n_gallery = 6, 5000
    base = rng.integers(0, 200, (n_query, n_gallery)).astype(np.float64)
    nudge = rng.integers(-1, 2, (n_query, n_gallery))
    distmat = np.where(nudge > 0, np.nextafter(base, np.inf), base)
    distmat = np.where(nudge < 0, np.nextafter(base, -np.inf), distmat)
    problem = RankProblem(
        distmat,
        rng.integers(0, 50, n_query),
        rng.integers(0, 50, n_gallery),
        rng.choice([3, 6], n_query),
        rng.choice([1, 2, 4, 5], n_gallery),
    )
    for kind in KINDS:
        cmc, m_ap, m_inp, v = oracle(problem, "sysu", kind, 20)
        got = call(device, problem, cmc_kind=kind, chunk_size=4)
        np.testing.assert_allclose(got.cmc, [float(x) for x in cmc], rtol=0, atol=TOL)
        assert got.mAP == pytest.approx(float(m_ap), rel=0, abs=TOL)
        assert got.mINP == pytest.approx(float(m_inp), rel=0, abs=TOL)
        assert got.num_valid == v


# ---------------------------------------------------------------------------------------------
# exclusion_mask
# ---------------------------------------------------------------------------------------------


@given(problem=rank_problems(sysu_cameras=False), rule=st.sampled_from(RULES))
def test_exclusion_mask_matches_the_rule(device, problem, rule):
    args = on(device, problem)
    mask = exclusion_mask(args["q_pids"], args["g_pids"], args["q_camids"], args["g_camids"], rule)
    assert mask.dtype == torch.bool and mask.device.type == device.type
    expected = [
        [
            oracle_skips(int(qp), int(qc), int(gp), int(gc), rule)
            for gp, gc in zip(problem.g_pids, problem.g_camids, strict=True)
        ]
        for qp, qc in zip(problem.q_pids, problem.q_camids, strict=True)
    ]
    assert mask.cpu().tolist() == expected


def test_exclusion_mask_sysu_skips_every_camera_2_item_for_camera_3_queries():
    mask = exclusion_mask([1, 1], [1, 2, 1], [3, 6], [2, 2, 1], "sysu")
    assert mask.tolist() == [[True, True, False], [False, False, False]]


# ---------------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------------


@st.composite
def feature_problems(draw, *, metric: str):
    """Features whose distances are exact in float32 and float64, with ids and SYSU cameras.

    Matrix products of different block sizes round differently, so only exactly computed
    distances make "chunked == whole" a question about the ranking code. Euclidean: small
    integer features (exact squared norms and products). Cosine: signed standard basis vectors
    times a positive integer, whose normalisation and products (-1, 0, 1) are exact.
    """
    n_query = draw(st.integers(1, 12))
    n_gallery = draw(st.integers(1, 25))
    d = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_ids = draw(st.integers(1, 6))

    def features(n):
        if metric == "euclidean":
            return rng.integers(-2, 3, (n, d)).astype(np.float64)
        out = np.zeros((n, d))
        out[np.arange(n), rng.integers(0, d, n)] = rng.choice([-3, -1, 1, 2], n)
        return out

    return (
        features(n_query),
        features(n_gallery),
        rng.integers(0, n_ids, n_query),
        rng.integers(0, n_ids, n_gallery),
        rng.choice([3, 6], n_query),
        rng.choice([1, 2, 4, 5], n_gallery),
    )


@given(
    data=st.data(),
    metric=st.sampled_from(["euclidean", "cosine"]),
    kind=st.sampled_from(KINDS),
    chunk_size=st.sampled_from([None, 1, 4]),
    dtype=st.sampled_from([torch.float64, torch.float32]),
)
def test_from_features_equals_distances_then_metrics(device, data, metric, kind, chunk_size, dtype):
    qf, gf, qp, gp, qc, gc = data.draw(feature_problems(metric=metric))
    t = [torch.as_tensor(x, device=device) for x in (qp, gp, qc, gc)]
    qf = torch.as_tensor(qf, dtype=dtype, device=device)
    gf = torch.as_tensor(gf, dtype=dtype, device=device)
    settings = dict(metric=metric, cmc_kind=kind, chunk_size=chunk_size)
    try:
        expected = rank_metrics(pairwise_distance(qf, gf, metric), *t, cmc_kind=kind)
    except VireidError as exc:
        assert "no valid query" in str(exc)
        with pytest.raises(VireidError, match="no valid query"):
            rank_metrics_from_features(qf, gf, *t, **settings)
        return
    assert_same(rank_metrics_from_features(qf, gf, *t, **settings), expected, exact=True)


def test_from_features_random_float64(device):
    """Generic features: no exact or near ties (within rounding) to be ordered differently."""
    gen = torch.Generator().manual_seed(11)
    qf = torch.randn(64, 16, generator=gen, dtype=torch.float64).to(device)
    gf = torch.randn(90, 16, generator=gen, dtype=torch.float64).to(device)
    qp, gp = torch.randint(0, 9, (64,), generator=gen), torch.randint(0, 9, (90,), generator=gen)
    qc = torch.tensor([3, 6]).repeat(32)
    gc = torch.tensor([1, 2, 4, 5]).repeat(23)[:90]
    for metric in ("euclidean", "cosine"):
        dist = pairwise_distance(qf, gf, metric)
        expected = rank_metrics(dist, qp, gp, qc, gc)
        got = rank_metrics_from_features(qf, gf, qp, gp, qc, gc, metric=metric, chunk_size=10)
        assert_same(got, expected, exact=True)


# ---------------------------------------------------------------------------------------------
# bad input: exact messages
# ---------------------------------------------------------------------------------------------


def good(device):
    return dict(
        distmat=torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], device=device),
        q_pids=torch.tensor([1, 2, 3], device=device),
        g_pids=torch.tensor([1, 2], device=device),
        q_camids=torch.tensor([3, 6, 6], device=device),
        g_camids=torch.tensor([1, 4], device=device),
    )


def test_good_input_is_accepted(device):
    got = rank_metrics(**good(device))
    assert got.num_valid == 2 and got.num_query == 3


@pytest.mark.parametrize(
    ("field", "value", "settings", "message"),
    [
        (
            "distmat",
            torch.tensor([[1, 2]]),
            {},
            "distmat: expected a floating-point array (n_query, n_gallery), got dtype torch.int64",
        ),
        (
            "distmat",
            np.array([[1, 2]]),
            {},
            "distmat: expected a floating-point array (n_query, n_gallery), got dtype int64",
        ),
        (
            "distmat",
            [[0.1, 0.2]],
            {},
            "distmat: expected a torch.Tensor or numpy.ndarray, got <class 'list'>",
        ),
        (
            "distmat",
            torch.zeros(3),
            {},
            "distmat: expected a 2-D array (n_query, n_gallery), got shape (3,)",
        ),
        (
            "distmat",
            torch.zeros(3, 0),
            {},
            "distmat: empty gallery; expected at least one gallery item",
        ),
        ("distmat", torch.zeros(0, 2), {}, "distmat: no query; expected at least one query"),
        (
            "distmat",
            torch.tensor([[0.1, 0.2], [0.3, float("nan")], [0.0, 0.0]]),
            {},
            "distmat: contains NaN or inf (first at row 1, column 1); expected finite",
        ),
        (
            "distmat",
            torch.tensor([[0.1, float("-inf")], [0.3, 0.4], [0.0, 0.0]]),
            {},
            "distmat: contains NaN or inf (first at row 0, column 1); expected finite",
        ),
        (
            "q_pids",
            torch.tensor([1, 2]),
            {},
            "q_pids: expected shape (3,) like the query rows, got (2,)",
        ),
        (
            "g_pids",
            torch.tensor([1, 2, 3]),
            {},
            "g_pids: expected shape (2,) like the gallery rows, got (3,)",
        ),
        (
            "q_camids",
            torch.tensor([3, 6]),
            {},
            "q_camids: expected shape (3,) like the query rows, got (2,)",
        ),
        (
            "g_camids",
            torch.tensor([1]),
            {},
            "g_camids: expected shape (2,) like the gallery rows, got (1,)",
        ),
        (
            "q_pids",
            torch.tensor([1.0, 2.0, 3.0]),
            {},
            "q_pids: expected integer ids, got dtype torch.float32",
        ),
        ("g_pids", np.array([1.0, 2.0]), {}, "g_pids: expected integer ids, got dtype float64"),
        (
            "g_camids",
            torch.tensor([True, False]),
            {},
            "g_camids: expected integer ids, got dtype torch.bool",
        ),
        (
            "q_camids",
            torch.tensor([[3, 6, 6]]),
            {},
            "q_camids: expected a 1-D array, got shape (1, 3)",
        ),
        (
            None,
            None,
            {"exclusion": "market"},
            "exclusion: unknown value 'market'; expected one of 'sysu', "
            "'same-id-same-camera', 'none'",
        ),
        (
            None,
            None,
            {"cmc_kind": "cumulative"},
            "cmc_kind: unknown value 'cumulative'; expected one of 'identity', 'standard'",
        ),
        (None, None, {"max_rank": 0}, "max_rank: expected an integer >= 1, got 0"),
        (None, None, {"max_rank": 2.0}, "max_rank: expected an integer >= 1, got 2.0"),
        (None, None, {"max_rank": True}, "max_rank: expected an integer >= 1, got True"),
        (None, None, {"chunk_size": 0}, "chunk_size: expected None or an integer >= 1, got 0"),
    ],
)
def test_bad_input_is_named(device, field, value, settings, message):
    args = good(device)
    if field is not None:
        args[field] = value.to(device) if isinstance(value, torch.Tensor) else value
    with pytest.raises(VireidError) as info:
        rank_metrics(**args, **settings)
    assert str(info.value) == message


def test_no_valid_query_is_an_error_not_nan(device):
    args = good(device)
    args["q_pids"] = torch.tensor([7, 8, 9], device=device)
    with pytest.raises(VireidError) as info:
        rank_metrics(**args)
    assert str(info.value) == (
        "q_pids: no valid query; none of the 3 queries has a gallery item of its identity left "
        "after the 'sysu' exclusion"
    )


def test_exclusion_can_remove_every_positive(device):
    # the only positive is seen from camera 3 in camera 2
    with pytest.raises(VireidError, match="no valid query; none of the 1 queries"):
        rank_metrics(
            torch.tensor([[0.5, 0.1]], device=device),
            torch.tensor([4], device=device),
            torch.tensor([4, 5], device=device),
            torch.tensor([3], device=device),
            torch.tensor([2, 1], device=device),
        )


@pytest.mark.parametrize("r", [0, 21, 1.0, True])
def test_rank_outside_the_curve_is_an_error(device, r):
    got = rank_metrics(**good(device))
    with pytest.raises(VireidError) as info:
        got.rank(r)
    assert str(info.value) == f"rank: expected an integer 1 <= r <= 20, got {r!r}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"gallery_features": torch.zeros(4, 3)},
            "gallery_features: expected 2 columns like query_features, got 3",
        ),
        (
            {"query_features": torch.zeros(3, 2, dtype=torch.int64)},
            "query_features: expected a floating-point array (n, d), got dtype torch.int64",
        ),
        (
            {"query_features": torch.zeros(6)},
            "query_features: expected a 2-D array (n, d), got shape (6,)",
        ),
        (
            {
                "gallery_features": torch.tensor(
                    [[0.0, 1.0], [float("nan"), 0.0], [1.0, 1.0], [0.0, 2.0]]
                )
            },
            "gallery_features: contains NaN or inf (first in row 1); expected finite",
        ),
        (
            {"gallery_features": torch.zeros(0, 2)},
            "gallery_features: empty gallery; expected at least one gallery item",
        ),
        (
            {"metric": "manhattan"},
            "metric: unknown metric 'manhattan'; expected one of 'euclidean', 'cosine'",
        ),
        (
            {"q_pids": torch.tensor([1, 2])},
            "q_pids: expected shape (3,) like the query rows, got (2,)",
        ),
    ],
)
def test_bad_features_are_named(device, change, message):
    args = dict(
        query_features=torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
        gallery_features=torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]),
        q_pids=torch.tensor([1, 2, 3]),
        g_pids=torch.tensor([1, 2, 3, 4]),
        q_camids=torch.tensor([3, 6, 6]),
        g_camids=torch.tensor([1, 2, 4, 5]),
    )
    args.update(change)
    args = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    with pytest.raises(VireidError) as info:
        rank_metrics_from_features(**args)
    assert str(info.value) == message


def test_finite_distances_whose_sum_overflows_are_accepted(device):
    # Every entry finite, their float32 sum inf: accepted and ranked (spec: `distmat` finite).
    d = torch.tensor([[3.0e38, 2.0e38, 1.0e38]], device=device)
    assert not bool(torch.isfinite(d.sum()))
    m = rank_metrics(d, [1], [2, 1, 3], [1], [2, 2, 2], exclusion="none", max_rank=3)
    assert m.cmc.tolist() == [0.0, 1.0, 1.0]
    assert m.mAP == 0.5


def test_read_only_id_arrays_are_taken_without_a_warning():
    # features files are loaded read-only (np.load of an archive member can be); torch warns
    # when it shares a read-only array, so the ids are copied where they are not writable
    import warnings

    ids = np.array([0, 1])
    ids.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = rank_metrics(torch.tensor([[0.1, 0.2], [0.3, 0.1]]), ids, ids, [3, 3], [1, 1])
    assert got.mAP == 1.0


def test_default_chunk_is_the_specs():
    # spec "Memory": c = max(32, 2**22 // n_gallery) rows, capped at n_query; an explicit size wins
    assert chunk_rows(None, 10**6, 1024) == 4096
    assert chunk_rows(None, 10**6, 100_000) == 41  # the spec's 100,000 x 100,000 figure
    assert chunk_rows(None, 10**6, 10**6) == 32
    assert chunk_rows(None, 10, 1024) == 10
    assert chunk_rows(None, 5, 0) == 5
    assert chunk_rows(7, 100, 5) == 7 and chunk_rows(7, 3, 5) == 3


def test_per_query_values_are_frozen():
    got = rank_metrics(
        np.array([[0.1, 0.2]]), np.array([1]), np.array([1, 2]), np.array([3]), np.array([1, 1])
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.queries.ap = got.queries.ap * 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.mAP = 1.0  # type: ignore[misc]  # the figures too
