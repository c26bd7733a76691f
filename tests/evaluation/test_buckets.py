"""Sort words of bucketed keys (``spec/evaluation/buckets.md``): the NumPy fast paths against the
torch formulas, the buckets' order, and the stable sort with slots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.buckets import BucketSort, sort_with_slots
from reference.evaluation.pooled import PooledScorer
from reference.evaluation.ranking import SENTINEL32
from tests.evaluation.test_pooled import pool_problem


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 2),
    n_rows=st.integers(1, 6),
    n_pool=st.integers(1, 40),
    n_trials=st.integers(1, 14),
    block_bytes=st.sampled_from([1, 100, 1 << 20]),
    ascending=st.booleans(),
)
def test_counts_at_numpy_equals_torch_and_the_count(
    seed, n_rows, n_pool, n_trials, block_bytes, ascending
):
    # the sorts and member counts of both implementations, on the CPU: int32 keys with
    # negatives, repeats and the excluded items' sentinel, blocks of one row, a few, or all
    gen = np.random.default_rng(seed)
    _, _, gp, _, gc, trials = pool_problem(seed, 1, n_pool, n_trials, 0, False)
    sort = PooledScorer(gp, gc, trials, "none", "standard").sort
    sort.BLOCK_BYTES = block_bytes
    keys = torch.from_numpy(gen.integers(-3, 4, size=(n_rows, n_pool)).astype(np.int32))
    keys[torch.from_numpy(gen.random((n_rows, n_pool)) < 0.2)] = SENTINEL32
    packed = sort.pack(keys, *sort.cut(keys, keys.amax(dim=1)))
    expected = torch.sort(packed).values
    got = sort.sort(packed.clone())
    assert torch.equal(got, expected)
    # slots from 0 to n_pool, repeated; ascending along each row (the sums between them), or
    # not (the torch kernels)
    at = torch.from_numpy(gen.integers(0, n_pool + 1, size=(n_rows, 7)))
    if ascending:
        at = at.sort(dim=1).values
    a, b = sort.counts_at_numpy(got, at), sort.counts_at_torch(got, at)
    assert torch.equal(a, b) and a.shape == (sort.members.shape[0], n_rows, 7)
    column = sort.column_of(got)
    for w, word in enumerate(sort.members):  # the members of the first at[i, j] slots, summed
        for i in range(n_rows):
            for j in range(7):
                assert int(a[w, i, j]) == int(word[column[i, : int(at[i, j])]].sum())


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 2),
    n_rows=st.integers(1, 6),
    n_pool=st.integers(1, 40),
    scale=st.sampled_from([3, 1 << 10, 1 << 24, 1 << 30]),
    offset=st.sampled_from([0, -5, 1 << 30, (1 << 31) - 200]),
    key_bits=st.sampled_from([1, 3, 18, 63]),
)
def test_pack_numpy_equals_the_formula(seed, n_rows, n_pool, scale, offset, key_bits):
    # the sort words of int32 keys: near 0, negative, wide, near the sentinel, excluded ones
    gen = np.random.default_rng(seed)
    sort = BucketSort(torch.zeros(1, n_pool, dtype=torch.int64), key_bits)
    values = np.clip(offset + gen.integers(0, scale, size=(n_rows, n_pool)), -(2**31), 2**31 - 2)
    keys = torch.from_numpy(values.astype(np.int32))
    high = keys.amax(dim=1)
    keys[torch.from_numpy(gen.random((n_rows, n_pool)) < 0.2)] = SENTINEL32
    low, shift = sort.cut(keys, high)
    bucket = ((keys.to(torch.int64) - low[:, None]) >> shift[:, None]).clamp_max(sort.top)
    kept = keys != SENTINEL32
    # every kept key below the top bucket, and an excluded item's at least every kept one's
    assert bool((bucket[kept] < sort.top).all())
    top_kept = torch.where(kept, bucket, -1).amax(dim=1, keepdim=True)
    assert bool((bucket >= top_kept)[~kept].all())
    expected = (bucket << sort.column_bits) + torch.arange(n_pool)
    assert torch.equal(sort.pack(keys, low, shift).to(torch.int64), expected)
    fast = sort.pack_numpy(keys, low, shift)
    if fast is not None:
        assert torch.equal(fast.to(torch.int64), expected)


def test_pack_numpy_applies_to_keys_of_distances():
    gen = torch.Generator().manual_seed(0)
    dist = torch.cdist(torch.randn(5, 64, generator=gen), torch.randn(300, 64, generator=gen))
    keys = dist.view(torch.int32).clone()
    high = keys.amax(dim=1)
    keys[:, :7] = SENTINEL32
    sort = BucketSort(torch.zeros(1, 300, dtype=torch.int64))
    low, shift = sort.cut(keys, high)
    assert sort.pack_numpy(keys, low, shift) is not None


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(1, 5), width=st.integers(1, 30))
def test_sort_with_slots_is_the_stable_sort(seed, n_rows, width):
    # int32 keys with repeats, negatives and the sentinel
    gen = np.random.default_rng(seed)
    keys = torch.from_numpy(gen.integers(-3, 4, (n_rows, width)).astype(np.int32))
    keys[torch.from_numpy(gen.random((n_rows, width)) < 0.2)] = SENTINEL32
    values, slots = sort_with_slots(keys)
    expected = torch.sort(keys, dim=1, stable=True)
    assert values.dtype == torch.int32 and torch.equal(values, expected.values)
    assert torch.equal(slots, expected.indices)


def test_a_bucket_of_no_bits_is_refused():
    with pytest.raises(VireidError, match=r"^key_bits: expected an integer >= 1, got 0$"):
        BucketSort(torch.zeros(1, 4, dtype=torch.int64), key_bits=0)
