"""rows_per_chunk (src/reference/chunks.py): rows of a chunk within an element budget."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reference.chunks import rows_per_chunk


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
