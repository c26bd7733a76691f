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
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from reference.errors import VireidError

#: arrays with fewer elements are sorted on the calling thread (a hand-off costs more)
MIN_PARALLEL_ELEMENTS = 1 << 20

_lock = threading.Lock()
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, workers, pool)


def _executor(workers: int) -> ThreadPoolExecutor:
    """This process's pool of ``workers`` threads; a new one after ``fork`` (a child has none
    of its parent's threads) or when the count changes. A replaced pool is not shut down: a
    caller on another thread may still be using it; its threads end once nothing refers to it.
    """
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] != workers:
            _pool = (os.getpid(), workers, ThreadPoolExecutor(workers, "vireid-rowsort"))
        return _pool[2]


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
    threads = torch.get_num_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise VireidError(f"threads: expected an integer >= 1, got {threads!r}")
    blocks = row_blocks(array.shape[0], threads)
    if len(blocks) == 1 or array.size < min_elements:
        array.sort(axis=1)
        return
    pool = _executor(len(blocks) - 1)
    futures = [pool.submit(array[b].sort, axis=1) for b in blocks[1:]]
    try:
        array[blocks[0]].sort(axis=1)
    finally:
        for future in futures:
            future.result()  # waits for every block; raises what one raised
