"""Rank metrics of a query x gallery distance matrix: CMC (two kinds), mAP, mINP.

Spec: ``spec/evaluation/metrics.md`` (definitions), ``spec/evaluation/exclusion.md`` (which
gallery items a query skips), ``spec/evaluation/differences.md`` (other implementations).

For query ``i``, the gallery is ordered by ``(D[i, j], j)`` ascending (ties by gallery index) and
the items the exclusion rule removes are dropped. In that list ``L_i`` (1-based ranks), with
positives ``P_i`` (items of the query's identity), ``n_i = |P_i|`` and ``k_1 < ... < k_n`` their
ranks:

- ``AP_i = (1/n_i) * sum_m m / k_m`` (non-interpolated), ``INP_i = n_i / k_n``;
- standard CMC rank ``r_i = k_1``; identity CMC rank ``r_i`` = position of the query's identity
  in ``L_i`` with every identity kept at its first occurrence only;
- a query with ``n_i = 0`` is not valid; over the ``V`` valid queries
  ``cmc[r-1] = #{i: r_i <= r} / V``, ``mAP = mean AP_i``, ``mINP = mean INP_i``.

The work is chunked over queries: one chunk holds a few ``(chunk, n_gallery)`` tensors, so the
peak memory is bounded by ``chunk_size * n_gallery`` whatever ``n_query`` is. Per-query values are
kept in float64 and reduced once at the end, so the figures do not depend on the chunk size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from reference.errors import VireidError
from reference.evaluation.distance import (
    Metric,
    PreparedGallery,
    as_feature_tensor,
    check_metric,
)

Exclusion = Literal["sysu", "same-id-same-camera", "none"]
CMCKind = Literal["identity", "standard"]
EXCLUSIONS: tuple[str, ...] = ("sysu", "same-id-same-camera", "none")
CMC_KINDS: tuple[str, ...] = ("identity", "standard")

#: SYSU-MM01 camera rule: queries of this camera skip gallery items of ``SYSU_SKIPPED_CAMERA``.
SYSU_QUERY_CAMERA = 3
SYSU_SKIPPED_CAMERA = 2

#: Default chunk: about this many ``(chunk, n_gallery)`` elements per working tensor (32 MB as
#: int64; ~120 MB for the whole working set), but at least ``DEFAULT_MIN_CHUNK_ROWS`` rows. Few
#: large chunks mean few parallel regions: on a loaded CPU each one costs a scheduling delay.
DEFAULT_CHUNK_ELEMENTS = 1 << 22
DEFAULT_MIN_CHUNK_ROWS = 32


@dataclass(frozen=True)
class QueryValues:
    """The per-query values the figures are computed from; each ``(n_query,)``, query order.

    ``ap`` and ``inp`` are float64 with NaN for invalid queries; ``first_hit`` is the 1-based
    CMC rank of the query (of the metrics' ``cmc_kind``, not clipped at ``max_rank``), 0 for an
    invalid query; ``valid`` is bool; ``pids`` the query identities (int64).
    ``RankMetrics`` is their mean: ``mAP == ap[valid].mean()``, ``mINP == inp[valid].mean()``
    (NumPy's mean, exactly) and ``cmc[r-1] == (first_hit[valid] <= r).mean()``.
    """

    ap: np.ndarray
    inp: np.ndarray
    first_hit: np.ndarray
    valid: np.ndarray
    pids: np.ndarray

    def __post_init__(self) -> None:
        for name in ("ap", "inp", "first_hit", "valid", "pids"):
            getattr(self, name).flags.writeable = False  # frozen all the way down

    @property
    def num_query(self) -> int:
        return int(self.valid.shape[0])


@dataclass(frozen=True)
class RankMetrics:
    """CMC, mAP and mINP over the valid queries, and the settings that produced them.

    ``queries`` holds the per-query values they are the means of (``None`` when the metrics were
    built by hand, e.g. from a stored document).
    """

    cmc: np.ndarray  # float64 (max_rank,): cmc[r-1] = fraction of valid queries hit within rank r
    mAP: float
    mINP: float
    num_valid: int  # queries with at least one positive after exclusion
    num_query: int
    max_rank: int
    exclusion: str
    cmc_kind: str
    queries: QueryValues | None = None

    def rank(self, r: int) -> float:
        """Rank-``r`` accuracy, ``cmc[r-1]`` (``1 <= r <= max_rank``)."""
        if (
            isinstance(r, bool)
            or not isinstance(r, (int, np.integer))
            or not (1 <= r <= self.max_rank)
        ):
            raise VireidError(f"rank: expected an integer 1 <= r <= {self.max_rank}, got {r!r}")
        return float(self.cmc[r - 1])


def exclusion_mask(
    q_pids: torch.Tensor | np.ndarray,
    g_pids: torch.Tensor | np.ndarray,
    q_camids: torch.Tensor | np.ndarray,
    g_camids: torch.Tensor | np.ndarray,
    rule: Exclusion,
) -> torch.Tensor:
    """Bool ``(n_query, n_gallery)``: True where query ``i`` skips gallery item ``j``.

    On ``q_pids``' device (CPU for NumPy input).
    """
    _check_choice(rule, EXCLUSIONS, "exclusion")
    qp = _as_ids(q_pids, "q_pids")
    device = qp.device
    gp = _as_ids(g_pids, "g_pids", device=device)
    qc = _as_ids(q_camids, "q_camids", n=qp.numel(), like="q_pids", device=device)
    gc = _as_ids(g_camids, "g_camids", n=gp.numel(), like="g_pids", device=device)
    return _exclusion(qp, gp, qc, gc, rule)


def rank_metrics(
    distmat: torch.Tensor | np.ndarray,
    q_pids: torch.Tensor | np.ndarray,
    g_pids: torch.Tensor | np.ndarray,
    q_camids: torch.Tensor | np.ndarray,
    g_camids: torch.Tensor | np.ndarray,
    *,
    exclusion: Exclusion = "sysu",
    cmc_kind: CMCKind = "identity",
    max_rank: int = 20,
    chunk_size: int | None = None,
) -> RankMetrics:
    """Rank metrics of ``distmat`` ``(n_query, n_gallery)``, smaller = closer.

    Runs on ``distmat``'s device; the figures are float64. See the module docstring.
    """
    _check_settings(exclusion, cmc_kind, max_rank, chunk_size)
    dist = _as_distmat(distmat)
    n_query, n_gallery = dist.shape
    device = dist.device
    qp, gp, qc, gc = _check_ids(q_pids, g_pids, q_camids, g_camids, n_query, n_gallery, device)
    chunk = _chunk_rows(chunk_size, n_query, n_gallery)
    scorer = _Scorer(gp, gc, exclusion, cmc_kind)
    for start in range(0, n_query, chunk):
        stop = min(start + chunk, n_query)
        scorer.add(dist[start:stop], qp[start:stop], qc[start:stop])
    return scorer.result(n_query, max_rank)


def rank_metrics_from_features(
    query_features: torch.Tensor | np.ndarray,
    gallery_features: torch.Tensor | np.ndarray,
    q_pids: torch.Tensor | np.ndarray,
    g_pids: torch.Tensor | np.ndarray,
    q_camids: torch.Tensor | np.ndarray,
    g_camids: torch.Tensor | np.ndarray,
    *,
    metric: Metric = "euclidean",
    exclusion: Exclusion = "sysu",
    cmc_kind: CMCKind = "identity",
    max_rank: int = 20,
    chunk_size: int | None = None,
) -> RankMetrics:
    """``rank_metrics(pairwise_distance(query, gallery, metric), ...)`` without the full matrix.

    Distances are computed one chunk of queries at a time, on ``query_features``' device, so the
    peak memory is bounded by ``chunk_size * n_gallery`` (plus the features).
    """
    check_metric(metric)
    _check_settings(exclusion, cmc_kind, max_rank, chunk_size)
    qf = as_feature_tensor(query_features, "query_features")
    device = qf.device
    gf = as_feature_tensor(gallery_features, "gallery_features", device=device)
    n_query, n_gallery = qf.shape[0], gf.shape[0]
    _check_sizes(n_query, n_gallery, "query_features", "gallery_features")
    gallery = PreparedGallery.build(gf, metric, qf.dtype, qf.shape[1])
    qp, gp, qc, gc = _check_ids(q_pids, g_pids, q_camids, g_camids, n_query, n_gallery, device)
    chunk = _chunk_rows(chunk_size, n_query, n_gallery)
    scorer = _Scorer(gp, gc, exclusion, cmc_kind)
    for start in range(0, n_query, chunk):
        stop = min(start + chunk, n_query)
        scorer.add(gallery.distances(qf[start:stop]), qp[start:stop], qc[start:stop])
    return scorer.result(n_query, max_rank)


# ---------------------------------------------------------------------------------------------
# the kernel
# ---------------------------------------------------------------------------------------------


class _Scorer:
    """Accumulates per-query ranks, AP and INP chunk by chunk; reduces them once at the end.

    Per chunk of ``c`` queries the work is: one int64 sort key per (query, gallery item) whose
    order is the ranking (spec: "Computation"), one row sort of the keys, and for the positives
    only (``c x width``, ``width`` = the largest identity in the gallery) a binary search of
    their keys in the sorted rows, which gives their ranks. No per-element gather or cumulative
    sum over ``(c, n_gallery)`` is needed.
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
        if rule == "sysu":
            self.g_skipped = (g_camids == SYSU_SKIPPED_CAMERA).nonzero()[:, 0]
        self.parts: list[tuple[torch.Tensor, ...]] = []

    def add(self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor) -> None:
        self.parts.append(self._chunk(dist.contiguous(), q_pids, q_camids))

    def _chunk(
        self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        c = dist.shape[0]
        device = dist.device
        keys = _order_keys(dist, self.index, self.index_bits)

        # the query's positives candidates: the gallery items of its identity, (c, width)
        label = torch.searchsorted(self.g_ids, q_pids).clamp_max(self.g_ids.numel() - 1)
        known = self.g_ids[label] == q_pids
        slot = torch.arange(self.width, device=device)
        present = known[:, None] & (slot[None] < self.identity_size[label][:, None])
        where = (self.identity_start[label][:, None] + slot[None]).clamp_max(self.index.numel() - 1)
        item = self.by_identity[where]

        # excluded items get a key above every distance: they sort after all kept items, so a
        # kept item's rank is the number of keys up to its own
        if self.rule == "sysu":
            rows = (q_camids == SYSU_QUERY_CAMERA).nonzero()
            keys[rows, self.g_skipped[None]] = _EXCLUDED  # camera-3 rows x camera-2 columns
        elif self.rule == "same-id-same-camera":
            same_camera = present & (self.g_camids[item] == q_camids[:, None])
            rows = torch.arange(c, device=device)[:, None].expand_as(item)
            keys[rows[same_camera], item[same_camera]] = _EXCLUDED
        sorted_keys = _sort_rows(keys)
        if dist.dtype == torch.float64:
            sorted_keys = self._resolve_truncation(dist, keys, sorted_keys)

        pos_keys = torch.where(present, keys.gather(1, item), _PAD)
        pos_keys = torch.where(pos_keys == _EXCLUDED, _PAD, pos_keys)
        pos_keys = torch.sort(pos_keys, dim=1).values
        n_pos = (pos_keys != _PAD).sum(dim=1)
        valid = n_pos > 0
        # 1-based rank of each positive: the number of keys up to and including its own
        ranks = torch.searchsorted(sorted_keys, pos_keys) + 1

        f64 = torch.float64
        m = torch.arange(1, self.width + 1, device=device, dtype=f64)
        precision = torch.where(pos_keys != _PAD, m[None] / ranks.to(f64), 0.0)
        last = (n_pos - 1).clamp_min(0)[:, None]
        # cumsum adds each row left to right whatever the chunk: chunk-independent rounding
        ap = precision.cumsum(dim=1).gather(1, last)[:, 0] / n_pos.clamp_min(1).to(f64)
        inp = n_pos.to(f64) / ranks.gather(1, last)[:, 0].to(f64)
        if self.kind == "standard":
            rank = ranks[:, 0]
        else:
            # an identity precedes the query's own iff its first key is below the first
            # positive's; identities with only excluded items keep _EXCLUDED: never counted
            first = torch.full((c, self.g_ids.numel()), _PAD, device=device)
            first.scatter_reduce_(1, self.g_labels.expand(c, -1), keys, reduce="amin")
            rank = (first <= pos_keys[:, :1]).sum(dim=1)
        return valid, rank, ap, inp, q_pids

    def _resolve_truncation(
        self, dist: torch.Tensor, keys: torch.Tensor, sorted_keys: torch.Tensor
    ) -> torch.Tensor:
        """Rows where two kept float64 keys share their distance part get exact keys.

        Such rows hold ties or two distances equal in all but the dropped low bits; their keys
        are recomputed from a stable sort of the float64 distances (positions in that order).
        """
        bits = self.index_bits
        # neighbours differ only in the index bits: 0 < a ^ b < 2**bits (kept keys are
        # distinct, excluded ones all equal to _EXCLUDED, so a ^ b == 0 only between those)
        xor = sorted_keys[:, 1:] ^ sorted_keys[:, :-1]
        shared = (xor > 0) & (xor < (1 << bits))
        rows = shared.any(dim=1).nonzero()[:, 0]
        if rows.numel() == 0:
            return sorted_keys
        order = torch.sort(dist[rows], dim=1, stable=True).indices
        position = torch.empty_like(order).scatter_(1, order, self.index.expand_as(order))
        sub = keys[rows]
        exact = torch.where(sub == _EXCLUDED, _EXCLUDED, (position << bits) | self.index)
        keys[rows] = exact
        sorted_keys[rows] = _sort_rows(exact)
        return sorted_keys

    def result(self, n_query: int, max_rank: int) -> RankMetrics:
        valid, rank, ap, inp, pids = (
            torch.cat(t).cpu().numpy() for t in zip(*self.parts, strict=True)
        )
        num_valid = int(valid.sum())
        if num_valid == 0:
            raise VireidError(
                f"q_pids: no valid query; none of the {n_query} queries has a gallery item of "
                f"its identity left after the {self.rule!r} exclusion"
            )
        queries = QueryValues(
            ap=np.where(valid, ap, np.nan),
            inp=np.where(valid, inp, np.nan),
            first_hit=np.where(valid, rank, 0),
            valid=valid,
            pids=pids,
        )
        counts = np.bincount(np.minimum(rank[valid], max_rank + 1) - 1, minlength=max_rank + 1)
        cmc = np.cumsum(counts[:max_rank]) / num_valid
        return RankMetrics(
            cmc=cmc.astype(np.float64),
            mAP=float(np.mean(ap[valid])),
            mINP=float(np.mean(inp[valid])),
            num_valid=num_valid,
            num_query=n_query,
            max_rank=max_rank,
            exclusion=self.rule,
            cmc_kind=self.kind,
            queries=queries,
        )


_INT64_MAX = torch.iinfo(torch.int64).max
#: key of an excluded item: above every distance key (those stay below 0x7FF1 << 48)
_EXCLUDED = _INT64_MAX - 1
#: padding of the positives' key matrix: above everything
_PAD = _INT64_MAX


def _order_keys(dist: torch.Tensor, index: torch.Tensor, bits: int) -> torch.Tensor:
    """int64 keys whose order is the order of ``(dist[i, j], j)`` (spec: "Computation").

    The float's bits, read as a signed integer (monotone for non-negative floats; negative ones
    are reflected), form the high part and the gallery index ``j`` the low part. float32 (and
    narrower) distances fit exactly, with ``j`` in the low 32 bits; float64 ones keep all but
    their low ``bits`` bits, and :meth:`_Scorer._resolve_truncation` repairs the rare rows where
    that matters.
    """
    if dist.dtype == torch.float64:
        high = dist.view(torch.int64)
        if int(high.min()) < 0:  # negative distances or -0.0
            high = (dist + 0.0).view(torch.int64)  # -0.0 -> +0.0: equal floats, equal bits
            high = high ^ ((high >> 63) & _INT64_MAX)
        return (high & ~((1 << bits) - 1)) | index
    dist = dist.to(torch.float32)
    high32 = dist.view(torch.int32)
    if int(high32.min()) < 0:
        high32 = (dist + 0.0).view(torch.int32)
        high32 = high32 ^ ((high32 >> 31) & torch.iinfo(torch.int32).max)
    # index + high * 2**32 in one int64 pass (the product is computed in int64)
    return torch.add(index, high32, alpha=1 << 32)


def _sort_rows(keys: torch.Tensor) -> torch.Tensor:
    """Each row sorted ascending (equal keys are interchangeable: only their values are used)."""
    if keys.device.type == "cpu":
        # NumPy's SIMD sort is several times faster than torch's on CPU for int64
        return torch.from_numpy(np.sort(keys.numpy(), axis=1))
    return torch.sort(keys, dim=1).values


def _exclusion(
    q_pids: torch.Tensor,
    g_pids: torch.Tensor,
    q_camids: torch.Tensor,
    g_camids: torch.Tensor,
    rule: str,
) -> torch.Tensor:
    if rule == "sysu":
        return (q_camids == SYSU_QUERY_CAMERA)[:, None] & (g_camids == SYSU_SKIPPED_CAMERA)[None]
    if rule == "same-id-same-camera":
        return (q_pids[:, None] == g_pids[None]) & (q_camids[:, None] == g_camids[None])
    return torch.zeros(q_pids.numel(), g_pids.numel(), dtype=torch.bool, device=q_pids.device)


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------


def _chunk_rows(chunk_size: int | None, n_query: int, n_gallery: int) -> int:
    if chunk_size is None:
        chunk_size = max(DEFAULT_MIN_CHUNK_ROWS, DEFAULT_CHUNK_ELEMENTS // max(n_gallery, 1))
    return max(1, min(chunk_size, n_query))


def _check_choice(value: object, choices: tuple[str, ...], field: str) -> None:
    if value not in choices:
        raise VireidError(
            f"{field}: unknown value {value!r}; expected one of "
            + ", ".join(repr(c) for c in choices)
        )


def _check_settings(
    exclusion: object, cmc_kind: object, max_rank: object, chunk_size: object
) -> None:
    _check_choice(exclusion, EXCLUSIONS, "exclusion")
    _check_choice(cmc_kind, CMC_KINDS, "cmc_kind")
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise VireidError(f"max_rank: expected an integer >= 1, got {max_rank!r}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise VireidError(f"chunk_size: expected None or an integer >= 1, got {chunk_size!r}")


def _check_sizes(n_query: int, n_gallery: int, q_field: str, g_field: str) -> None:
    if n_gallery == 0:
        raise VireidError(f"{g_field}: empty gallery; expected at least one gallery item")
    if n_query == 0:
        raise VireidError(f"{q_field}: no query; expected at least one query")


def _as_distmat(distmat: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(distmat, np.ndarray):
        if not np.issubdtype(distmat.dtype, np.floating):
            raise VireidError(
                f"distmat: expected a floating-point array (n_query, n_gallery), "
                f"got dtype {distmat.dtype}"
            )
        distmat = torch.from_numpy(np.ascontiguousarray(distmat))
    elif not isinstance(distmat, torch.Tensor):
        raise VireidError(
            f"distmat: expected a torch.Tensor or numpy.ndarray, got {type(distmat)!r}"
        )
    if not distmat.dtype.is_floating_point:
        raise VireidError(
            f"distmat: expected a floating-point array (n_query, n_gallery), "
            f"got dtype {distmat.dtype}"
        )
    if distmat.dim() != 2:
        raise VireidError(
            f"distmat: expected a 2-D array (n_query, n_gallery), got shape {tuple(distmat.shape)}"
        )
    _check_sizes(distmat.shape[0], distmat.shape[1], "distmat", "distmat")
    # a finite sum proves every entry finite (NaN and inf propagate), at a fraction of the cost
    # of an elementwise test; only a non-finite sum (or an overflow) needs the search
    if not bool(torch.isfinite(distmat.sum())) and not bool(torch.isfinite(distmat).all()):
        i, j = (int(v) for v in (~torch.isfinite(distmat)).nonzero()[0])
        raise VireidError(
            f"distmat: contains NaN or inf (first at row {i}, column {j}); expected finite"
        )
    return distmat.detach()  # scores are not differentiable; keys reinterpret the bits


def _as_ids(
    ids: object,
    field: str,
    *,
    n: int | None = None,
    like: str = "",
    device: torch.device | None = None,
) -> torch.Tensor:
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise VireidError(f"{field}: expected integer ids, got dtype {ids.dtype}")
        tensor = ids
    else:
        array = np.asarray(ids)
        if not np.issubdtype(array.dtype, np.integer):
            raise VireidError(f"{field}: expected integer ids, got dtype {array.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(array.astype(np.int64, copy=False)))
    if tensor.dim() != 1:
        raise VireidError(f"{field}: expected a 1-D array, got shape {tuple(tensor.shape)}")
    if n is not None and tensor.numel() != n:
        raise VireidError(f"{field}: expected shape ({n},) like {like}, got ({tensor.numel()},)")
    return tensor.to(device=device, dtype=torch.int64)


def _check_ids(
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    n_query: int,
    n_gallery: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    rows, cols = "the query rows", "the gallery rows"
    return (
        _as_ids(q_pids, "q_pids", n=n_query, like=rows, device=device),
        _as_ids(g_pids, "g_pids", n=n_gallery, like=cols, device=device),
        _as_ids(q_camids, "q_camids", n=n_query, like=rows, device=device),
        _as_ids(g_camids, "g_camids", n=n_gallery, like=cols, device=device),
    )
