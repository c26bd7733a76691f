"""Sort words of bucketed keys: the pooled scorer's one row sort, and member counts along it.

Spec: ``spec/evaluation/buckets.md``. Each item of a row of int32 keys (excluded items at
``SENTINEL32``) gets one word, ``bucket << column_bits | column``: its bucket, a monotone cut of
its key (:meth:`BucketSort.cut`, :meth:`BucketSort.bucket_of`), above its pool column. Sorting
the words sorts the row by bucket; items of one bucket are told apart by their keys where it
matters (``pooled.PooledScorer``). :meth:`BucketSort.pack_numpy` and
:meth:`BucketSort.counts_at_numpy` are CPU fast paths beside the plain torch formulas,
proved equal by ``tests/evaluation/test_buckets.py``.
"""

from __future__ import annotations

import numpy as np
import torch

from reference.checks import check_integer
from reference.chunks import rows_per_chunk
from reference.evaluation.ranking import sort_rows
from reference.evaluation.rowsort import sort_rows_inplace


class BucketSort:
    """The words and member counts of rows of a pool of ``members.shape[1]`` items.

    ``members`` ``(words, n_pool)`` int64: per word, each pool item's membership of several
    galleries as bit fields (``pooled.PooledScorer``); :meth:`counts_at` sums them along the
    sorted rows. The words are int32 where the columns leave a bucket at least 16 bits (pools of
    up to 32,768 items), else int64; a bucket has at most ``key_bits`` bits.
    """

    #: bits of a bucket at most (the word's room decides below it; tests ask for fewer to make
    #: buckets coarse)
    KEY_BITS = 63
    #: bytes of member sums per block of rows in :meth:`counts_at_numpy`
    BLOCK_BYTES = 1 << 20

    def __init__(self, members: torch.Tensor, key_bits: int = KEY_BITS):
        check_integer(key_bits, "key_bits", low=1)
        self.members = members
        n_pool = members.shape[1]
        self.column_bits = max(1, (n_pool - 1).bit_length())
        self.word = torch.int32 if self.column_bits <= 15 else torch.int64
        bits = (31 if self.word == torch.int32 else 63) - self.column_bits
        #: the largest bucket: every kept key's bucket lies below it (``cut``)
        self.top = (1 << min(bits, key_bits)) - 1
        self.columns = torch.arange(n_pool, device=members.device).to(self.word)

    def cut(self, keys: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low, shift)`` of each row of int32 ``keys`` (excluded at ``SENTINEL32``): an
        item's bucket is ``min((key - low) >> shift, top)`` (:meth:`bucket_of`), ``low`` the
        row's smallest kept key and ``shift`` the least that keeps every kept key (all at most
        ``high``, ``(c,)``) below ``top``. Monotone in the key: a smaller bucket holds smaller
        keys, the excluded items' bucket (``SENTINEL32`` is above every kept key) is at least
        every kept item's, and the items of one bucket are told apart by their keys."""
        low = keys.amin(dim=1)
        span = (high.to(torch.int64) - low.to(torch.int64)).clamp_min(0)
        shift = torch.zeros_like(span)
        while True:
            over = (span >> shift) >= self.top
            if not bool(over.any()):
                return low, shift
            shift += over

    def bucket_of(self, keys: torch.Tensor, low: torch.Tensor, shift: torch.Tensor):
        """The bucket (int64) of each of the rows' int32 ``keys`` (:meth:`cut`)."""
        return ((keys.to(torch.int64) - low[:, None]) >> shift[:, None]).clamp_max(self.top)

    def pack(self, keys: torch.Tensor, low: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Each item's sort word ``bucket << column_bits | column`` (``self.word``): the plain
        formula, or on a CPU :meth:`pack_numpy` where it applies (the same words, ``tests/
        evaluation/test_buckets.py::test_pack_numpy_equals_the_formula``)."""
        if keys.device.type == "cpu":
            packed = self.pack_numpy(keys, low, shift)
            if packed is not None:
                return packed
        bucket = self.bucket_of(keys, low, shift)
        return torch.add(self.columns, bucket.to(self.word), alpha=1 << self.column_bits)

    def pack_numpy(self, keys: torch.Tensor, low: torch.Tensor, shift: torch.Tensor):
        """:meth:`pack` in int32 NumPy passes, in place, where they cannot overflow (int32
        words, no row's ``low`` below 0, so ``key - low`` fits); else None."""
        if self.word != torch.int32 or int(low.min()) < 0:
            return None
        words = np.subtract(keys.numpy(), low.numpy()[:, None])
        np.right_shift(words, shift.numpy().astype(np.int32)[:, None], out=words)
        np.minimum(words, self.top, out=words)
        np.left_shift(words, self.column_bits, out=words)
        np.bitwise_or(words, self.columns.numpy(), out=words)
        return torch.from_numpy(words)

    def sort(self, packed: torch.Tensor, limit: int | None = None) -> torch.Tensor:
        """Each row of words sorted: on a CPU in place, by NumPy's row sort (``rowsort.py``).
        With ``limit`` only the first ``limit`` words of each row are sorted (the caller knows
        the rest to be in order already, each above every word before it)."""
        head = packed[:, :limit]
        if packed.device.type != "cpu":
            packed[:, :limit] = torch.sort(head).values
        else:
            sort_rows_inplace(head.numpy())
        return packed

    def column_of(self, packed: torch.Tensor) -> torch.Tensor:
        """The pool column (int64) of each word."""
        return (packed & ((1 << self.column_bits) - 1)).to(torch.int64)

    def counts_at(self, packed: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """``(words, c, k)``: per word of ``members``, the members among the first ``at[i, j]``
        slots of sorted row ``i`` (``at`` ``(c, k)``, each in ``[0, n_pool]``).
        :meth:`counts_at_numpy` on a CPU, else :meth:`counts_at_torch`: the same values."""
        if packed.device.type == "cpu":
            return self.counts_at_numpy(packed, at)
        return self.counts_at_torch(packed, at)

    def counts_at_torch(self, packed: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """:meth:`counts_at` with torch's kernels, on any device: the members of the sorted
        slots summed cumulatively along each row, read at ``at``."""
        column = self.column_of(packed)
        return torch.stack(
            [torch.nn.functional.pad(w[column].cumsum(dim=1), (1, 0)).gather(1, at)
             for w in self.members]
        )  # fmt: skip

    def counts_at_numpy(self, packed: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """:meth:`counts_at` through NumPy (CPU), several times faster than torch's kernels for
        these passes, where each row's ``at`` ascends (else :meth:`counts_at_torch`). The
        members of the slots between one ``at`` and the next are summed (``np.add.reduceat``:
        one read of the gathered members, no running sum written back) and those sums summed
        along the row. In blocks of rows of about ``BLOCK_BYTES`` of members, every block
        written into the same buffers (fresh memory for each pass over a whole chunk cost as
        much again in page faults)."""
        if at.shape[1] > 1 and bool((at[:, 1:] < at[:, :-1]).any()):
            return self.counts_at_torch(packed, at)
        words, index = packed.numpy(), at.numpy()
        c, n_pool = words.shape
        block = min(c, rows_per_chunk(n_pool * 8, self.BLOCK_BYTES))
        column = np.empty((block, n_pool), dtype=np.intp)
        taken = np.zeros(block * n_pool + 1, dtype=np.int64)  # a last 0: reduceat may start there
        out = np.empty((self.members.shape[0], *index.shape), dtype=np.int64)
        for s in range(0, c, block):
            k = min(block, c - s)
            rows = slice(s, s + k)
            np.bitwise_and(words[rows], (1 << self.column_bits) - 1, out=column[:k])
            # each row's boundaries in the flat block: its start, then its ``at``
            starts = np.arange(k)[:, None] * n_pool
            bounds = np.concatenate([starts, starts + index[rows]], axis=1)
            empty = bounds[:, 1:] == bounds[:, :-1]
            for w, word in enumerate(self.members.numpy()):
                # mode "clip" writes straight into ``taken``; every column lies in the pool
                np.take(word, column[:k], out=taken[: k * n_pool].reshape(k, n_pool), mode="clip")
                sums = np.add.reduceat(taken, bounds.ravel()).reshape(k, -1)[:, :-1]
                sums[empty] = 0  # reduceat gives an item, not 0, where a bound repeats
                np.cumsum(sums, axis=1, out=out[w, rows])
        return torch.from_numpy(out)


def sort_with_slots(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of int32 ``keys`` sorted, and the slot each sorted key came from (equal keys in
    slot order): ``torch.sort(keys, stable=True)``, through one int64 word per key
    (``key * 2**32 + slot``) and NumPy's row sort (``sort_rows``)."""
    slots = torch.arange(keys.shape[1], device=keys.device)
    words = sort_rows(torch.add(slots, keys.to(torch.int64), alpha=1 << 32))
    return (words >> 32).to(torch.int32), words & 0xFFFFFFFF
