"""Pairwise distances between feature rows, shared by every metric loss.

Spec: ``spec/losses/distances.md``.

- Euclidean: ``D[i, j] = ||x_i - y_j||_2``. Fast path: the expansion
  ``sq = |a_i|^2 + |b_j|^2 - 2 a_i.b_j`` (one matrix product) on rows shifted by a common vector
  ``s`` (``a = x - s``, ``b = y - s``; the distance does not change, the cancellation shrinks).
  Exact path: wherever the expansion may have cancelled away more than two bits,
  ``sq <= NEAR * (|a_i|^2 + |b_j|^2)`` with ``NEAR = 1/4``, the entry is recomputed from the
  difference ``sum_k (x_ik - y_jk)^2`` of the original rows. So identical rows are at distance
  exactly 0, near-duplicates keep their digits, and every other entry has a relative error of a
  few ulps. Safe square root: ``sqrt`` only ever sees positive entries (a where-trick); entries
  with ``sq == 0`` are 0 with gradient 0 (a subgradient), never ``inf``/``NaN``.
- Cosine: ``D[i, j] = 1 - <x_i / max(|x_i|, eps), y_j / max(|y_j|, eps)>`` with ``eps = 1e-12``,
  clamped to ``[0, 2]``; a zero row is at distance 1 from every other row.

float16 / bfloat16 inputs are promoted to float32 and autocast is disabled inside, so the result
is float32 for them and the input dtype otherwise.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from reference.checks import METRICS, Metric, check_metric
from reference.chunks import rows_per_chunk
from reference.errors import VireidError

__all__ = [
    "COSINE_EPS",
    "METRICS",
    "NEAR",
    "Metric",
    "check_features",
    "check_metric",
    "compute_dtype",
    "distances_unchecked",
    "pairwise_distances",
    "report_nonfinite",
]
COSINE_EPS = 1e-12
# entries whose squared distance is below NEAR * (|a|^2 + |b|^2) are recomputed from differences
NEAR = 0.25
# gathered row differences are computed in chunks of at most this many elements
_CHUNK_ELEMENTS = 1 << 24


def check_features(features: Tensor, field: str = "features", *, finite: bool = True) -> None:
    """Raise :class:`VireidError` unless ``features`` is a finite floating (n, d) tensor, d >= 1."""
    if not isinstance(features, torch.Tensor):
        raise VireidError(f"{field}: expected a torch.Tensor, got {type(features)!r}")
    if not features.dtype.is_floating_point:
        raise VireidError(f"{field}: expected a floating-point tensor, got dtype {features.dtype}")
    if features.dim() != 2 or features.shape[1] < 1:
        raise VireidError(
            f"{field}: expected shape (n, d) with d >= 1, got {tuple(features.shape)}"
        )
    if not finite or features.numel() == 0:
        return
    # fast path: a sum is finite when every entry is; only a non-finite sum (a NaN/inf, or an
    # overflow of finite values) pays for the element-wise check
    if not math.isfinite(features.detach().sum(dtype=compute_dtype(features.dtype)).item()):
        report_nonfinite(features, field)


def report_nonfinite(features: Tensor, field: str = "features") -> None:
    """Raise :class:`VireidError` naming the first row of ``features`` with a NaN or inf entry;
    return if there is none (the slow, element-wise half of the finiteness check)."""
    bad = (~torch.isfinite(features.detach())).any(dim=1).nonzero()
    if bad.numel():
        raise VireidError(
            f"{field}: expected finite values, found NaN or inf (first in row {int(bad[0, 0])})"
        )


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a loss computes in: float32 for float16/bfloat16, the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def pairwise_distances(
    x: Tensor, y: Tensor | None = None, *, metric: Metric = "euclidean"
) -> Tensor:
    """``(n, d), (m, d) -> (n, m)`` distances; ``y=None`` means ``y = x`` with an exact 0 diagonal.

    See the module docstring and ``spec/losses/distances.md`` for the definitions.
    """
    check_metric(metric)
    check_features(x, "x")
    if y is not None:
        check_features(y, "y")
        if y.shape[1] != x.shape[1]:
            raise VireidError(
                f"y: expected {x.shape[1]} columns like x, got shape {tuple(y.shape)}"
            )
        if y.device != x.device:
            raise VireidError(f"y: expected a tensor on {x.device} like x, got {y.device}")
    return distances_unchecked(x, y, metric=metric)


def distances_unchecked(
    x: Tensor, y: Tensor | None = None, *, metric: Metric = "euclidean"
) -> Tensor:
    """:func:`pairwise_distances` without input validation, for callers that validated already."""
    dtype = compute_dtype(x.dtype if y is None else torch.promote_types(x.dtype, y.dtype))
    with torch.autocast(device_type=x.device.type, enabled=False):
        a = x.to(dtype)
        b = a if y is None else y.to(dtype)
        if metric == "cosine":
            an = F.normalize(a, dim=1, eps=COSINE_EPS)
            bn = an if y is None else F.normalize(b, dim=1, eps=COSINE_EPS)
            dist = (1.0 - an @ bn.T).clamp(0.0, 2.0)
            if y is None:
                # a matmul is not exactly symmetric, and rounding leaves ~1e-7 on the diagonal
                dist = 0.5 * (dist + dist.T)
                eye = torch.eye(dist.shape[0], dtype=torch.bool, device=dist.device)
                dist = dist.masked_fill(eye, 0.0)
            return dist
        return _euclidean(a, None if y is None else b)


def paired_distances(x: Tensor, y: Tensor) -> Tensor:
    """``(n, d), (n, d) -> (n,)`` Euclidean distances ``||x_i - y_i||_2`` of matching rows.

    Computed from the differences (exact zeros, no cancellation) with the same safe square root
    as :func:`pairwise_distances`; float16/bfloat16 inputs give float32.
    """
    check_features(x, "x")
    check_features(y, "y")
    if y.shape != x.shape:
        raise VireidError(f"y: expected shape {tuple(x.shape)} like x, got {tuple(y.shape)}")
    if y.device != x.device:
        raise VireidError(f"y: expected a tensor on {x.device} like x, got {y.device}")
    return paired_unchecked(x, y)


def paired_unchecked(x: Tensor, y: Tensor) -> Tensor:
    """:func:`paired_distances` without input validation."""
    dtype = compute_dtype(torch.promote_types(x.dtype, y.dtype))
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _PairedDistancesFastBackward.apply(x.to(dtype), y.to(dtype))


def recomputed_gradients(
    fn, inputs: tuple[Tensor, ...], grads: tuple[Tensor | None, ...], needs: tuple[bool, ...]
) -> tuple[Tensor | None, ...]:
    """The backward of a written-out autograd node when a graph of the gradient is asked for
    (``create_graph=True``: gradient penalties, Hessian-vector products): ``fn`` (the node's
    forward in plain differentiable operations) is run again on the saved inputs and autograd
    differentiates it, so second derivatives are complete. The fast written-out backward only
    runs when no graph is being recorded."""
    with torch.enable_grad():
        outputs = fn(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    pairs = [(o, g) for o, g in zip(outputs, grads, strict=True) if g is not None]
    wanted = [t for t, need in zip(inputs, needs, strict=True) if need]
    result = iter(
        torch.autograd.grad(
            [o for o, _ in pairs], wanted, [g for _, g in pairs], create_graph=True,
            allow_unused=True,
        )
    )  # fmt: skip
    return tuple(next(result) if need else None for need in needs)


def paired_distances_plain(x: Tensor, y: Tensor) -> Tensor:
    """The plain formula: ``||x_i - y_i||_2`` for each pair of rows, differentiated by autograd."""
    return torch.linalg.vector_norm(x - y, dim=1)


class _PairedDistancesFastBackward(torch.autograd.Function):
    """Fast path of :func:`paired_distances_plain` (proved equal in gradient by
    ``tests/losses/test_distances.py::test_written_out_gradients_match_finite_differences`` and
    ``::test_written_out_gradients_at_zero_distance``; second derivatives by
    ``::test_paired_distances_second_derivatives``): ``||x_i - y_i||_2`` with the gradient
    ``u_i = (x_i - y_i) / ||x_i - y_i||`` for ``x`` and
    ``-u_i`` for ``y``, 0 where the distance is 0 (the same safe subgradient as the where-trick).

    Written out because autograd's generic norm backward makes several passes over the
    ``(n, d)`` differences (a broadcast ``masked_fill`` among them); this makes one.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor) -> Tensor:
        diff = x - y
        dist = torch.linalg.vector_norm(diff, dim=1)
        ctx.save_for_backward(x, y, diff, dist)
        return dist

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, y, diff, dist = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad
        if torch.is_grad_enabled():
            return recomputed_gradients(paired_distances_plain, (x, y), (grad,), (need_x, need_y))
        scale = (grad / dist).masked_fill_(dist == 0, 0.0)  # (n,): cheap to mask
        gx = diff * scale[:, None]
        return (gx if need_x else None), (gx.neg() if need_y else None)


