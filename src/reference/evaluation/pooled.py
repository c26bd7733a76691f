"""Galleries drawn from one pool: the per-query values of every draw with one row sort for all.

Spec: ``spec/evaluation/pooled.md``. SYSU-MM01's trials draw their galleries from one pool of
test images; the queries are the same in every trial. :func:`rank_metrics_pooled` equals
``rank_metrics`` gallery by gallery (every figure and per-query value, to the last bit); where
the galleries together hold at least twice the pool (multi-shot) it ranks them through
:class:`PooledScorer`, a fast path beside ``ranking.QueryScorer.fast_chunk`` (the plain formula
is ``rank_metrics`` on ``take_columns(dist, cols)``); otherwise gallery by gallery, their columns
taken together by ``columns.take_columns_each``. Proved by ``tests/evaluation/test_pooled.py``.
"""

from __future__ import annotations

import numpy as np
import torch

from reference.errors import VireidError
from reference.evaluation.columns import check_galleries, take_columns_each
from reference.evaluation.metrics import (
    CMCKind,
    Exclusion,
    RankMetrics,
    as_distmat,
    assemble_metrics,
    check_ids,
    check_settings,
    chunk_rows,
    rank_metrics,
)
from reference.evaluation.ranking import (
    SENTINEL32,
    ChunkValues,
    QueryScorer,
    float32_keys,
    next_slot_equal,
    sort_ranks,
    sort_rows,
)
from reference.evaluation.rowsort import sort_rows_inplace
from reference.evaluation.threads import run_each


def rank_metrics_pooled(
    distmat: torch.Tensor | np.ndarray,
    q_pids: torch.Tensor | np.ndarray,
    g_pids: torch.Tensor | np.ndarray,
    q_camids: torch.Tensor | np.ndarray,
    g_camids: torch.Tensor | np.ndarray,
    galleries: list[np.ndarray],
    *,
    exclusion: Exclusion = "sysu",
    cmc_kind: CMCKind = "identity",
    max_rank: int = 20,
    chunk_size: int | None = None,
) -> list[RankMetrics]:
    """``[rank_metrics(distmat[:, cols], ..., g_pids[cols], ..., g_camids[cols]) for cols in
    galleries]``: galleries drawn from one pool (the columns of ``distmat``), same figures.

    float32 distances of galleries that together are at least twice the pool are ranked with
    one row sort for all (``PooledScorer``); otherwise gallery by gallery.
    """
    check_settings(exclusion, cmc_kind, max_rank, chunk_size)
    dist = as_distmat(distmat)
    n_query, n_pool = dist.shape
    device = dist.device
    qp, gp, qc, gc = check_ids(q_pids, g_pids, q_camids, g_camids, n_query, n_pool, device)
    cols = [torch.from_numpy(np.asarray(c, dtype=np.int64)).to(device) for c in galleries]
    check_galleries(cols, n_pool)
    pooled = dist.dtype != torch.float64 and PooledScorer.applies(n_pool, cols)
    # on the CPU the independent pieces run side by side on torch's threads (threads.md), each
    # on one thread of torch's own: the pooled scorer's chunks of queries, or the galleries one
    # by one; the same figures
    threads = None if device.type == "cpu" else 1
    if pooled:
        chunk = chunk_rows(chunk_size, n_query, n_pool)
        if chunk_size is None and threads is None:
            chunk = balanced_rows(n_query, chunk, torch.get_num_threads())
        scorer = PooledScorer(gp, gc, cols, exclusion, cmc_kind)

        def score_chunk(s: int) -> list[ChunkValues]:
            return scorer.chunk(dist[s : s + chunk], qp[s : s + chunk], qc[s : s + chunk])

        parts = run_each(score_chunk, range(0, n_query, chunk), threads, "chunks", inner_threads=1)
    else:
        taken = take_columns_each(dist, cols)

    def score(t: int) -> RankMetrics:
        try:
            if pooled:
                return assemble_metrics([p[t] for p in parts], exclusion, cmc_kind, max_rank)
            c = cols[t]
            return rank_metrics(
                taken[t], qp, gp[c], qc, gc[c],
                exclusion=exclusion, cmc_kind=cmc_kind, max_rank=max_rank, chunk_size=chunk_size,
            )  # fmt: skip
        except VireidError as exc:
            raise VireidError(f"galleries[{t}]: {exc}") from exc

    # pooled, a gallery's figures only gather the chunks' values
    return run_each(score, range(len(cols)), 1 if pooled else threads, "galleries", inner_threads=1)


