"""The float32 fast path of the per-query values against the reference kernel (exact equality).

``QueryScorer.fast_chunk`` claims to equal ``QueryScorer.reference_chunk`` to the last bit for
float32 distances. Ties decide where they could differ, so the rows here are drawn from a few
values (ties everywhere), from all distinct values, and mixed; every exclusion rule and CMC kind.
The reference kernel itself is checked against the loop oracle in ``test_metrics.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.evaluation.ranking import QueryScorer, float32_keys, interleaved_values, order_keys

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
    # float64: negative distances reflected, -0.0 equal to +0.0 (ties by gallery index)
    wide = torch.tensor([[-2.0, -0.0, 0.0, 1e-300, 3.5, -1e-300, -3.0, 0.5]], dtype=torch.float64)
    keys64 = order_keys(wide, torch.arange(8), 3)
    assert torch.equal(torch.argsort(keys64), torch.tensor([[6, 0, 5, 1, 2, 3, 7, 4]]))


def test_ties_before_and_identity_rank_of_keys_by_hand():
    # gallery: items 0..4 of identities [7, 8, 8, 9, 7]; one row of keys, the lead at item 2
    gp, gc = torch.tensor([7, 8, 8, 9, 7]), torch.tensor([1, 1, 2, 4, 5])
    scorer = QueryScorer(gp, gc, "none", "identity")
    keys = torch.tensor([[5, 3, 3, 3, 1]], dtype=torch.int32)
    # items 1 and 3 share item 2's key; only item 1 has the smaller gallery index
    assert scorer.ties_before(keys, torch.tensor([3], dtype=torch.int32), torch.tensor([2])) == 1
    lead_key, lead_item = torch.tensor([[3]], dtype=torch.int32), torch.tensor([[2]])
    # identity 7 is first below (item 4, key 1); identity 9 ties at key 3 but comes after
    # item 2; identity 8 is the query's own: rank 2
    rank = scorer.identity_rank_of_keys(keys, lead_key, lead_item, torch.tensor([True]))
    assert rank.tolist() == [2]
    # the lead at item 3 (identity 9): identity 7 below, identity 8 tied at key 3 with a
    # smaller index (items 1, 2): rank 3
    rank = scorer.identity_rank_of_keys(keys, lead_key, torch.tensor([[3]]), torch.tensor([True]))
    assert rank.tolist() == [3]
    # a row whose lead is not kept is not counted one by one
    rank = scorer.identity_rank_of_keys(keys, lead_key, torch.tensor([[3]]), torch.tensor([False]))
    assert rank.tolist() == [2]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_query=st.integers(1, 9), n_gallery=st.integers(1, 30))
def test_skip_camera_through_a_slice_equals_the_general_index(device, seed, n_query, n_gallery):
    # SYSU-MM01's rule on gallery orders with camera 2 side by side (a slice) or anywhere
    gen = np.random.default_rng(seed)
    _, _, gp, qc, gc = problem(seed, n_query, n_gallery, 0, False)
    for cams in (gc, gc.sort().values):  # camera 2 anywhere, then side by side
        scorer = QueryScorer(gp.to(device), cams.to(device), "sysu", "standard")
        keys = torch.from_numpy(gen.integers(0, 99, (n_query, n_gallery), dtype=np.int32))
        keys = keys.to(device)
        expected = keys.clone()
        expected[(qc.to(device) == 3)[:, None] & (cams.to(device) == 2)[None]] = -1
        scorer.skip_camera(keys, qc.to(device), -1)
        assert torch.equal(keys, expected)
    sorted_scorer = QueryScorer(gp, gc.sort().values, "sysu", "standard")
    assert sorted_scorer.skipped_span is not None


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(1, 6), width=st.integers(1, 12))
def test_interleaved_values_are_the_values_of_the_kept_ones_first(seed, n_rows, width):
    # ascending ranks of the kept positives, dropped ones anywhere among them (ranks of any
    # value): every value equals that of the kept ones moved first (QueryScorer.values), to
    # the last bit; the formulas themselves meet the exact oracle of test_metrics.py
    gen = np.random.default_rng(seed)
    kept = torch.from_numpy(gen.random((n_rows, width)) < 0.6)
    ranks = torch.from_numpy(gen.integers(1, 50, (n_rows, width))).cumsum(dim=1)
    ranks = torch.where(kept, ranks, torch.from_numpy(gen.integers(0, 10**6, (n_rows, width))))
    valid, first, ap, inp, lead = interleaved_values(ranks, kept)
    order = torch.sort((~kept).to(torch.int8), dim=1, stable=True).indices  # kept ones first
    scorer = QueryScorer(
        torch.zeros(width, dtype=torch.int64), torch.ones(width), "none", "standard"
    )
    packed_ranks, packed_kept = ranks.gather(1, order), kept.gather(1, order)
    e_valid, _, e_ap, e_inp = scorer.values(packed_ranks, packed_kept, packed_ranks[:, 0])
    assert torch.equal(valid, e_valid)
    assert torch.equal(ap[valid], e_ap[valid]) and torch.equal(inp[valid], e_inp[valid])
    assert torch.equal(first[valid], packed_ranks[valid, 0])
    assert torch.equal(lead[valid], order[valid, 0])
