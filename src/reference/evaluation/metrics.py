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
peak memory is bounded by ``chunk_size * n_gallery`` whatever ``n_query`` is. The per-query values
of a chunk come from ``ranking.QueryScorer`` (its reference kernel, and the float32 fast path that
equals it); they are kept (``RankMetrics.queries``) and reduced once at the end by NumPy, so the
figures do not depend on the chunk size and are exactly the means of the per-query values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from reference.chunks import balanced_rows, rows_per_chunk
from reference.errors import VireidError
from reference.evaluation.distance import (
    Metric,
    PreparedGallery,
    as_feature_tensor,
    as_float_matrix,
    check_metric,
    first_non_finite,
)
from reference.evaluation.ranking import (
    SYSU_QUERY_CAMERA,
    SYSU_SKIPPED_CAMERA,
    ChunkValues,
    QueryScorer,
)
from reference.evaluation.threads import run_each, threads_for

Exclusion = Literal["sysu", "same-id-same-camera", "none"]
CMCKind = Literal["identity", "standard"]
EXCLUSIONS: tuple[str, ...] = ("sysu", "same-id-same-camera", "none")
CMC_KINDS: tuple[str, ...] = ("identity", "standard")

__all__ = [
    "SYSU_QUERY_CAMERA",
    "SYSU_SKIPPED_CAMERA",
    "QueryValues",
    "RankMetrics",
    "as_distmat",
    "assemble_metrics",
    "check_ids",
    "check_settings",
    "chunk_rows",
    "exclusion_mask",
    "rank_metrics",
    "rank_metrics_from_features",
    "side_by_side_rows",
]

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
    check_settings(exclusion, cmc_kind, max_rank, chunk_size)
    dist = as_distmat(distmat)
    n_query, n_gallery = dist.shape
    device = dist.device
    qp, gp, qc, gc = check_ids(q_pids, g_pids, q_camids, g_camids, n_query, n_gallery, device)
    chunk, threads = side_by_side_rows(chunk_size, n_query, n_gallery, device)
    scorer = QueryScorer(gp, gc, exclusion, cmc_kind)

    def score_chunk(s: int) -> ChunkValues:
        return scorer.chunk(dist[s : s + chunk], qp[s : s + chunk], qc[s : s + chunk])

    parts = run_each(score_chunk, range(0, n_query, chunk), threads, "chunks", inner_threads=1)
    return assemble_metrics(parts, exclusion, cmc_kind, max_rank)


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
    check_settings(exclusion, cmc_kind, max_rank, chunk_size)
    qf = as_feature_tensor(query_features, "query_features")
    device = qf.device
    gf = as_feature_tensor(gallery_features, "gallery_features", device=device)
    n_query, n_gallery = qf.shape[0], gf.shape[0]
    _check_sizes(n_query, n_gallery, "query_features", "gallery_features")
    gallery = PreparedGallery.build(gf, metric, qf.dtype, qf.shape[1])
    qp, gp, qc, gc = check_ids(q_pids, g_pids, q_camids, g_camids, n_query, n_gallery, device)
    chunk = chunk_rows(chunk_size, n_query, n_gallery)
    scorer = QueryScorer(gp, gc, exclusion, cmc_kind)
    parts = [
        scorer.chunk(gallery.distances(qf[s : s + chunk]), qp[s : s + chunk], qc[s : s + chunk])
        for s in range(0, n_query, chunk)
    ]
    return assemble_metrics(parts, exclusion, cmc_kind, max_rank)


def assemble_metrics(parts: list, rule: str, kind: str, max_rank: int) -> RankMetrics:
    """The per-query values of every chunk, and their means (NumPy's, once)."""
    valid, rank, ap, inp, pids = (torch.cat(t).cpu().numpy() for t in zip(*parts, strict=True))
    n_query = int(valid.shape[0])
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise VireidError(
            f"q_pids: no valid query; none of the {n_query} queries has a gallery item of "
            f"its identity left after the {rule!r} exclusion"
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
        exclusion=rule,
        cmc_kind=kind,
        queries=queries,
    )


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


def chunk_rows(chunk_size: int | None, n_query: int, n_gallery: int) -> int:
    """Queries per chunk: ``chunk_size``, or the default for this gallery size (section Memory)."""
    if chunk_size is None:
        chunk_size = max(DEFAULT_MIN_CHUNK_ROWS, rows_per_chunk(n_gallery, DEFAULT_CHUNK_ELEMENTS))
    return max(1, min(chunk_size, n_query))


def side_by_side_rows(
    chunk_size: int | None, n_query: int, n_gallery: int, device: torch.device
) -> tuple[int, int | None]:
    """``(queries per chunk, threads)`` for chunks ranked side by side (``run_each``): on the CPU
    on torch's threads, each chunk on one thread of its own, the default chunks' count rounded
    up to a multiple of the thread count (``balanced_rows``); elsewhere one after the other.
    Each chunk's values are what it computes alone: the same figures (section Memory)."""
    threads = threads_for(device)
    chunk = chunk_rows(chunk_size, n_query, n_gallery)
    if chunk_size is None and threads is None:
        chunk = balanced_rows(n_query, chunk, torch.get_num_threads())
    return chunk, threads


def _check_choice(value: object, choices: tuple[str, ...], field: str) -> None:
    if value not in choices:
        raise VireidError(
            f"{field}: unknown value {value!r}; expected one of "
            + ", ".join(repr(c) for c in choices)
        )


def check_settings(
    exclusion: object, cmc_kind: object, max_rank: object, chunk_size: object
) -> None:
    """The rank settings checked, each error naming its argument."""
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


def as_distmat(distmat: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``distmat`` as a checked floating ``(n_query, n_gallery)`` tensor (the messages pinned)."""
    distmat = as_float_matrix(distmat, "distmat", "(n_query, n_gallery)", shape_on_type=False)
    _check_sizes(distmat.shape[0], distmat.shape[1], "distmat", "distmat")
    bad = first_non_finite(distmat)
    if bad is not None:
        raise VireidError(
            f"distmat: contains NaN or inf (first at row {bad[0]}, column {bad[1]}); "
            "expected finite"
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
        # a copy where the array is read-only (torch would warn about sharing it)
        ids = np.require(array.astype(np.int64, copy=False), requirements=["C", "W"])
        tensor = torch.from_numpy(ids)
    if tensor.dim() != 1:
        raise VireidError(f"{field}: expected a 1-D array, got shape {tuple(tensor.shape)}")
    if n is not None and tensor.numel() != n:
        raise VireidError(f"{field}: expected shape ({n},) like {like}, got ({tensor.numel()},)")
    return tensor.to(device=device, dtype=torch.int64)


def check_ids(
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    n_query: int,
    n_gallery: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four label arrays as int64 tensors on ``device``, checked against the shape."""
    rows, cols = "the query rows", "the gallery rows"
    return (
        _as_ids(q_pids, "q_pids", n=n_query, like=rows, device=device),
        _as_ids(g_pids, "g_pids", n=n_gallery, like=cols, device=device),
        _as_ids(q_camids, "q_camids", n=n_query, like=rows, device=device),
        _as_ids(g_camids, "g_camids", n=n_gallery, like=cols, device=device),
    )
