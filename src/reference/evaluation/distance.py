"""Query x gallery distances for ranking: smaller is closer.

Spec: ``spec/evaluation/distance.md``.

- ``euclidean``: ``D[i, j] = ||q_i - g_j||_2``, computed as
  ``sqrt(max(||q_i||^2 + ||g_j||^2 - 2 q_i . g_j, 0))`` (one matrix product).
- ``cosine``: ``D[i, j] = 1 - (q_i . g_j) / (||q_i|| ||g_j||)``; a zero-norm feature is an error.

Dtype: float64 features give float64 distances and float32 features float32 distances (the
field's features are float32 and so are its distances); float16/bfloat16 features are computed
in float32. The result lives on the features' device. Rank metrics only compare distances, and
accumulate their own sums in float64 whatever this dtype is.
"""

from __future__ import annotations

import numpy as np
import torch

from reference.checks import METRICS, Metric, check_integer, check_known
from reference.errors import VireidError

__all__ = [
    "METRICS",
    "Metric",
    "PreparedGallery",
    "PreparedQueries",
    "as_feature_tensor",
    "as_float_matrix",
    "check_metric",
    "first_non_finite",
    "pairwise_distance",
    "pairwise_distance_partial",
]


def check_metric(metric: object) -> None:
    """Raise :class:`VireidError` unless ``metric`` is one of :data:`METRICS` (the evaluation's
    wording, ``metric: unknown metric 'x'; expected one of ...``)."""
    check_known(metric, "metric", METRICS, "metric")


def as_float_matrix(
    value: torch.Tensor | np.ndarray, field: str, shape: str, *, shape_on_type: bool = True
) -> torch.Tensor:
    """A floating-point 2-D tensor from a tensor or an array (an array is not copied).

    Anything else raises :class:`VireidError` naming ``field`` and the expected ``shape``
    (``"(n, d)"``, ``"(n_query, n_gallery)"``); ``shape_on_type=False`` leaves the shape out of
    the message about a value that is neither a tensor nor an array.
    """
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.floating):
            raise VireidError(
                f"{field}: expected a floating-point array {shape}, got dtype {value.dtype}"
            )
        value = torch.from_numpy(np.ascontiguousarray(value))
    elif not isinstance(value, torch.Tensor):
        named = f" {shape}" if shape_on_type else ""
        raise VireidError(
            f"{field}: expected a torch.Tensor or numpy.ndarray{named}, got {type(value)!r}"
        )
    if not value.dtype.is_floating_point:
        raise VireidError(
            f"{field}: expected a floating-point array {shape}, got dtype {value.dtype}"
        )
    if value.dim() != 2:
        raise VireidError(f"{field}: expected a 2-D array {shape}, got shape {tuple(value.shape)}")
    return value


def first_non_finite(matrix: torch.Tensor) -> tuple[int, int] | None:
    """``(row, column)`` of the first NaN or inf of a 2-D tensor (row-major order); ``None`` when
    every entry is finite. A finite sum proves every entry finite (NaN and inf propagate) at a
    fraction of the cost of an elementwise test; only a non-finite sum (or an overflow) searches."""
    if bool(torch.isfinite(matrix.sum())) or bool(torch.isfinite(matrix).all()):
        return None
    i, j = (int(v) for v in (~torch.isfinite(matrix)).nonzero()[0])
    return i, j


def as_feature_tensor(
    features: torch.Tensor | np.ndarray, field: str, device: torch.device | None = None
) -> torch.Tensor:
    """A finite floating (n, d) tensor (float32 or float64) from a tensor or an array."""
    features = as_float_matrix(features, field, "(n, d)")
    if device is not None:
        features = features.to(device)
    if features.dtype not in (torch.float32, torch.float64):
        features = features.to(torch.float32)
    bad = first_non_finite(features)
    if bad is not None:
        raise VireidError(f"{field}: contains NaN or inf (first in row {bad[0]}); expected finite")
    return features.detach()


#: the distances' rows start this many bytes apart at least, a multiple of it (a cache line)
ROW_ALIGN_BYTES = 64