@functools.lru_cache(maxsize=32)
def _strict_upper(m: int, device: torch.device) -> Tensor:
    return torch.ones(m, m, dtype=torch.bool, device=device).triu(diagonal=1)


def row_difference_distances(x: Tensor) -> Tensor:
    """``(m, d) -> (m, m)`` Euclidean distances between the rows of ``x``, each computed from the
    difference of the two rows (``torch.pdist``: exact zeros for equal rows with gradient 0
    there, no cancellation), meant for few rows such as class centers. The condensed upper
    triangle is mirrored into the symmetric matrix with a zero diagonal. Unvalidated; float16 /
    bfloat16 give float32 like :func:`pairwise_distances`."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(compute_dtype(x.dtype)).contiguous()
        m = x.shape[0]
        upper = x.new_zeros(m, m).masked_scatter(_strict_upper(m, x.device), torch.pdist(x))
        return upper + upper.T


def _safe_sqrt(sq: Tensor) -> Tensor:
    positive = sq > 0
    # where-trick: sqrt never sees a 0, so its backward never gives inf * 0 = NaN
    return torch.where(positive, torch.where(positive, sq, 1.0).sqrt(), 0.0)


def _euclidean(x: Tensor, y: Tensor | None) -> Tensor:
    both = x if y is None else torch.cat([x, y])
    shift = both.detach().mean(dim=0, keepdim=True)
    a = x - shift
    b = a if y is None else y - shift
    na = (a * a).sum(dim=1)
    nb = na if y is None else (b * b).sum(dim=1)
    scale = na[:, None] + nb[None, :]
    sq = (scale - 2.0 * (a @ b.T)).clamp(min=0.0)
    near = sq.detach() <= NEAR * scale.detach()
    if y is None:
        sq = 0.5 * (sq + sq.T)  # a matrix product is not exactly symmetric
        eye = torch.eye(sq.shape[0], dtype=torch.bool, device=sq.device)
        sq = sq.masked_fill(eye, 0.0)  # a row is at distance exactly 0 from itself
        near = (near | near.T) & ~eye
    rows, cols = near.nonzero(as_tuple=True)
    if rows.numel():
        # where the expansion cancelled, the difference of the original rows is exact
        other = x if y is None else y
        step = rows_per_chunk(x.shape[1], _CHUNK_ELEMENTS)
        chunks = []
        for k in range(0, rows.numel(), step):
            diff = x[rows[k : k + step]] - other[cols[k : k + step]]
            chunks.append((diff * diff).sum(dim=1))
        exact = torch.cat(chunks)
        sq = sq.index_put((rows, cols), exact)
    return _safe_sqrt(sq)
