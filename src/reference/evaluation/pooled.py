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

import itertools

import numpy as np
import torch

from reference.errors import VireidError
from reference.evaluation.buckets import BucketSort, sort_with_slots
from reference.evaluation.columns import check_galleries, take_columns_each
from reference.evaluation.metrics import (
    CMCKind,
    Exclusion,
    RankMetrics,
    as_distmat,
    assemble_metrics,
    check_ids,
    check_settings,
    rank_metrics,
    side_by_side_rows,
)
from reference.evaluation.ranking import (
    SENTINEL32,
    SYSU_QUERY_CAMERA,
    ChunkValues,
    QueryScorer,
    float32_keys,
    interleaved_values,
    next_slot_equal,
    sort_ranks,
    sort_rows,
)
from reference.evaluation.threads import run_each, threads_for


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
    threads = threads_for(device)
    if pooled:
        scorer = PooledScorer(gp, gc, cols, exclusion, cmc_kind)
        # chunks of rows of one kind (PooledScorer.row_groups), each group cut as the whole
        chunks = []
        for rows in scorer.row_groups(qc):
            size, _ = side_by_side_rows(chunk_size, rows.numel(), n_pool, device)
            chunks += [rows[s : s + size] for s in range(0, rows.numel(), size)]

        def score_chunk(rows: torch.Tensor) -> list[ChunkValues]:
            if int(rows[-1] - rows[0]) + 1 == rows.numel():  # a range: a view of the rows
                r = slice(int(rows[0]), int(rows[-1]) + 1)
                return scorer.chunk(dist[r], qp[r], qc[r])
            return scorer.chunk(dist.index_select(0, rows), qp[rows], qc[rows], owned=True)

        parts = run_each(score_chunk, chunks, threads, "chunks", inner_threads=1)
        if len(chunks) > 1 and not all(
            int(a[-1]) + 1 == int(b[0]) for a, b in itertools.pairwise(chunks)
        ):  # the queries' own order again
            back = torch.argsort(torch.cat(chunks))
            parts = [[tuple(torch.cat(v)[back] for v in zip(*(p[t] for p in parts), strict=True))
                      for t in range(len(cols))]]  # fmt: skip
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


