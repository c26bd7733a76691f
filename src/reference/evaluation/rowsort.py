"""Each row of a NumPy array sorted in place, the rows shared among threads.

Spec: ``spec/evaluation/metrics.md`` ("Computation", the row sort). The ranking sorts one key
per (query, gallery item) along each row. NumPy's sort is several times faster than torch's on
a CPU for these integer keys, but it runs on one core. It releases the GIL, so
:func:`sort_rows_inplace` hands contiguous blocks of rows to a pool of threads, as many as
torch's intra-op threads (``torch.get_num_threads()``, which a user sets to share a machine).
Each row is sorted by the same NumPy call whichever thread sorts it, so the result is
``array.sort(axis=1)`` whatever the split. Test: ``tests/evaluation/test_rowsort.py``.
"""

from __future__ import annotations

import itertools

import numpy as np

from reference.errors import VireidError
from reference.evaluation.threads import check_threads, executor

#: arrays with fewer elements are sorted on the calling thread (a hand-off costs more)
MIN_PARALLEL_ELEMENTS = 1 << 20


def row_blocks(n_rows: int, parts: int) -> list[slice]:
    """``min(parts, n_rows)`` contiguous slices (at least one) covering ``0..n_rows`` in order,
    their sizes differing by at most one."""
    parts = max(1, min(parts, n_rows))
    bounds = [n_rows * k // parts for k in range(parts + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def sort_rows_inplace(
    array: np.ndarray, threads: int | None = None, min_elements: int = MIN_PARALLEL_ELEMENTS
) -> None:
    """Sort each row of the 2-D ``array`` ascending, in place: ``array.sort(axis=1)``.

    ``threads``: how many threads share the rows (default ``torch.get_num_threads()``), the
    calling thread sorting the first block; below ``min_elements`` elements, or with one
    thread, it sorts them all.
    """
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise VireidError(
            f"array: expected a 2-D NumPy array, got {getattr(array, 'shape', array)!r}"
        )
    threads = check_threads(threads)
    blocks = row_blocks(array.shape[0], threads)
    if len(blocks) == 1 or array.size < min_elements:
        array.sort(axis=1)
        return
    pool = executor("rowsort", len(blocks) - 1)
    futures = [pool.submit(array[b].sort, axis=1) for b in blocks[1:]]
    try:
        array[blocks[0]].sort(axis=1)
    finally:
        for future in futures:
            future.result()  # waits for every block; raises what one raised
