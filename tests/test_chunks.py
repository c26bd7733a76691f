"""rows_per_chunk and balanced_rows (src/reference/chunks.py): rows of a chunk within an element
budget, and chunks shared out among threads."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from reference.chunks import balanced_rows, rows_per_chunk


def test_rows_per_chunk_by_hand():
    assert rows_per_chunk(10, 100) == 10
    assert rows_per_chunk(30, 100) == 3  # rounded down: 3 rows of 30 stay within 100
    assert rows_per_chunk(101, 100) == 1  # never less than one row
    assert rows_per_chunk(0, 100) == 100  # an empty row counts as one element
    assert rows_per_chunk(5, 0) == 1


@given(per_row=st.integers(0, 10**6), budget=st.integers(0, 10**8))
def test_the_largest_row_count_within_the_budget(per_row, budget):
    rows = rows_per_chunk(per_row, budget)
    width = max(1, per_row)
    assert rows >= 1
    # within the budget unless one row alone exceeds it; one more row would not fit
    assert rows * width <= budget or rows == 1
    assert (rows + 1) * width > budget


@settings(max_examples=200, deadline=None)
@given(n_rows=st.integers(1, 5000), rows=st.integers(1, 6000), threads=st.integers(1, 32))
def test_balanced_rows_stay_within_the_chunk_and_share_out_evenly(n_rows, rows, threads):
    got = balanced_rows(n_rows, rows, threads)
    assert 1 <= got <= min(rows, n_rows)
    # the definition: the chunks ``rows`` needs, rounded up to a multiple of ``threads`` (at
    # most one per row), and the rows of that many chunks
    needed = math.ceil(n_rows / min(rows, n_rows))
    count = min(n_rows, math.ceil(needed / threads) * threads)
    assert got == math.ceil(n_rows / count)
    assert math.ceil(n_rows / got) >= needed


def test_balanced_rows_of_sysu_multi_shot():
    # 3,803 queries, the default 623 rows (7 chunks): 8 of 476 on two threads, 16 of 238 on 16,
    # 7 of 544 on one
    assert [balanced_rows(3803, 623, t) for t in (2, 16, 1)] == [476, 238, 544]
