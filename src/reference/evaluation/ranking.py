"""Per-query rank values of distance rows: the reference kernel and its float32 fast path.

Spec: ``spec/evaluation/metrics.md`` (definitions, "Computation"). Used by
``reference.evaluation.metrics``; nothing here validates input (the callers do).

For query ``i`` the gallery is ordered by ``(D[i, j], j)``, excluded items are dropped, and the
positives (items of the query's identity) get their 1-based ranks ``k_1 < ... < k_n``. Then
``AP = (1/n) sum_m m / k_m``, ``INP = n / k_n``, the standard rank ``k_1`` and the identity rank
(the position of the query's identity once every identity is kept at its first occurrence).

- :meth:`QueryScorer.reference_chunk` computes this for any dtype with one exact int64 key per
  (query, item): distance bits high, gallery index low (module ``order_keys``).
- :meth:`QueryScorer.fast_chunk` is the float32 fast path (the field's features are float32):
  int32 keys (the distance bits only), half the bytes to sort, no index to pack. It equals
  ``reference_chunk`` exactly (every per-query value, to the last bit): the index part of a key
  only matters between two kept items at the same distance, and the fast path counts those ties
  where they touch a positive or the first positive's identity (float32 distances at d = 2048
  tie often: most rows hold a few). Proved by
  ``tests/evaluation/test_ranking.py::test_fast_chunk_equals_reference_chunk`` (random rows,
  rows full of ties, every exclusion rule and CMC kind).
"""

from __future__ import annotations

import torch

from reference.evaluation.rowsort import sort_rows_inplace

#: SYSU-MM01 camera rule: queries of this camera skip gallery items of ``SYSU_SKIPPED_CAMERA``.
SYSU_QUERY_CAMERA = 3
SYSU_SKIPPED_CAMERA = 2

#: the largest int64 (a rank that sorts after every real one)
INT64_MAX = torch.iinfo(torch.int64).max
#: int64 key of an excluded item: above every distance key (those stay below 0x7FF1 << 48)
EXCLUDED = INT64_MAX - 1
#: padding of the positives' int64 key matrix: above everything
PAD = INT64_MAX
#: int32 key of an excluded item or a padding slot (fast path): above every finite float's bits
SENTINEL32 = torch.iinfo(torch.int32).max

