"""The threaded row sort (``src/reference/evaluation/rowsort.py``) against NumPy's own sort."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.rowsort import row_blocks, sort_rows_inplace
from tests.plugin import result_of_forked_child


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(0, 13),
    n_cols=st.integers(0, 17),
    threads=st.integers(1, 5),
    dtype=st.sampled_from([np.int32, np.int64, np.float32]),
    levels=st.sampled_from([2, 5, 1000]),
)
def test_equals_numpy_sort_in_place(seed, n_rows, n_cols, threads, dtype, levels):
    # min_elements=0: every array is split among the threads (more threads than rows too)
    gen = np.random.default_rng(seed)
    array = gen.integers(-levels, levels, (n_rows, n_cols)).astype(dtype)
    want = np.sort(array, axis=1)
    before = array.ctypes.data
    sort_rows_inplace(array, threads=threads, min_elements=0)
    assert array.ctypes.data == before and np.array_equal(array, want)


def test_sorts_a_strided_view_in_place():
    # the pooled scorer sorts int64 words that are a view of an int32 pair array
    gen = np.random.default_rng(3)
    pairs = gen.integers(0, 50, (40, 30, 2)).astype(np.int32)
    words = pairs.view(np.int64)[:, :, 0]
    want = np.sort(words.copy(), axis=1)
    sort_rows_inplace(words, threads=3, min_elements=0)
    assert np.array_equal(words, want)
    assert np.array_equal(pairs.view(np.int64)[:, :, 0], want)


def test_large_arrays_default_threads_and_threshold():
    gen = np.random.default_rng(4)
    array = gen.integers(0, 2**31 - 1, (1100, 1000), dtype=np.int32)  # above the threshold
    want = np.sort(array, axis=1)
    sort_rows_inplace(array)
    assert np.array_equal(array, want)
    small = gen.integers(0, 9, (3, 4))
    sort_rows_inplace(small, threads=4)  # below the threshold: sorted on the caller's thread
    assert (np.diff(small, axis=1) >= 0).all()


@settings(max_examples=60, deadline=None)
@given(n_rows=st.integers(0, 50), parts=st.integers(1, 9))
def test_row_blocks_cover_the_rows_in_order_evenly(n_rows, parts):
    blocks = row_blocks(n_rows, parts)
    assert len(blocks) == max(1, min(parts, n_rows))
    assert blocks[0].start == 0 and blocks[-1].stop == n_rows
    assert all(a.stop == b.start for a, b in itertools.pairwise(blocks))
    sizes = [b.stop - b.start for b in blocks]
    assert max(sizes) - min(sizes) <= 1


def test_callers_on_several_threads_with_different_counts():
    # a caller that changes the thread count replaces the pool; one still using the old pool
    # must finish its sort
    gen = np.random.default_rng(5)
    arrays = [gen.integers(0, 1000, (40, 50)) for _ in range(16)]
    wants = [np.sort(a, axis=1) for a in arrays]

    def work(k: int) -> None:
        sort_rows_inplace(arrays[k], threads=2 + k % 3, min_elements=0)

    with ThreadPoolExecutor(4) as callers:
        list(callers.map(work, range(16)))
    assert all(np.array_equal(a, w) for a, w in zip(arrays, wants, strict=True))


def _sort_in_child(queue) -> None:
    array = np.arange(60, dtype=np.int64).reshape(6, 10)[:, ::-1].copy()
    sort_rows_inplace(array, threads=3, min_elements=0)
    queue.put(array.tolist())


def test_a_forked_child_gets_its_own_threads():
    # the parent's pool threads do not exist in a forked child: it must start its own
    sort_rows_inplace(np.zeros((6, 4)), threads=3, min_elements=0)  # the parent's pool
    assert result_of_forked_child(_sort_in_child, "sort") == np.arange(60).reshape(6, 10).tolist()


@pytest.mark.parametrize(
    ("array", "threads", "message"),
    [
        (np.zeros(4), None, "array: expected a 2-D NumPy array, got (4,)"),
        ([[1, 0]], None, "array: expected a 2-D NumPy array, got [[1, 0]]"),
        (np.zeros((2, 2)), 0, "threads: expected an integer >= 1, got 0"),
        (np.zeros((2, 2)), True, "threads: expected an integer >= 1, got True"),
        (np.zeros((2, 2)), 2.0, "threads: expected an integer >= 1, got 2.0"),
    ],
)
def test_bad_input_is_named(array, threads, message):
    with pytest.raises(VireidError) as info:
        sort_rows_inplace(array, threads=threads)
    assert str(info.value) == message
