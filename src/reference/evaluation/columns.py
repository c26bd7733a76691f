"""The columns of distance matrices: one gallery's, or several galleries' at once.

Spec: ``spec/evaluation/columns.md``. A gallery drawn from a pool of items is a list of the
pool's columns; its distances are those columns of the queries x pool matrix. :func:`take_columns`
is the plain column index; :func:`take_columns_each` takes every gallery's columns in one pass
over the matrix (proved equal by ``tests/evaluation/test_columns.py``).
"""

from __future__ import annotations

import numpy as np
import torch

from reference.chunks import rows_per_chunk
from reference.errors import VireidError
from reference.evaluation.threads import run_each


def take_columns(dist: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``dist[:, cols]`` (a copy); on CPU through NumPy's ``take``, several times faster."""
    if dist.device.type == "cpu":
        return torch.from_numpy(np.take(dist.numpy(), cols.numpy(), axis=1))
    return dist[:, cols]


def check_galleries(galleries: list[torch.Tensor], n_pool: int) -> None:
    """Each gallery a non-empty 1-D tensor of pool columns in ``[0, n_pool)``, else an error
    naming it (``galleries[t]: ...``)."""
    for t, c in enumerate(galleries):
        if c.dim() != 1 or c.numel() == 0 or int(c.min()) < 0 or int(c.max()) >= n_pool:
            raise VireidError(
                f"galleries[{t}]: expected a non-empty 1-D array of columns in [0, {n_pool})"
            )


#: bytes of ``dist`` rows read per block by :func:`take_columns_each`
TAKE_BLOCK_BYTES = 1 << 20


def take_columns_each(
    dist: torch.Tensor,
    galleries: list[torch.Tensor],
    block_bytes: int = TAKE_BLOCK_BYTES,
    threads: int | None = None,
) -> list[torch.Tensor]:
    """``[take_columns(dist, cols) for cols in galleries]``, the same values.

    On CPU the rows are read block by block (``block_bytes`` of ``dist`` each, about a core's
    L2 cache) and every gallery takes its columns from a block while it is in cache: the
    distance matrix is read from memory once instead of once per gallery (a gallery's columns
    are scattered over the whole row, so one take touches nearly every cache line of it). The
    blocks are shared among ``threads`` threads (default ``torch.get_num_threads()``; NumPy's
    take releases the GIL), each writing its own rows of the results.
    Test: ``tests/evaluation/test_columns.py::test_take_columns_each_equals_take_columns``.
    """
    n_rows, n_pool = dist.shape
    check_galleries(galleries, n_pool)
    if dist.device.type != "cpu":
        return [dist[:, cols] for cols in galleries]
    source = dist.numpy()
    index = [cols.numpy() for cols in galleries]
    out = [np.empty((n_rows, i.size), dtype=source.dtype) for i in index]
    block = rows_per_chunk(n_pool * source.itemsize, block_bytes)

    def take_block(s: int) -> None:
        rows = source[s : s + block]
        for i, o in zip(index, out, strict=True):
            # mode "clip" writes straight into ``out`` ("raise" would buffer); the columns were
            # checked to lie in [0, n_pool) (check_galleries), so nothing is clipped
            np.take(rows, i, axis=1, out=o[s : s + block], mode="clip")

    run_each(take_block, range(0, n_rows, block), threads, "take")
    return [torch.from_numpy(o) for o in out]
