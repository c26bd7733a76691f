"""Work split into chunks of rows within an element budget.

``rows_per_chunk(per_row, budget) = max(1, budget // max(1, per_row))``: the most rows of
``per_row`` elements each whose chunk stays within ``budget`` elements, and at least one row (a
row is never split). The re-ranking's passes, the evaluation's default query chunk and the
losses' exact recomputation of near pairs size their chunks with it; a chunk size only bounds the
working set, never changes a value.
"""

from __future__ import annotations


def rows_per_chunk(per_row: int, budget: int) -> int:
    """Rows of a chunk whose rows hold ``per_row`` elements: ``budget // per_row``, at least 1
    (an empty row counts as one element)."""
    return max(1, budget // max(1, per_row))
