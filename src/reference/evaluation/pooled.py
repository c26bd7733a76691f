"""Galleries drawn from one pool: the per-query values of every draw with one row sort for all.

Spec: ``spec/evaluation/pooled.md``. SYSU-MM01's trials draw their galleries from one pool of
test images; the queries are the same in every trial. :func:`rank_metrics_pooled` equals
``rank_metrics`` gallery by gallery (every figure and per-query value, to the last bit); where
the galleries together hold at least twice the pool (multi-shot) it ranks them through
:class:`PooledScorer`, a fast path beside ``ranking.QueryScorer.fast_chunk`` (the plain formula
is ``rank_metrics`` on ``take_columns(dist, cols)``); otherwise gallery by gallery, their columns
taken together by :func:`take_columns_each`. Proved by ``tests/evaluation/test_pooled.py``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from reference.chunks import rows_per_chunk
from reference.errors import VireidError
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
    SYSU_QUERY_CAMERA,
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
    Test: ``tests/evaluation/test_pooled.py::test_take_columns_each_equals_take_columns``.
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
    #: sorted slots read from a positive's key for its ties before falling back to a row's keys
    RUN = 8

    def __init__(
        self,
        g_pids: torch.Tensor,
        g_camids: torch.Tensor,
        trials: list[torch.Tensor],
        rule: str,
        kind: str,
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

    @staticmethod
    def applies(n_pool: int, trials: list[torch.Tensor]) -> bool:
        """Worth it where the galleries together hold at least twice the pool (the pool is
        sorted once with keys twice a gallery key's size; each gallery would be sorted). A
        gallery must not repeat a pool column (a repeat ties with itself unseen)."""
        if sum(int(c.numel()) for c in trials) < 2 * n_pool:
            return False
        return all(torch.unique(c).numel() == c.numel() for c in trials)

    def sorted_counts(self, keys: torch.Tensor):
        """``(packed, column, counts)``: each row's ``key * 2**32 + column`` sorted, the pool
        column of each sorted slot, and per word the members among the first ``s`` slots
        (``(c, n_pool + 1)``). :meth:`sorted_counts_numpy` on a little-endian CPU, else
        :meth:`sorted_counts_torch`: the same values (``tests/evaluation/test_pooled.py::
        test_sorted_counts_numpy_equals_torch``)."""
        if keys.device.type == "cpu" and sys.byteorder == "little":
            return self.sorted_counts_numpy(keys)
        return self.sorted_counts_torch(keys)

    def sorted_counts_torch(self, keys: torch.Tensor):
        """:meth:`sorted_counts` with torch's kernels, on any device."""
        packed = torch.sort(torch.add(self.index, keys.to(torch.int64), alpha=1 << 32)).values
        column = packed & 0xFFFFFFFF
        counts = [torch.nn.functional.pad(w[column].cumsum(dim=1), (1, 0)) for w in self.members]
        return packed, column, counts

    def sorted_counts_numpy(self, keys: torch.Tensor):
        """:meth:`sorted_counts` through NumPy (CPU, little-endian), several times faster than
        torch's CPU kernels for these passes: the int64 word of an (int32 column, int32 key)
        pair is ``key * 2**32 + column``, so two strided writes pack it, and after the sort the
        columns are read in place."""
        c, n_pool = keys.shape
        pairs = np.empty((c, n_pool, 2), dtype=np.int32)
        pairs[:, :, 0] = np.arange(n_pool, dtype=np.int32)
        pairs[:, :, 1] = keys.numpy()
        packed = pairs.view(np.int64)[:, :, 0]
        sort_rows_inplace(packed)
        column = pairs[:, :, 0].astype(np.intp)
        counts = []
        for word in self.members.numpy():
            total = np.empty((c, n_pool + 1), dtype=np.int64)
            total[:, 0] = 0
            np.cumsum(np.take(word, column), axis=1, out=total[:, 1:])
            counts.append(torch.from_numpy(total))
        return torch.from_numpy(packed), torch.from_numpy(column), counts

    def chunk(
        self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor
    ) -> list[ChunkValues]:
        """``ChunkValues`` of each gallery for this chunk of queries (float32 ``dist``)."""
        keys = float32_keys(dist.contiguous())
        pool_present, pool_item = self.pool.positives(q_pids)
        if self.rule == "sysu":
            rows = (q_camids == SYSU_QUERY_CAMERA).nonzero()
            keys[rows, self.pool.g_skipped[None]] = SENTINEL32
        elif self.rule == "same-id-same-camera":
            keys[self.pool.same_camera(pool_present, pool_item, q_camids)] = SENTINEL32
        packed, column, counts = self.sorted_counts(keys)
        n_pool = packed.shape[1]
        head = min(self.HEAD, n_pool)
        head_columns = column[:, :head].to(torch.int64)
        head_labels = self.pool.g_labels[head_columns]
        head_members = self.members[:, head_columns]  # (words, c, head)
        # every pool positive once (a gallery's positives are among them): the first sorted
        # slot at its key, each word's member counts before that slot, and whether another
        # pool item shares its key (the next slot's key)
        pool_keys = torch.where(pool_present, keys.gather(1, pool_item), SENTINEL32)
        pool_at = torch.searchsorted(packed, pool_keys.to(torch.int64) * (1 << 32))
        pool_lower = [w.gather(1, pool_at) for w in counts]
        pool_shared = next_slot_equal(packed, pool_at, pool_keys, shift=32)
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
            if bool(shared.any()):  # another pool item at the same key: count the ties exactly
                r, a = shared.nonzero(as_tuple=True)
                ranks[r, a] += self.ties_before(
                    t, packed, keys, r, at[r, a], pos_keys[r, a], item[r, a]
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
    ) -> torch.Tensor:
        """Per positive (its row of the chunk, the first sorted slot at its ``key``, its index
        ``item`` in gallery ``t``): gallery ``t``'s items at ``key`` with a gallery index below
        ``item``, what ``QueryScorer.ties_before`` counts on the gallery's keys of the row.

        The items at ``key`` follow one another in the sorted row from ``start``: read slot by
        slot, every positive at once, while a positive's run goes on, up to ``RUN`` slots; a
        positive whose run is longer is counted on its row's keys as ``QueryScorer`` does.
        """
        n_pool = packed.shape[1]
        position = self.positions[t]
        count = torch.zeros_like(item)
        active = torch.arange(item.numel(), device=item.device)
        for offset in range(self.RUN):
            slot = start[active] + offset
            word = packed[rows[active], slot.clamp_max(n_pool - 1)]
            same = (slot < n_pool) & ((word >> 32) == key[active])
            before = same & (position[word & 0xFFFFFFFF] < item[active])
            count[active] += before.to(count.dtype)
            active = active[same]
            if active.numel() == 0:
                return count
        # runs longer than RUN slots: counted on the rows' keys from the start
        r = rows[active]
        count[active] = self.scorers[t].ties_before(
            keys[r][:, self.trials[t]], key[active], item[active]
        )
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
