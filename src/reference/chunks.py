"""Work split into chunks of rows within an element budget.

``rows_per_chunk(per_row, budget) = max(1, budget // max(1, per_row))``: the most rows of
``per_row`` elements each whose chunk stays within ``budget`` elements, and at least one row (a
row is never split). The re-ranking's passes, the evaluation's default query chunk and the
losses' exact recomputation of near pairs size their chunks with it; a chunk size only bounds the
working set, never changes a value.

``balanced_rows(n_rows, rows, threads)``: the chunk size for chunks that run side by side, one
per thread (the evaluation's chunks of queries on the CPU): as many chunks as ``rows`` needs,
rounded up to a multiple of ``threads``, so no thread waits long while another works alone.
"""

from __future__ import annotations


def rows_per_chunk(per_row: int, budget: int) -> int:
    """Rows of a chunk whose rows hold ``per_row`` elements: ``budget // per_row``, at least 1
    (an empty row counts as one element)."""
    return max(1, budget // max(1, per_row))


def balanced_rows(n_rows: int, rows: int, threads: int) -> int:
    """Rows per chunk, at most ``rows``: ``n_rows`` cut into as many chunks as ``rows`` needs,
    rounded up to a multiple of ``threads`` (at most one chunk per row), the rows shared out as
    evenly as whole rows allow. Side by side, no thread then waits long while another ranks a
    last chunk alone."""
    rows = max(1, min(rows, n_rows))
    chunks = -(-n_rows // rows)
    chunks = min(n_rows, -(-chunks // threads) * threads)
    return -(-n_rows // chunks)
