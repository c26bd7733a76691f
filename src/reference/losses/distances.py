"""Pairwise distances between feature rows, shared by every metric loss.

Spec: ``spec/losses/distances.md``.

- Euclidean: ``D[i, j] = ||x_i - y_j||_2``, computed from the row differences themselves
  (``torch.cdist`` without the ``|x|^2 + |y|^2 - 2 x.y`` expansion), so identical rows are at
  distance exactly 0 and the relative error is a few ulps, with no cancellation. Safe square root:
  the backward of that computation defines the gradient at zero distance as 0 (a subgradient), so
  identical features give finite (zero) gradients, never ``inf``/``NaN``; the tests check it.
- Cosine: ``D[i, j] = 1 - <x_i / max(|x_i|, eps), y_j / max(|y_j|, eps)>`` with ``eps = 1e-12``,
  clamped to ``[0, 2]``; a zero row is at distance 1 from every other row.

float16 / bfloat16 inputs are promoted to float32 and autocast is disabled inside, so the result
is float32 for them and the input dtype otherwise.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from reference.errors import VireidError

Metric = Literal["euclidean", "cosine"]
METRICS: tuple[str, ...] = ("euclidean", "cosine")
COSINE_EPS = 1e-12


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
    if finite and features.numel() and not bool(torch.isfinite(features).all()):
        bad = int((~torch.isfinite(features)).any(dim=1).nonzero()[0, 0])
        raise VireidError(f"{field}: expected finite values, found NaN or inf (first in row {bad})")


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise VireidError(f"metric: expected 'euclidean' or 'cosine', got {metric!r}")


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
        # Differences, not the expansion: exact zeros for identical rows, no cancellation, and a
        # backward that is 0 (not NaN) at zero distance.
        return torch.cdist(a, b, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