def balanced_rows(n_rows: int, rows: int, threads: int) -> int:
    """Rows per chunk, at most ``rows``: ``n_rows`` cut into as many chunks as ``rows`` needs,
    rounded up to a multiple of ``threads`` (at most one chunk per row), the rows shared out as
    evenly as whole rows allow. Side by side, no thread then waits long while another ranks a
    last chunk alone."""
    rows = max(1, min(rows, n_rows))
    chunks = -(-n_rows // rows)
    chunks = min(n_rows, -(-chunks // threads) * threads)
    return -(-n_rows // chunks)


class PooledScorer:
    """Per-query values of several galleries drawn from one pool, with one row sort for all.

    ``trials[t]`` holds the pool columns of gallery ``t`` in that gallery's order. For every
    ``t``, :meth:`chunk` returns what ``QueryScorer(g_pids[trials[t]], g_camids[trials[t]],
    rule, kind).fast_chunk(dist[:, trials[t]], ...)`` returns, exactly (valid queries), from
    float32 distances to the whole pool. Test:
    ``tests/evaluation/test_pooled.py::test_pooled_scorer_equals_per_gallery_scorer``.

    How. The exclusion rules depend on a (query, item) pair only, never on the draw, so the
    int32 keys (``float32_keys``, excluded items at ``SENTINEL32``) are computed once over the
    pool. Each row is sorted once by ``(key, pool column)`` (one int64 word, ``key * 2**32 +
    column``). Gallery
    membership of the sorted items, counted cumulatively along the row, gives for every
    threshold ``X`` the number of a gallery's items with a key below ``X`` (several galleries
    share an int64 word, one bit field each, so one cumulative sum serves several draws). A
    positive's rank is that count at its key, plus one, plus -- where another pool item shares
    its key -- the gallery's items at that key with a smaller gallery index (counted on the
    row, as in ``fast_chunk``). The identity rank counts the distinct identities among the
    gallery's items sorted before the first positive's key: read from the first ``HEAD``
    sorted items of the row, and for the rows whose first positive lies deeper, or shares its
    key, from the gallery's keys of that row as ``fast_chunk`` does.
    """

    #: sorted pool positions read for the identity rank before falling back to a row's keys
    HEAD = 256
    #: sorted slots read from a positive's bucket before falling back to a row's keys
    RUN = 8
    #: bits of a bucket at most (the word's room decides below it; tests ask for fewer to make
    #: buckets coarse)
    KEY_BITS = 63

    def __init__(
        self,
        g_pids: torch.Tensor,
        g_camids: torch.Tensor,
        trials: list[torch.Tensor],
        rule: str,
        kind: str,
        key_bits: int = KEY_BITS,
    ):
        self.rule, self.kind = rule, kind
        self.pool = QueryScorer(g_pids, g_camids, rule, kind)
        self.trials = trials
        self.scorers = [QueryScorer(g_pids[c], g_camids[c], rule, kind) for c in trials]
        device = g_pids.device
        n_pool = g_pids.numel()
        self.index = torch.arange(n_pool, device=device)
        # each pool column's place among its identity's columns: its slot in the positives of a
        # query of that identity (``QueryScorer.positives`` lists them in this order)
        self.slot = torch.empty_like(self.index)
        order = self.pool.by_identity
        self.slot[order] = self.index - self.pool.identity_start[self.pool.g_labels[order]]
        # each pool column's index in each gallery; n_pool (above every index) if absent
        self.positions = torch.full((len(trials), n_pool), n_pool, device=device)
        for t, cols in enumerate(trials):
            self.positions[t, cols] = torch.arange(cols.numel(), device=device)
        # a gallery's count never exceeds its size: fields of that many bits, packed per word
        self.field = max(int(c.numel()) for c in trials).bit_length()
        self.per_word = 64 // self.field
        words = -(-len(trials) // self.per_word)
        self.members = torch.zeros(words, n_pool, dtype=torch.int64, device=device)
        for t, cols in enumerate(trials):
            one = torch.ones_like(cols) << (self.field * (t % self.per_word))
            self.members[t // self.per_word].index_add_(0, cols, one)
        # sort words ``bucket << column_bits | column``: int32 where the columns leave the bucket
        # at least 16 bits, else int64
        self.column_bits = max(1, (n_pool - 1).bit_length())
        self.word = torch.int32 if self.column_bits <= 15 else torch.int64
        bits = (31 if self.word == torch.int32 else 63) - self.column_bits
        #: the largest bucket: every kept key's bucket lies below it (``cut``)
        self.top = (1 << min(bits, key_bits)) - 1
        self.words = self.index.to(self.word)

    @staticmethod
    def applies(n_pool: int, trials: list[torch.Tensor]) -> bool:
        """Worth it where the galleries together hold at least twice the pool (the pool is
        sorted once with keys twice a gallery key's size; each gallery would be sorted). A
        gallery must not repeat a pool column (a repeat ties with itself unseen)."""
        if sum(int(c.numel()) for c in trials) < 2 * n_pool:
            return False
        return all(torch.unique(c).numel() == c.numel() for c in trials)

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
        evaluation/test_pooled.py::test_pack_numpy_equals_the_formula``)."""
        if keys.device.type == "cpu":
            packed = self.pack_numpy(keys, low, shift)
            if packed is not None:
                return packed
        bucket = self.bucket_of(keys, low, shift)
        return torch.add(self.words, bucket.to(self.word), alpha=1 << self.column_bits)

    def pack_numpy(self, keys: torch.Tensor, low: torch.Tensor, shift: torch.Tensor):
        """:meth:`pack` in int32 NumPy passes, in place, where they cannot overflow (int32
        words, no row's ``low`` below 0, so ``key - low`` fits); else None."""
        if self.word != torch.int32 or int(low.min()) < 0:
            return None
        words = np.subtract(keys.numpy(), low.numpy()[:, None])
        np.right_shift(words, shift.numpy().astype(np.int32)[:, None], out=words)
        np.minimum(words, self.top, out=words)
        np.left_shift(words, self.column_bits, out=words)
        np.bitwise_or(words, self.words.numpy(), out=words)
        return torch.from_numpy(words)

    def sorted_counts(self, packed: torch.Tensor):
        """``(packed, column, counts)``: each row's words (:meth:`pack`) sorted, the pool
        column of each sorted slot, and per word of ``members`` the members among the first
        ``s`` slots (``(c, n_pool + 1)``). :meth:`sorted_counts_numpy` on a CPU (sorting
        ``packed`` in place), else :meth:`sorted_counts_torch`: the same values (``tests/
        evaluation/test_pooled.py::test_sorted_counts_numpy_equals_torch``)."""
        if packed.device.type == "cpu":
            return self.sorted_counts_numpy(packed)
        return self.sorted_counts_torch(packed)

    def sorted_counts_torch(self, packed: torch.Tensor):
        """:meth:`sorted_counts` with torch's kernels, on any device."""
        packed = torch.sort(packed).values
        column = (packed & ((1 << self.column_bits) - 1)).to(torch.int64)
        counts = [torch.nn.functional.pad(w[column].cumsum(dim=1), (1, 0)) for w in self.members]
        return packed, column, counts

    def sorted_counts_numpy(self, packed: torch.Tensor):
        """:meth:`sorted_counts` through NumPy (CPU), several times faster than torch's CPU
        kernels for these passes; ``packed`` is sorted in place."""
        c, n_pool = packed.shape
        words = packed.numpy()
        sort_rows_inplace(words)
        column = np.bitwise_and(words, (1 << self.column_bits) - 1, dtype=np.intp)
        counts = []
        for word in self.members.numpy():
            total = np.empty((c, n_pool + 1), dtype=np.int64)
            total[:, 0] = 0
            np.cumsum(np.take(word, column), axis=1, out=total[:, 1:])
            counts.append(torch.from_numpy(total))
        return packed, torch.from_numpy(column), counts

    def chunk(
        self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor
    ) -> list[ChunkValues]:
        """``ChunkValues`` of each gallery for this chunk of queries (float32 ``dist``)."""
        keys = float32_keys(dist.contiguous())
        high = keys.amax(dim=1)  # above every kept key (the excluded ones are set next)
        pool_present, pool_item = self.pool.positives(q_pids)
        if self.rule == "sysu":
            self.pool.skip_camera(keys, q_camids, SENTINEL32)
        elif self.rule == "same-id-same-camera":
            keys[self.pool.same_camera(pool_present, pool_item, q_camids)] = SENTINEL32
        low, step = self.cut(keys, high)
        packed, column, counts = self.sorted_counts(self.pack(keys, low, step))
        n_pool = packed.shape[1]
        head = min(self.HEAD, n_pool)
        head_columns = column[:, :head].to(torch.int64)
        head_labels = self.pool.g_labels[head_columns]
        head_members = self.members[:, head_columns]  # (words, c, head)
        # every pool positive once (a gallery's positives are among them): the first sorted
        # slot of its bucket, each word's member counts before that slot, and whether another
        # pool item shares its bucket (the next slot's)
        pool_keys = torch.where(pool_present, keys.gather(1, pool_item), SENTINEL32)
        pool_bucket = self.bucket_of(pool_keys, low, step)
        pool_at = torch.searchsorted(packed, (pool_bucket << self.column_bits).to(self.word))
        pool_lower = [w.gather(1, pool_at) for w in counts]
        pool_shared = next_slot_equal(packed, pool_at, pool_bucket, shift=self.column_bits)
        out = []
        for t, (cols, scorer) in enumerate(zip(self.trials, self.scorers, strict=True)):
            word, shift = t // self.per_word, self.field * (t % self.per_word)
            present, item = scorer.positives(q_pids)
            # each of the gallery's positives is the pool positive in this slot of its row
            slot = self.slot[cols[item]]
            pos_keys = torch.where(present, pool_keys.gather(1, slot), SENTINEL32)
            kept = pos_keys != SENTINEL32
            at = pool_at.gather(1, slot)
            lower = (pool_lower[word].gather(1, slot) >> shift) & ((1 << self.field) - 1)
            ranks = lower + 1
            shared = kept & pool_shared.gather(1, slot)
            if bool(shared.any()):  # other pool items in its bucket: count those before it
                r, a = shared.nonzero(as_tuple=True)
                ranks[r, a] += self.ties_before(
                    t, packed, keys, r, at[r, a], pos_keys[r, a], item[r, a], (low, step)
                )
            ranks, kept_sorted, order = sort_ranks(ranks, kept)
            if self.kind == "standard":
                first_rank = ranks[:, 0]
            else:
                lead = order[:, :1]
                first_rank = self._identity_rank(
                    keys, head_labels, (head_members[word] >> shift) & 1, cols, scorer,
                    pos_keys.gather(1, lead), item.gather(1, lead), at.gather(1, lead)[:, 0],
                    shared.gather(1, lead)[:, 0], kept_sorted[:, 0],
                )  # fmt: skip
            out.append((*scorer.values(ranks, kept_sorted, first_rank), q_pids))
        return out

    def ties_before(
        self,
        t: int,
        packed: torch.Tensor,
        keys: torch.Tensor,
        rows: torch.Tensor,
        start: torch.Tensor,
        key: torch.Tensor,
        item: torch.Tensor,
        cut: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """Per positive (its row of the chunk, the first sorted slot of its bucket, its
        ``key``, its index ``item`` in gallery ``t``): gallery ``t``'s items in its bucket that
        rank before it, a smaller key or the same key and a smaller gallery index. ``cut`` is
        ``(low, shift)`` of the chunk's rows (:meth:`buckets`).

        The items of a bucket follow one another in the sorted row from ``start``: read slot
        by slot, every positive at once, while a positive's bucket goes on, up to ``RUN``
        slots; a positive whose bucket holds more is counted on its row's keys.
        """
        n_pool = packed.shape[1]
        position = self.positions[t]
        mask = (1 << self.column_bits) - 1
        bucket = packed[rows, start] >> self.column_bits
        count = torch.zeros_like(item)
        active = torch.arange(item.numel(), device=item.device)
        for offset in range(self.RUN):
            slot = start[active] + offset
            row = rows[active]
            word = packed[row, slot.clamp_max(n_pool - 1)]
            same = (slot < n_pool) & ((word >> self.column_bits) == bucket[active])
            column = (word & mask).to(torch.int64)
            at, other = position[column], keys[row, column]
            k = key[active]
            earlier = (other < k) | ((other == k) & (at < item[active]))
            count[active] += (same & earlier & (at < n_pool)).to(count.dtype)
            active = active[same]
            if active.numel() == 0:
                return count
        # buckets of more than RUN slots: counted on the rows' keys in the gallery's order
        r = rows[active]
        row_keys = keys[r][:, self.trials[t]]
        low, shift = (x[r] for x in cut)
        k, i = key[active][:, None], item[active][:, None]
        same = self.bucket_of(row_keys, low, shift) == bucket[active][:, None]
        index = torch.arange(row_keys.shape[1], device=item.device)[None]
        count[active] = (same & ((row_keys < k) | ((row_keys == k) & (index < i)))).sum(dim=1)
        return count

    def _identity_rank(
        self, keys, head_labels, head_member, cols, scorer,
        lead_key, lead_item, start, lead_shared, valid,
    ) -> torch.Tensor:  # fmt: skip
        """1 + the identities sorted before the first positive (ties by gallery index), as
        ``fast_chunk`` counts them; ``start`` is the first sorted slot at the lead's key."""
        deep = valid & ((start > head_labels.shape[1]) | lead_shared)
        width = int(torch.where(deep | ~valid, 0, start).max())  # slots read from the head
        before = head_member[:, :width].bool() & (
            torch.arange(width, device=keys.device)[None] < start[:, None]
        )
        labels = sort_rows(torch.where(before, head_labels[:, :width], -1))
        new = (labels >= 0) & torch.cat(
            [torch.ones_like(labels[:, :1], dtype=torch.bool), labels[:, 1:] != labels[:, :-1]],
            dim=1,
        )
        first_rank = new.sum(dim=1) + 1
        rows = deep.nonzero()[:, 0]
        if rows.numel():
            # the gallery's keys of these rows, and fast_chunk's count
            first_rank[rows] = scorer.identity_rank_of_keys(
                keys[rows][:, cols], lead_key[rows], lead_item[rows], valid[rows]
            )
        return first_rank