def empty_distances(
    n_query: int, n_gallery: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """An uninitialised ``(n_query, n_gallery)`` matrix whose rows start a multiple of
    ``ROW_ALIGN_BYTES`` apart: a view of the first ``n_gallery`` columns of a matrix as wide
    as that needs (spec, "Rows a cache line apart": the products write there faster)."""
    per_line = max(1, ROW_ALIGN_BYTES // torch.empty((), dtype=dtype).element_size())
    width = -(-n_gallery // per_line) * per_line
    return torch.empty(n_query, width, dtype=dtype, device=device)[:, :n_gallery]


def pairwise_distance(
    query: torch.Tensor | np.ndarray,
    gallery: torch.Tensor | np.ndarray,
    metric: Metric = "euclidean",
) -> torch.Tensor:
    """Distances ``(n_query, n_gallery)`` between the rows of ``query`` and of ``gallery``.

    Runs on ``query``'s device (``gallery`` is moved there). See the module docstring for the
    formulas and the dtype rule. The rows lie a cache line apart (``empty_distances``): a view
    of a wider matrix, the values of a compact one.
    """
    check_metric(metric)
    q = as_feature_tensor(query, "query_features")
    g = as_feature_tensor(gallery, "gallery_features", device=q.device)
    prepared = PreparedGallery.build(g, metric, q.dtype, q.shape[1])
    return prepared.distances(q)


def pairwise_distance_partial(
    query: torch.Tensor | np.ndarray,
    gallery: torch.Tensor | np.ndarray,
    metric: Metric = "euclidean",
    *,
    short_rows: torch.Tensor | np.ndarray,
    width: int,
) -> torch.Tensor:
    """``pairwise_distance(query, gallery, metric)`` except in the block that a ranking rule
    never reads: the rows flagged by ``short_rows`` (bool, one per query) hold their first
    ``width`` distances only; their columns ``width:`` hold 0, no distance (a ranking must apply
    the rule that skips them: without it they would rank first).

    SYSU-MM01's camera rule is such a block (``sysu.md``): its camera-3 queries skip every
    camera-2 gallery item, which the protocol lists last. Two products instead of one: every
    row against the first ``width`` columns, written in place into the result, and the other
    rows against the rest. Each computed entry is the same formula as the plain call's (spec,
    "Rows that skip columns").
    """
    check_metric(metric)
    q = as_feature_tensor(query, "query_features")
    g = as_feature_tensor(gallery, "gallery_features", device=q.device)
    n_query, n_gallery = q.shape[0], g.shape[0]
    width = check_integer(width, "width", low=0, high=n_gallery)
    short = torch.as_tensor(short_rows, device=q.device)
    if short.dtype != torch.bool or tuple(short.shape) != (n_query,):
        raise VireidError(
            f"short_rows: expected a bool array of shape ({n_query},) (one per query), got "
            f"{tuple(short.shape)} of {short.dtype}"
        )
    prepared = PreparedGallery.build(g, metric, q.dtype, q.shape[1])
    queries = PreparedQueries.build(q, metric, prepared.gallery.dtype)
    out = empty_distances(n_query, n_gallery, prepared.gallery.dtype, q.device)
    prepared.columns(0, width).distances_into(queries, out[:, :width])
    if width < n_gallery:
        tail = out[:, width:]
        tail[short] = 0.0
        full = (~short).nonzero()[:, 0]
        if full.numel():
            rest = prepared.columns(width, n_gallery).distances_to(queries.subset(full))
            tail.index_copy_(0, full, rest)
    return out


class PreparedGallery:
    """The gallery side of the distance, computed once for many query chunks.

    ``euclidean`` keeps the gallery and its squared norms; ``cosine`` the L2-normalised gallery.
    """

    def __init__(self, gallery: torch.Tensor, sq_norms: torch.Tensor | None, metric: str):
        self.gallery = gallery
        self.sq_norms = sq_norms
        self.metric = metric

    @classmethod
    def build(
        cls, gallery: torch.Tensor, metric: str, query_dtype: torch.dtype, dim: int
    ) -> PreparedGallery:
        """From a checked gallery (``as_feature_tensor``) and the queries' dtype and width."""
        if gallery.shape[1] != dim:
            raise VireidError(
                f"gallery_features: expected {dim} columns like query_features, "
                f"got {gallery.shape[1]}"
            )
        g = gallery.to(torch.promote_types(query_dtype, gallery.dtype))
        if metric == "cosine":
            return cls(_unit_rows(g, "gallery_features"), None, metric)
        return cls(g, (g * g).sum(dim=1), metric)

    def columns(self, start: int, stop: int) -> PreparedGallery:
        """This gallery's items ``start:stop`` (views, no copy)."""
        norms = None if self.sq_norms is None else self.sq_norms[start:stop]
        return PreparedGallery(self.gallery[start:stop], norms, self.metric)

    def distances(self, query: torch.Tensor) -> torch.Tensor:
        """``(n_query, n_gallery)`` distances of checked queries to this gallery."""
        return self.distances_to(PreparedQueries.build(query, self.metric, self.gallery.dtype))

    def distances_to(self, queries: PreparedQueries) -> torch.Tensor:
        """:meth:`distances` of queries prepared once (:class:`PreparedQueries`) in this
        gallery's metric and dtype."""
        out = empty_distances(
            queries.rows.shape[0], self.gallery.shape[0], self.gallery.dtype, self.gallery.device
        )
        return self.distances_into(queries, out)

    def distances_into(self, queries: PreparedQueries, out: torch.Tensor) -> torch.Tensor:
        """:meth:`distances_to` written into ``out`` (``(n_query, n_gallery)``, rows of unit
        column stride, such as a block of columns of a larger matrix: the product writes there
        in place) and returned."""
        if queries.metric != self.metric or queries.rows.dtype != self.gallery.dtype:
            raise VireidError(
                f"queries: prepared for {queries.metric} in {queries.rows.dtype}, the gallery "
                f"for {self.metric} in {self.gallery.dtype}"
            )
        if self.metric == "cosine":
            out.fill_(1.0)
            return out.addmm_(queries.rows, self.gallery.T, alpha=-1.0)
        # |q|^2 + |g|^2 - 2 q.g in one fused product; rounding can dip below zero when q ~ g:
        # clamp before the root. The product adds into the matrix of norms in place
        # (``addmm_``): the same BLAS call as ``torch.addmm(bias, ...)``, the same values, without
        # a second (n_query, n_gallery) matrix to allocate and copy the norms into (spec)
        torch.add(queries.sq_norms, self.sq_norms, out=out)
        return out.addmm_(queries.rows, self.gallery.T, alpha=-2.0).clamp_min_(0.0).sqrt_()


class PreparedQueries:
    """The query side of the distance: ``euclidean`` keeps the queries and their squared norms,
    ``cosine`` the L2-normalised queries, in the dtype of the galleries they meet.

    Built once for queries scored against several galleries (LLCM draws a gallery per trial for
    the same queries): ``PreparedGallery.build(g, ...).distances_to(prepared)`` is then
    ``pairwise_distance(queries, g, metric)`` to the last bit, the same operations in the same
    order (``tests/evaluation/test_distance.py::test_prepared_queries_equal_the_plain_call``).
    """

    def __init__(
        self, query: torch.Tensor, rows: torch.Tensor, sq_norms: torch.Tensor | None, metric: str
    ):
        self.query = query  # as given (checked), for a gallery of a wider dtype
        self.rows = rows
        self.sq_norms = sq_norms
        self.metric = metric

    @classmethod
    def build(cls, query: torch.Tensor, metric: str, dtype: torch.dtype) -> PreparedQueries:
        """From checked queries (``as_feature_tensor``), for galleries of ``dtype``."""
        q = query.to(dtype)
        if metric == "cosine":
            return cls(query, _unit_rows(q, "query_features"), None, metric)
        return cls(query, q, (q * q).sum(dim=1, keepdim=True), metric)

    def subset(self, index: torch.Tensor) -> PreparedQueries:
        """The queries ``index`` (copies of their prepared rows: the same values). Where the
        prepared rows are the queries themselves (Euclidean, same dtype) one copy serves both."""
        norms = None if self.sq_norms is None else self.sq_norms[index]
        rows = self.rows[index]
        query = rows if self.query is self.rows else self.query[index]
        return PreparedQueries(query, rows, norms, self.metric)

    @classmethod
    def of(cls, query: torch.Tensor | np.ndarray, metric: str) -> PreparedQueries:
        """Checked queries prepared for galleries of their own dtype (the dtype rule's float32
        for half-precision features)."""
        check_metric(metric)
        q = as_feature_tensor(query, "query_features")
        return cls.build(q, metric, q.dtype)

    def distances(self, gallery: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``pairwise_distance(queries, gallery, metric)`` with this preparation reused (it is
        rebuilt only when ``gallery`` widens the dtype)."""
        g = as_feature_tensor(gallery, "gallery_features", device=self.rows.device)
        prepared = PreparedGallery.build(g, self.metric, self.rows.dtype, self.rows.shape[1])
        if prepared.gallery.dtype != self.rows.dtype:
            return prepared.distances(self.query)
        return prepared.distances_to(self)


def _unit_rows(x: torch.Tensor, field: str) -> torch.Tensor:
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    zero = norm[:, 0] == 0
    if bool(zero.any()):
        row = int(zero.nonzero()[0, 0])
        raise VireidError(
            f"{field}: row {row} has zero norm; the cosine distance needs non-zero features"
        )
    return x / norm
