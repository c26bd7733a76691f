"""k-reciprocal re-ranking (Zhong et al., CVPR 2017): a query x gallery distance, smaller = closer.

Spec: ``spec/evaluation/rerank.md``.

Over the ``N = n_query + n_gallery`` items, with ``d`` the metric's distance:

- original distance ``o(i, j) = d(i, j)^2 / max_k d(i, k)^2`` (0 for a row whose maximum is 0);
- ``N(i, k)``: the first ``k + 1`` items of ``i``'s list ordered by ``(o(i, j), j)``;
- ``R(i, k) = {j in N(i, k) : i in N(j, k)}``; with ``h = round(k1 / 2)`` (ties to even),
  ``R*(i) = R(i, k1)`` united with every ``R(c, h)``, ``c in R(i, k1)``, for which
  ``3 |R(i, k1) & R(c, h)| > 2 |R(c, h)|``;
- ``V[i, j] = exp(-o(i, j)) / sum_{t in R*(i)} exp(-o(i, t))`` for ``j in R*(i)``, else 0;
- local query expansion ``W[i] = mean of V[j]`` over the first ``k2`` items ``j`` of ``i``'s list;
- Jaccard distance ``J(i, j) = 1 - sum_t min(W[i,t], W[j,t]) / sum_t max(W[i,t], W[j,t])``
  (1 when both rows are zero);
- result ``(1 - lambda) J(i, j) + lambda o(i, j)`` for query ``i`` and gallery item ``j``.

Memory: the N x N matrices are never formed. Row chunks of ``o`` give the neighbour lists
(``N x (k1 + 1)``), ``V`` is kept as ``N x M`` (index, weight) pairs (``M = (k1 + 1)(h + 2)``),
``W`` as its non-zero entries, and ``sum_t min`` is accumulated from the pairs of non-zero
entries that share a column, for a bounded number of pairs at a time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reference.chunks import rows_per_chunk
from reference.errors import VireidError
from reference.evaluation.distance import Metric, PreparedGallery, as_feature_tensor, check_metric

METHODS: tuple[str, ...] = ("k-reciprocal",)
#: working-set targets: elements of one (rows, N) distance chunk (8 MB as float64), and
#: (query, gallery) pairs of shared non-zero columns handled at once (about 60 MB of work arrays)
CHUNK_ELEMENTS = 1 << 20
PAIR_BUDGET = 1 << 20


@dataclass(frozen=True)
class RerankSettings:
    """``--rerank k-reciprocal --k1 20 --k2 6 --lambda 0.3`` (the published defaults)."""

    method: str = "k-reciprocal"
    k1: int = 20
    k2: int = 6
    lambda_: float = 0.3

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise VireidError(
                f"rerank: unknown method {self.method!r}; expected one of "
                + ", ".join(repr(m) for m in METHODS)
            )
        for name in ("k1", "k2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise VireidError(f"{name}: expected an integer >= 1, got {value!r}")
        lam = self.lambda_
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
            raise VireidError(f"lambda: expected a number in [0, 1], got {lam!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "k1": self.k1, "k2": self.k2, "lambda": self.lambda_}

    def describe(self) -> str:
        return f"{self.method} re-ranking (k1={self.k1}, k2={self.k2}, lambda={self.lambda_})"


def reranked_distance(
    query: torch.Tensor, gallery: torch.Tensor, metric: str, settings: RerankSettings
) -> torch.Tensor:
    """:func:`k_reciprocal_distance` with the settings of ``settings``."""
    return k_reciprocal_distance(
        query, gallery, metric, k1=settings.k1, k2=settings.k2, lambda_=settings.lambda_
    )


def k_reciprocal_distance(
    query: torch.Tensor | np.ndarray,
    gallery: torch.Tensor | np.ndarray,
    metric: Metric = "euclidean",
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_: float = 0.3,
) -> torch.Tensor:
    """Re-ranked float64 distances ``(n_query, n_gallery)`` (see the module docstring)."""
    check_metric(metric)
    RerankSettings(k1=k1, k2=k2, lambda_=lambda_)  # validates
    q = as_feature_tensor(query, "query_features")
    g = as_feature_tensor(gallery, "gallery_features", device=q.device)
    if g.shape[1] != q.shape[1]:
        raise VireidError(
            f"gallery_features: expected {q.shape[1]} columns like query_features, got {g.shape[1]}"
        )
    dtype = torch.promote_types(q.dtype, g.dtype)
    items = torch.cat([q.to(dtype), g.to(dtype)])
    n_query, n = q.shape[0], items.shape[0]
    prepared = PreparedGallery.build(items, metric, dtype, items.shape[1])
    rows = rows_per_chunk(n, CHUNK_ELEMENTS)

    def original(start: int, stop: int) -> torch.Tensor:
        d = prepared.distances(items[start:stop]).to(torch.float64).square_()
        top = d.max(dim=1, keepdim=True).values
        return torch.where(top > 0, d / torch.where(top > 0, top, 1.0), 0.0)

    # pass 1: neighbour lists, ordered by (o(i, j), j)
    k, listed = min(k1 + 1, n), min(max(k1 + 1, k2), n)
    ranked = torch.empty(n, listed, dtype=torch.int64, device=items.device)
    for s in range(0, n, rows):
        o = original(s, min(s + rows, n))
        ranked[s : s + o.shape[0]] = torch.sort(o, dim=1, stable=True).indices[:, :listed]
    neighbours = ranked[:, :k]
    half = min(round(k1 / 2) + 1, n)
    reciprocal = _reciprocal(neighbours)  # (n, k) bool: neighbours[i, a] in R(i, k1)
    half_nn = neighbours[:, :half]
    half_members = torch.where(_reciprocal(half_nn), half_nn, -1)  # R(c, h), -1 padded
    members = torch.where(reciprocal, neighbours, -2)  # R(i, k1), -2 padded

    # pass 2: V as (index, weight) rows
    width = k + k * half
    v_index = torch.empty(n, width, dtype=torch.int64, device=items.device)
    v_weight = torch.empty(n, width, dtype=torch.float64, device=items.device)
    for s in range(0, n, rows):
        e = min(s + rows, n)
        cand = half_members[neighbours[s:e]]  # (c, k, half): R(c, h) of each neighbour c
        mine = members[s:e]
        overlap = (cand[..., None] == mine[:, None, None, :]).any(-1).sum(-1)
        size = (cand >= 0).sum(-1)
        take = reciprocal[s:e] & (3 * overlap > 2 * size)
        extra = torch.where(take[..., None] & (cand >= 0), cand, -1).flatten(1)
        expansion = torch.sort(torch.cat([torch.where(mine >= 0, mine, -1), extra], 1), 1).values
        keep = (expansion >= 0) & torch.cat(
            [expansion[:, :1] >= 0, expansion[:, 1:] != expansion[:, :-1]], 1
        )
        index = expansion.clamp_min(0)
        weight = torch.where(keep, torch.exp(-original(s, e).gather(1, index)), 0.0)
        total = weight.sum(1, keepdim=True)
        v_index[s:e] = index
        v_weight[s:e] = torch.where(total > 0, weight / torch.where(total > 0, total, 1.0), 0.0)

    # local query expansion: W[i] = mean of V over i's first k2 neighbours, as non-zero entries
    w_row, w_col, w_val = _expand(ranked[:, : min(k2, n)], v_index, v_weight, n)
    w_sum = torch.zeros(n, dtype=torch.float64, device=items.device).index_add_(0, w_row, w_val)

    # Jaccard of every query with every gallery item, then the mix with o(i, j)
    out = _shared_min(w_row, w_col, w_val, n_query, n)  # sum of minima; becomes the result
    for s in range(0, n_query, rows):
        e = min(s + rows, n_query)
        shared = out[s:e]
        union = w_sum[s:e, None] + w_sum[None, n_query:] - shared
        jac = torch.where(union > 0, 1.0 - shared / torch.where(union > 0, union, 1.0), 1.0)
        out[s:e] = (1.0 - lambda_) * jac + lambda_ * original(s, e)[:, n_query:]
    return out


def pair_groups(per_row: list[int], budget: int) -> list[int]:
    """Bounds ``[0, b_1, ..., len(per_row)]`` of consecutive groups of rows, greedily: a row
    starts a new group when the current group already holds pairs and the row's ``per_row``
    pairs would take it past ``budget``. A group therefore holds at most ``budget`` pairs, or
    its pairs come from one row (a row is never split)."""
    bounds = [0]
    total = 0
    for r, p in enumerate(per_row):
        if total and total + p > budget:
            bounds.append(r)
            total = 0
        total += p
    bounds.append(len(per_row))
    return bounds


def _reciprocal(nn: torch.Tensor) -> torch.Tensor:
    """``(n, k)`` bool: ``i`` is among the first ``k`` neighbours of its neighbour ``nn[i, a]``."""
    n = nn.shape[0]
    out = torch.empty_like(nn, dtype=torch.bool)
    step = rows_per_chunk(nn.shape[1] ** 2, CHUNK_ELEMENTS)
    for s in range(0, n, step):
        e = min(s + step, n)
        own = torch.arange(s, e, device=nn.device)[:, None, None]
        out[s:e] = (nn[nn[s:e]] == own).any(-1)
    return out


def _expand(
    first: torch.Tensor, v_index: torch.Tensor, v_weight: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Non-zero entries ``(row, column, value)`` of ``W``, sorted by row then column."""
    k2 = first.shape[1]
    rows_out, cols_out, vals_out = [], [], []
    step = rows_per_chunk(k2 * v_index.shape[1], CHUNK_ELEMENTS)
    for s in range(0, n, step):
        e = min(s + step, n)
        cols = v_index[first[s:e]].flatten(1)  # (c, k2 * M)
        vals = v_weight[first[s:e]].flatten(1)
        local = torch.arange(e - s, device=cols.device)[:, None].expand_as(cols)
        nz = vals > 0
        key = (local[nz] * n + cols[nz]).contiguous()
        unique, inverse = torch.unique(key, sorted=True, return_inverse=True)
        summed = torch.zeros(unique.numel(), dtype=torch.float64, device=cols.device)
        summed.index_add_(0, inverse, vals[nz])
        rows_out.append(unique // n + s)
        cols_out.append(unique % n)
        vals_out.append(summed / k2)
    return torch.cat(rows_out), torch.cat(cols_out), torch.cat(vals_out)


def _shared_min(
    row: torch.Tensor, col: torch.Tensor, val: torch.Tensor, n_query: int, n: int
) -> torch.Tensor:
    """``S[i, j - n_query] = sum_t min(W[i, t], W[j, t])`` for queries ``i``, gallery items ``j``.

    Only columns where both rows are non-zero contribute: the gallery entries are grouped by
    column, and each query entry is paired with the gallery entries of its column.
    """
    device = row.device
    n_gallery = n - n_query
    is_gallery = row >= n_query
    g_col, order = torch.sort(col[is_gallery], stable=True)
    g_row = row[is_gallery][order] - n_query
    g_val = val[is_gallery][order]
    count = torch.bincount(g_col, minlength=n)
    start = count.cumsum(0) - count
    q_row, q_col, q_val = row[~is_gallery], col[~is_gallery], val[~is_gallery]
    pairs = count[q_col]  # gallery partners of each query entry
    out = torch.zeros(n_query, n_gallery, dtype=torch.float64, device=device)
    per_row = torch.zeros(n_query, dtype=torch.int64, device=device).index_add_(0, q_row, pairs)
    bounds = pair_groups(per_row.tolist(), PAIR_BUDGET)
    entry_bounds = torch.searchsorted(q_row, torch.tensor(bounds, device=device)).tolist()
    for a, b in itertools.pairwise(entry_bounds):
        if a == b:
            continue
        p = pairs[a:b]
        which = torch.repeat_interleave(torch.arange(a, b, device=device), p)
        offset = torch.arange(which.numel(), device=device) - torch.repeat_interleave(
            p.cumsum(0) - p, p
        )
        partner = start[q_col[which]] + offset
        contrib = torch.minimum(q_val[which], g_val[partner])
        flat = q_row[which] * n_gallery + g_row[partner]
        out.view(-1).index_add_(0, flat, contrib)
    return out