class PooledScorer:
    """Per-query values of several galleries drawn from one pool, with one row sort for all.

    ``trials[t]`` holds the pool columns of gallery ``t`` in that gallery's order. For every
    ``t``, :meth:`chunk` returns what ``QueryScorer(g_pids[trials[t]], g_camids[trials[t]],
    rule, kind).fast_chunk(dist[:, trials[t]], ...)`` returns, exactly (valid queries), from
    float32 distances to the whole pool. Test:
    ``tests/evaluation/test_pooled.py::test_pooled_scorer_equals_per_gallery_scorer``.

    How. The exclusion rules depend on a (query, item) pair only, never on the draw, so the
    int32 keys (``float32_keys``, excluded items at ``SENTINEL32``) are computed once over the
    pool. Each row is sorted once, one word per item: its bucket (a monotone cut of its key)
    above its pool column (``buckets.BucketSort``). Gallery membership of the sorted items,
    summed along the row up to the pool positives' slots, gives the number of a gallery's items
    in the buckets below a positive's (several galleries share an int64 word, one bit field
    each, so one pass serves several draws). A positive's rank is that count, plus one, plus
    the gallery's items in its own bucket that rank before it (read slot by slot from the
    row). Every gallery's positives are taken at once from the pool's, in key order, where
    their ranks ascend. The identity rank counts the distinct identities among the gallery's
    items sorted before the first positive's bucket: read from the first ``HEAD`` sorted items
    of the row, and for the rows whose first positive lies deeper, or shares its bucket, from
    the gallery's keys of that row as ``fast_chunk`` does.
    """

    #: sorted pool positions read for the identity rank before falling back to a row's keys
    HEAD = 256
    #: sorted slots read from a positive's bucket before falling back to a row's keys
    RUN = 8
    #: leads in the first this many slots: their rows' identity ranks read only these
    NEAR = 16

    def __init__(
        self,
        g_pids: torch.Tensor,
        g_camids: torch.Tensor,
        trials: list[torch.Tensor],
        rule: str,
        kind: str,
        key_bits: int = BucketSort.KEY_BITS,
    ):
        self.rule, self.kind = rule, kind
        self.pool = QueryScorer(g_pids, g_camids, rule, kind)
        self.trials = trials
        self.scorers = [QueryScorer(g_pids[c], g_camids[c], rule, kind) for c in trials]
        device = g_pids.device
        n_pool = g_pids.numel()
        self.slots = torch.arange(max(n_pool, 1) + 1, device=device)
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
        # each gallery's positives of each identity: their places among the pool's positives
        # of that identity (``QueryScorer.positives`` lists a pool identity's columns in this
        # order), padded with the pool's width; a last row for identities outside the pool
        pool, n_ids = self.pool, self.pool.g_ids.numel()
        slot = torch.empty_like(pool.index)
        slot[pool.by_identity] = pool.index - pool.identity_start[pool.g_labels[pool.by_identity]]
        width = max(scorer.width for scorer in self.scorers)
        self.gallery_slots = torch.full((len(trials), n_ids + 1, width), pool.width, device=device)
        for t, cols in enumerate(trials):
            labels = pool.g_labels[cols]
            by = torch.sort(labels, stable=True).indices
            sizes = torch.bincount(labels, minlength=n_ids)
            j = torch.arange(cols.numel(), device=device) - (sizes.cumsum(0) - sizes)[labels[by]]
            self.gallery_slots[t, labels[by], j] = slot[cols[by]]
        # each gallery's word and the shift of its field
        self.word_of = torch.arange(len(trials), device=device) // self.per_word
        self.shift_of = self.field * (torch.arange(len(trials), device=device) % self.per_word)
        self.sort = BucketSort(self.members, key_bits)
        # where the SYSU-MM01 rule skips the pool's last columns: the first of them
        span = self.pool.skipped_span
        self.short = span[0] if span is not None and 0 < span[0] < span[1] == n_pool else None

    @staticmethod
    def applies(n_pool: int, trials: list[torch.Tensor]) -> bool:
        """Worth it where the galleries together hold at least twice the pool (the pool is
        sorted once with keys twice a gallery key's size; each gallery would be sorted). A
        gallery must not repeat a pool column (a repeat ties with itself unseen)."""
        if sum(int(c.numel()) for c in trials) < 2 * n_pool:
            return False
        return all(torch.unique(c).numel() == c.numel() for c in trials)

    def row_groups(self, q_camids: torch.Tensor) -> list[torch.Tensor]:
        """The queries' rows in groups to be chunked apart: under SYSU-MM01's rule, where the
        skipped camera's columns are the pool's last (``sysu.py`` lists them so), the camera-3
        queries and the others (a chunk of camera-3 queries sorts only the columns before);
        else all of them."""
        rows = torch.arange(q_camids.numel(), device=q_camids.device)
        if self.short is None:
            return [rows]
        skips = q_camids == SYSU_QUERY_CAMERA
        return [g for g in (rows[skips], rows[~skips]) if g.numel()]

    def chunk(
        self,
        dist: torch.Tensor,
        q_pids: torch.Tensor,
        q_camids: torch.Tensor,
        owned: bool = False,
    ) -> list[ChunkValues]:
        """``ChunkValues`` of each gallery for this chunk of queries (float32 ``dist``; with
        ``owned`` a copy the scorer may overwrite)."""
        keys = float32_keys(dist, copy=not (owned and dist.is_contiguous()))
        # a chunk of queries that all skip the pool's last columns sorts only the ones before:
        # the skipped ones' words are in the top bucket in column order, after every other
        limit = dist.shape[1]
        if self.short is not None and bool((q_camids == SYSU_QUERY_CAMERA).all()):
            limit = self.short
        high = keys.amax(dim=1)  # above every kept key (the excluded ones are set next)
        present, item = self.pool.positives(q_pids)  # the pool's positives, (c, width)
        if self.rule == "sysu":
            self.pool.skip_camera(keys, q_camids, SENTINEL32)
        elif self.rule == "same-id-same-camera":
            keys[self.pool.same_camera(present, item, q_camids)] = SENTINEL32
        low, step = self.sort.cut(keys, high)
        packed = self.sort.sort(self.sort.pack(keys, low, step), limit)
        head_columns = self.sort.column_of(packed[:, : self.HEAD])
        # each pool positive once, in key order (absent and excluded ones last, then one pad):
        # its key, the first sorted slot of its bucket, each word's member counts before that
        # slot, and whether another item shares its bucket
        c, width = item.shape
        pos_keys, by_key = sort_with_slots(torch.where(present, keys.gather(1, item), SENTINEL32))
        pos_keys = torch.nn.functional.pad(pos_keys, (0, 1), value=SENTINEL32)
        item = torch.nn.functional.pad(item.gather(1, by_key), (0, 1))
        bucket = self.sort.bucket_of(pos_keys, low, step)
        at = torch.searchsorted(packed, (bucket << self.sort.column_bits).to(self.sort.word))
        # (words, c, width + 1); a kept positive's bucket starts at most at ``limit``
        lower = self.sort.counts_at(packed[:, :limit], at.clamp_max(limit))
        shared = next_slot_equal(packed, at, bucket, shift=self.sort.column_bits)
        # every gallery at once, (galleries, c, its width): its positives, each one's place in
        # key order (their identity's row of ``gallery_slots``, the pad where it has fewer)
        n = len(self.trials)
        place = torch.full_like(item, width).scatter_(1, by_key, self.slots[:width].expand(c, -1))
        label, known = self.pool.labels_of(q_pids)
        label = torch.where(known, label, self.pool.g_ids.numel())
        place = place.expand(n, -1, -1).gather(2, self.gallery_slots[:, label])
        place = sort_rows(place.flatten(0, 1)).view(place.shape)  # key order

        def of(x: torch.Tensor) -> torch.Tensor:  # a pool positive's value for each gallery's
            return x.expand(n, -1, -1).gather(2, place)

        keys_of, at_of, index = of(pos_keys), of(at), of(item)
        index = self.positions[:, None].expand(n, c, -1).gather(2, index)  # in the gallery
        kept = keys_of != SENTINEL32
        # the member counts in the gallery's field of its word
        rows = torch.arange(c, device=item.device)[None, :, None] * (width + 1)
        words = self.word_of[:, None, None] * (c * (width + 1))
        fields = torch.take(lower, words + rows + place) >> self.shift_of[:, None, None]
        ranks = (fields & ((1 << self.field) - 1)) + 1
        shared = kept & of(shared)
        if bool(shared.any()):  # other pool items in its bucket: count those before it
            t, r, a = shared.nonzero(as_tuple=True)
            ranks[t, r, a] += self.ties_before(
                t, packed, keys, r, at_of[t, r, a], keys_of[t, r, a], index[t, r, a], (low, step)
            )
        # in key order the ranks ascend, but for positives of one key, whose ranks follow
        # their gallery index: those rows are sorted by rank (kept ones first)
        tied = ((keys_of[..., 1:] == keys_of[..., :-1]) & (keys_of[..., 1:] != SENTINEL32)).any(2)
        order = self.slots[: ranks.shape[2]].expand(ranks.shape)
        if bool(tied.any()):
            order = order.clone()
            r_, k_, o_ = sort_ranks(ranks[tied], kept[tied])
            ranks[tied], kept[tied], order[tied] = r_, k_, o_
        valid, first_rank, ap, inp, lead = interleaved_values(ranks, kept)
        if self.kind == "identity":
            lead = order.gather(2, lead[..., None])  # the lead's place in key order
            lead_of = [x.gather(2, lead).flatten(0, 1) for x in (keys_of, at_of, shared, index)]
            first_rank = self.identity_ranks(keys, head_columns, *lead_of, valid.flatten()).view(
                n, c
            )
        return [(valid[t], first_rank[t], ap[t], inp[t], q_pids) for t in range(n)]

    def ties_before(
        self,
        trials: torch.Tensor,
        packed: torch.Tensor,
        keys: torch.Tensor,
        rows: torch.Tensor,
        start: torch.Tensor,
        key: torch.Tensor,
        item: torch.Tensor,
        cut: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """Per positive (its gallery, its row of the chunk, the first sorted slot of its
        bucket, its ``key``, its index ``item`` in its gallery): the gallery's items in its
        bucket that rank before it, a smaller key or the same key and a smaller gallery index.
        ``cut`` is ``(low, shift)`` of the chunk's rows (``BucketSort.cut``).

        The items of a bucket follow one another in the sorted row from ``start``: read slot
        by slot, every positive at once, while a positive's bucket goes on, up to ``RUN``
        slots; a positive whose bucket holds more is counted on its row's keys.
        """
        n_pool = packed.shape[1]
        mask = (1 << self.sort.column_bits) - 1
        bucket = packed[rows, start] >> self.sort.column_bits
        count = torch.zeros_like(item)
        active = torch.arange(item.numel(), device=item.device)
        for offset in range(self.RUN):
            slot = start[active] + offset
            row = rows[active]
            word = packed[row, slot.clamp_max(n_pool - 1)]
            same = (slot < n_pool) & ((word >> self.sort.column_bits) == bucket[active])
            column = (word & mask).to(torch.int64)
            other, k = keys[row, column], key[active]
            at = self.positions[trials[active], column]
            earlier = (other < k) | ((other == k) & (at < item[active]))
            count[active] += (same & earlier & (at < n_pool)).to(count.dtype)
            active = active[same]
            if active.numel() == 0:
                return count
        # buckets of more than RUN slots: counted on the rows' keys in the gallery's order
        for a in active.tolist():
            t, r = int(trials[a]), rows[a]
            row_keys = keys[r, self.trials[t]]
            same = self.sort.bucket_of(row_keys[None], *(x[r, None] for x in cut))[0] == bucket[a]
            earlier = (row_keys < key[a]) | (
                (row_keys == key[a]) & (self.scorers[t].index < item[a])
            )
            count[a] = (same & earlier).sum()
        return count

    def identity_ranks(
        self, keys, head_columns, lead_key, start, lead_shared, lead_item, valid
    ) -> torch.Tensor:  # fmt: skip
        """1 + the identities sorted before the first positive (ties by gallery index), as
        ``fast_chunk`` counts them, for every gallery's rows at once (``(galleries * c,)``, the
        lead's key, first slot of its bucket, bucket-mate flag and gallery index): from the
        first sorted slots of the row (``head_columns``) where the lead's bucket starts among
        them and holds no other item, else from the gallery's keys of the row."""
        c = keys.shape[0]
        lead_key, start, lead_shared, lead_item = (
            x[:, 0] for x in (lead_key, start, lead_shared, lead_item)
        )
        deep = valid & ((start > head_columns.shape[1]) | lead_shared)
        first_rank = torch.ones_like(start)
        near = valid & ~deep & (start > 0)
        # most leads lie in the first few slots: those rows read only as many
        for rows in (near & (start <= self.NEAR), near & (start > self.NEAR)):
            i = rows.nonzero()[:, 0]
            if i.numel() == 0:
                continue
            width = int(start[i].max())  # slots read from the head
            columns = head_columns[i % c, :width]
            member = self.positions[(i // c)[:, None], columns] < keys.shape[1]
            before = member & (torch.arange(width, device=keys.device)[None] < start[i, None])
            labels = sort_rows(torch.where(before, self.pool.g_labels[columns], -1))
            new = (labels >= 0) & torch.cat(
                [torch.ones_like(labels[:, :1], dtype=torch.bool), labels[:, 1:] != labels[:, :-1]],
                dim=1,
            )
            first_rank[i] += new.sum(dim=1)
        for t, scorer in enumerate(self.scorers):  # the gallery's keys of the rows, as fast_chunk
            i = deep[t * c : (t + 1) * c].nonzero()[:, 0]
            if i.numel():
                j = i + t * c
                first_rank[j] = scorer.identity_rank_of_keys(
                    keys[i][:, self.trials[t]], lead_key[j, None], lead_item[j, None], valid[j]
                )
        return first_rank