ChunkValues = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class QueryScorer:
    """Per-query values chunk by chunk: ``(valid, rank, ap, inp, q_pids)`` per query.

    Per chunk of ``c`` queries: one key per (query, gallery item) whose order is the ranking,
    one row sort of the keys, and, for the positives only (``c x width``, ``width`` = the
    largest identity in the gallery), a binary search of their keys in the sorted rows, which
    gives their ranks. The identity rank counts identities whose smallest key is not above the
    first positive's (a scatter-min).
    """

    def __init__(self, g_pids: torch.Tensor, g_camids: torch.Tensor, rule: str, kind: str):
        self.g_pids = g_pids
        self.g_camids = g_camids
        self.rule = rule
        self.kind = kind
        device = g_pids.device
        n_gallery = g_pids.numel()
        self.index_bits = max(1, n_gallery.bit_length())
        self.index = torch.arange(n_gallery, device=device)
        # compact identity labels 0..U-1, and the gallery items of each identity side by side
        self.g_ids, self.g_labels = torch.unique(g_pids, return_inverse=True)
        sizes = torch.bincount(self.g_labels, minlength=self.g_ids.numel())
        self.by_identity = torch.sort(self.g_labels, stable=True).indices
        self.identity_start = sizes.cumsum(0) - sizes
        self.identity_size = sizes
        self.width = int(sizes.max())
        # the columns SYSU-MM01's rule skips for camera-3 queries, and where they lie side by
        # side (the pool lists camera 2 last) the slice of them; None under other rules
        self.g_skipped, self.skipped_span = None, None
        if rule == "sysu":
            self.g_skipped = (g_camids == SYSU_SKIPPED_CAMERA).nonzero()[:, 0]
            n = self.g_skipped.numel()
            first = int(self.g_skipped[0]) if n else 0
            contiguous = n == 0 or int(self.g_skipped[-1]) - first + 1 == n
            self.skipped_span = (first, first + n) if contiguous else None

    def chunk(
        self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor
    ) -> ChunkValues:
        """The fast path where it applies (float32 and narrower), else the reference kernel."""
        if dist.dtype == torch.float64:
            return self.reference_chunk(dist, q_pids, q_camids)
        return self.fast_chunk(dist, q_pids, q_camids)

    # -- shared pieces ------------------------------------------------------------------------

    def labels_of(self, q_pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(label, known)``: each query identity's compact gallery label, and whether the
        gallery holds it at all (where not, ``label`` is some valid label, not its own)."""
        label = torch.searchsorted(self.g_ids, q_pids).clamp_max(self.g_ids.numel() - 1)
        return label, self.g_ids[label] == q_pids

    def positives(self, q_pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(present, item)`` ``(c, width)``: the gallery items of each query's identity."""
        device = q_pids.device
        label, known = self.labels_of(q_pids)
        slot = torch.arange(self.width, device=device)
        present = known[:, None] & (slot[None] < self.identity_size[label][:, None])
        where = (self.identity_start[label][:, None] + slot[None]).clamp_max(self.index.numel() - 1)
        return present, self.by_identity[where]

    def skip_camera(self, keys: torch.Tensor, q_camids: torch.Tensor, value: int) -> None:
        """SYSU-MM01's camera rule: ``keys`` of camera-3 rows x camera-2 columns set to
        ``value``, in place (through a slice of columns where they lie side by side, several
        times faster than the general index)."""
        rows = (q_camids == SYSU_QUERY_CAMERA).nonzero()[:, 0]
        if self.skipped_span is not None:
            keys[:, slice(*self.skipped_span)].index_fill_(0, rows, value)
        else:
            keys[rows[:, None], self.g_skipped[None]] = value

    def same_camera(self, present, item, q_camids) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows and columns of the same-identity same-camera items (to be excluded)."""
        same_camera = present & (self.g_camids[item] == q_camids[:, None])
        rows = torch.arange(item.shape[0], device=item.device)[:, None].expand_as(item)
        return rows[same_camera], item[same_camera]

    def values(
        self, ranks: torch.Tensor, kept: torch.Tensor, first_rank: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(valid, rank, ap, inp)`` from the positives' ranks (ascending; ``kept`` marks real
        ones, which come first) and the identity/standard rank ``first_rank``: the kept ones
        first is a case of :func:`interleaved_values`, whose formulas these are."""
        valid, _, ap, inp, _ = interleaved_values(ranks, kept)
        return valid, first_rank, ap, inp

    # -- the reference kernel ---------------------------------------------------------------

    def reference_chunk(
        self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor
    ) -> ChunkValues:
        """Exact for every dtype: int64 keys ``(distance bits, gallery index)``."""
        c = dist.shape[0]
        keys = order_keys(dist, self.index, self.index_bits)
        present, item = self.positives(q_pids)
        # excluded items get a key above every distance: they sort after all kept items, so a
        # kept item's rank is the number of keys up to its own
        if self.rule == "sysu":
            self.skip_camera(keys, q_camids, EXCLUDED)
        elif self.rule == "same-id-same-camera":
            keys[self.same_camera(present, item, q_camids)] = EXCLUDED
        sorted_keys = sort_rows(keys)
        if dist.dtype == torch.float64:
            sorted_keys = self._resolve_truncation(dist, keys, sorted_keys)
        pos_keys = torch.where(present, keys.gather(1, item), PAD)
        pos_keys = torch.where(pos_keys == EXCLUDED, PAD, pos_keys)
        pos_keys = torch.sort(pos_keys, dim=1).values
        # 1-based rank of each positive: the number of keys up to and including its own
        ranks = torch.searchsorted(sorted_keys, pos_keys) + 1
        if self.kind == "standard":
            first_rank = ranks[:, 0]
        else:
            # an identity precedes the query's own iff its first key is below the first
            # positive's; identities with only excluded items keep EXCLUDED: never counted
            first = torch.full((c, self.g_ids.numel()), PAD, device=dist.device)
            first.scatter_reduce_(1, self.g_labels.expand(c, -1), keys, reduce="amin")
            first_rank = (first <= pos_keys[:, :1]).sum(dim=1)
        return (*self.values(ranks, pos_keys != PAD, first_rank), q_pids)

    def _resolve_truncation(
        self, dist: torch.Tensor, keys: torch.Tensor, sorted_keys: torch.Tensor
    ) -> torch.Tensor:
        """Rows where two kept float64 keys share their distance part get exact keys.

        Such rows hold ties or two distances equal in all but the dropped low bits; their keys
        are recomputed from a stable sort of the float64 distances (positions in that order).
        """
        bits = self.index_bits
        # neighbours differ only in the index bits: 0 < a ^ b < 2**bits (kept keys are
        # distinct, excluded ones all equal to EXCLUDED, so a ^ b == 0 only between those)
        xor = sorted_keys[:, 1:] ^ sorted_keys[:, :-1]
        shared = (xor > 0) & (xor < (1 << bits))
        rows = shared.any(dim=1).nonzero()[:, 0]
        if rows.numel() == 0:
            return sorted_keys
        order = torch.sort(dist[rows], dim=1, stable=True).indices
        position = torch.empty_like(order).scatter_(1, order, self.index.expand_as(order))
        sub = keys[rows]
        exact = torch.where(sub == EXCLUDED, EXCLUDED, (position << bits) | self.index)
        keys[rows] = exact
        sorted_keys[rows] = sort_rows(exact)
        return sorted_keys

    # -- the float32 fast path ----------------------------------------------------------------

    def fast_chunk(
        self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor
    ) -> ChunkValues:
        """Equals :meth:`reference_chunk` exactly for float32 (and narrower) distances.

        Keys are the int32 distance bits, without the gallery index. A positive's rank is the
        number of kept keys below its own, plus one, plus the kept items with the *same* key
        and a smaller gallery index (the tie rule); only positives whose key occurs more than
        once need that count (a comparison along their row). The identity rank counts the
        identities whose smallest key is below the first positive's, plus its own, plus the
        identities with a kept item at the same key and a smaller index (rows where that can
        happen are rare and counted one by one). Test:
        ``tests/evaluation/test_ranking.py::test_fast_chunk_equals_reference_chunk``.
        """
        keys = float32_keys(dist)
        present, item = self.positives(q_pids)
        if self.rule == "sysu":
            self.skip_camera(keys, q_camids, SENTINEL32)
        elif self.rule == "same-id-same-camera":
            keys[self.same_camera(present, item, q_camids)] = SENTINEL32
        pos_keys = torch.where(present, keys.gather(1, item), SENTINEL32)
        kept = pos_keys != SENTINEL32
        sorted_keys = sort_rows(keys)
        below = torch.searchsorted(sorted_keys, pos_keys)
        ranks = below + 1
        # a kept positive's key first sorts at ``below``; it is shared if the next key is equal
        shared = kept & next_slot_equal(sorted_keys, below, pos_keys)
        if bool(shared.any()):
            r, a = shared.nonzero(as_tuple=True)
            ranks[r, a] += self.ties_before(keys[r], pos_keys[r, a], item[r, a])
        ranks, kept, order = sort_ranks(ranks, kept)
        if self.kind == "standard":
            first_rank = ranks[:, 0]
        else:
            lead = order[:, :1]  # the first positive: its key and gallery item
            first_rank = self.identity_rank_of_keys(
                keys, pos_keys.gather(1, lead), item.gather(1, lead), kept[:, 0],
                shared=shared.gather(1, lead)[:, 0],
            )  # fmt: skip
        return (*self.values(ranks, kept, first_rank), q_pids)

    def ties_before(
        self, row_keys: torch.Tensor, key: torch.Tensor, item: torch.Tensor
    ) -> torch.Tensor:
        """Per row, the gallery items whose int32 key equals ``key`` and whose gallery index is
        below ``item``: what the tie rule adds to the rank of a positive whose key is shared.
        ``row_keys`` ``(n, gallery)`` are the rows' keys in this scorer's gallery order."""
        same = (row_keys == key[:, None]) & (self.index[None] < item[:, None])
        return same.sum(dim=1)

    def identity_rank_of_keys(
        self,
        row_keys: torch.Tensor,
        lead_key: torch.Tensor,
        lead_item: torch.Tensor,
        valid: torch.Tensor,
        shared: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """1 + the identities ranked before the first positive (``lead_key`` / ``lead_item``,
        shape ``(n, 1)``), from the rows' int32 keys in this scorer's gallery order: those whose
        smallest kept key is below the lead's, plus those with a kept item at the lead's key and
        a smaller gallery index (rows where that can happen are rare and counted one by one;
        only ``valid`` rows, whose lead is kept). ``shared`` (``(n,)``, optional): whether
        another item of the row has the lead's key; only those rows can hold such an item."""
        n = row_keys.shape[0]
        first = torch.full(
            (n, self.g_ids.numel()), SENTINEL32, dtype=torch.int32, device=row_keys.device
        )
        first.scatter_reduce_(1, self.g_labels.expand(n, -1), row_keys, reduce="amin")
        # count_nonzero: a third of the time of a sum of bools on a CPU
        first_rank = torch.count_nonzero(first < lead_key, dim=1) + 1
        rows = (valid if shared is None else valid & shared).nonzero()[:, 0]
        level = torch.count_nonzero(first[rows] == lead_key[rows], dim=1) > 1
        for i in rows[level].tolist():
            # identities (other than its own) with a kept item at the lead's key, earlier
            at = (row_keys[i] == lead_key[i, 0]) & (self.index < lead_item[i, 0])
            others = self.g_labels[at]
            others = others[first[i, others] == lead_key[i, 0]]  # not counted yet
            own = self.g_labels[lead_item[i, 0]]
            first_rank[i] += int(torch.unique(others[others != own]).numel())
        return first_rank


def next_slot_equal(
    sorted_rows: torch.Tensor, at: torch.Tensor, keys: torch.Tensor, shift: int = 0
) -> torch.Tensor:
    """Per entry, whether slot ``at + 1`` of its sorted row exists and holds ``keys`` (the
    slot's value ``>> shift``: the key of a packed word): where a key first sorts at ``at``,
    another item of the row shares it."""
    n = sorted_rows.shape[1]
    after = sorted_rows.gather(1, (at + 1).clamp_max(n - 1))
    if shift:
        after = after >> shift
    return (at + 1 < n) & (after == keys)


def sort_ranks(
    ranks: torch.Tensor, kept: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's positives by rank, the kept ones first (a dropped one at ``INT64_MAX``):
    ``(ranks, kept, order)``, ``order`` the positive slots in that order."""
    order = torch.sort(torch.where(kept, ranks, INT64_MAX), dim=1)
    return order.values, kept.gather(1, order.indices), order.indices


def interleaved_values(ranks: torch.Tensor, kept: torch.Tensor):
    """``(valid, first rank, ap, inp, lead)`` per row of positives' ``ranks`` (``(..., width)``)
    ascending among the ``kept`` ones, which may lie anywhere in the row (``lead``: the first
    one's place): ``AP = (1/n) sum_m m / k_m`` and ``INP = n / k_n`` over the ``n`` kept ranks
    ``k_1 < ... < k_n``, in float64. A dropped positive adds 0.0 to the running sums, which
    leaves them as they were: the values are those of the kept ones first, to the last bit
    (``QueryScorer.values``, that case). The running sums are cumsums: each row is added left
    to right whatever the chunk, so the rounding does not depend on it."""
    width = ranks.shape[-1]
    slot = torch.arange(width, device=ranks.device)
    n_pos = kept.sum(dim=-1)
    # the first kept slot (argmax gives the first of equal maxima; four times faster than a
    # masked amin on a CPU), width - 1 in a row with none
    lead = torch.where(n_pos > 0, kept.to(torch.uint8).argmax(dim=-1), width - 1)
    last = torch.where(kept, slot, 0).amax(dim=-1)
    f64 = torch.float64
    precision = torch.where(kept, kept.cumsum(dim=-1).to(f64) / ranks.to(f64), 0.0)
    ap = precision.cumsum(dim=-1)[..., -1] / n_pos.clamp_min(1).to(f64)
    inp = n_pos.to(f64) / ranks.gather(-1, last[..., None])[..., 0].to(f64)
    first = ranks.gather(-1, lead[..., None])[..., 0]
    return n_pos > 0, first, ap, inp, lead


def float32_keys(dist: torch.Tensor, copy: bool = True) -> torch.Tensor:
    """int32 keys (a new tensor) whose order is the order of ``dist`` as float32.

    The float's bits read as a signed integer are monotone for non-negative floats; negative
    ones are reflected, and ``-0.0`` first becomes ``+0.0`` (equal floats, equal keys). The keys
    are contiguous whatever ``dist``'s strides; with ``copy=False`` those of a contiguous
    float32 ``dist`` of non-negative distances are ``dist``'s own memory (for a caller whose
    ``dist`` is a copy of its own).
    """
    dist = dist.to(torch.float32)
    keys = dist.view(torch.int32)
    if int(keys.min()) < 0:  # negative distances or -0.0
        keys = (dist + 0.0).view(torch.int32)
        return keys ^ ((keys >> 31) & torch.iinfo(torch.int32).max)
    return keys.clone(memory_format=torch.contiguous_format) if copy else keys


def order_keys(dist: torch.Tensor, index: torch.Tensor, bits: int) -> torch.Tensor:
    """int64 keys whose order is the order of ``(dist[i, j], j)`` (spec: "Computation").

    The float's bits, read as a signed integer (monotone for non-negative floats; negative ones
    are reflected), form the high part and the gallery index ``j`` the low part. float32 (and
    narrower) distances fit exactly, with ``j`` in the low 32 bits; float64 ones keep all but
    their low ``bits`` bits, and :meth:`QueryScorer._resolve_truncation` repairs the rare rows
    where that matters.
    """
    if dist.dtype == torch.float64:
        high = dist.view(torch.int64)
        if int(high.min()) < 0:  # negative distances or -0.0
            high = (dist + 0.0).view(torch.int64)  # -0.0 -> +0.0: equal floats, equal bits
            high = high ^ ((high >> 63) & INT64_MAX)
        return (high & ~((1 << bits) - 1)) | index
    high32 = float32_keys(dist)
    # index + high * 2**32 in one int64 pass (the product is computed in int64)
    return torch.add(index, high32, alpha=1 << 32)


def sort_rows(keys: torch.Tensor) -> torch.Tensor:
    """Each row sorted ascending (equal keys are interchangeable: only their values are used)."""
    if keys.device.type == "cpu":
        # NumPy's SIMD sort is several times faster than torch's on CPU for int64 and int32;
        # the rows are shared among torch's threads (rowsort.py)
        out = keys.numpy().copy()
        sort_rows_inplace(out)
        return torch.from_numpy(out)
    return torch.sort(keys, dim=1).values
