"""Batch-hard triplet loss (the field's standard), with margin or soft margin.

Spec: ``spec/losses/triplet.md``. With ``D = pairwise_distances(features, metric=metric)``, for
each anchor ``i`` (a row allowed by ``anchors``)::

    P(i) = {j : candidates[j], labels[j] == labels[i], j != i}     positives (never i itself)
    N(i) = {j : candidates[j], labels[j] != labels[i]}             negatives
    d_ap(i) = max_{j in P(i)} D[i, j]        d_an(i) = min_{j in N(i)} D[i, j]
    l(i) = max(0, margin + d_ap(i) - d_an(i))          (soft_margin=False)
    l(i) = log(1 + exp(d_ap(i) - d_an(i)))             (soft_margin=True; margin unused)

    loss = mean of l(i) over the valid anchors, those with P(i) and N(i) non-empty.

With no valid anchor the loss is ``features.sum() * 0``: an exact zero still connected to the
graph, so ``backward()`` works and gives zero gradients. The loss is computed, and returned, in
float32 for float16/bfloat16 features (like autocast does for losses) and in the features'
dtype otherwise. A batch whose labels hold fewer than two identities is an error (no negative
can exist; a sampler bug, not a training state).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference.checks import check_margin
from reference.errors import VireidError
from reference.losses.checks import check_labels, check_two_identities
from reference.losses.distances import (
    Metric,
    check_features,
    check_metric,
    distances_unchecked,
)


def _check_mask(mask: Tensor | None, n: int, field: str, device: torch.device) -> Tensor:
    if mask is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask)
        raise VireidError(f"{field}: expected a bool tensor, got {got}")
    if mask.shape != (n,):
        raise VireidError(
            f"{field}: expected shape ({n},) to match features, got {tuple(mask.shape)}"
        )
    return mask.to(device)


def batch_hard_triplet(
    features: Tensor,
    labels: Tensor,
    *,
    margin: float = 0.3,
    soft_margin: bool = False,
    metric: Metric = "euclidean",
    anchors: Tensor | None = None,
    candidates: Tensor | None = None,
) -> Tensor:
    """Scalar batch-hard triplet loss; see the module docstring and ``spec/losses/triplet.md``."""
    check_features(features)
    n = features.shape[0]
    check_labels(labels, n)
    check_metric(metric)
    check_margin(margin)
    anchors = _check_mask(anchors, n, "anchors", features.device)
    candidates = _check_mask(candidates, n, "candidates", features.device)
    labels = labels.to(features.device)
    check_two_identities(labels)

    dist = distances_unchecked(features, metric=metric)
    same = labels[:, None] == labels[None, :]
    not_self = ~torch.eye(n, dtype=torch.bool, device=features.device)
    pos = same & not_self & candidates[None, :]
    neg = ~same & candidates[None, :]
    valid = anchors & pos.any(dim=1) & neg.any(dim=1)
    if not bool(valid.any()):
        return (features.sum() * 0.0).to(dist.dtype)

    d_ap = torch.where(pos, dist, float("-inf")).amax(dim=1)[valid]
    d_an = torch.where(neg, dist, float("inf")).amin(dim=1)[valid]
    if soft_margin:
        # logaddexp(0, x) = log(1 + exp(x)) without softplus's linear cut-off above x = 20
        return torch.logaddexp(torch.zeros_like(d_ap), d_ap - d_an).mean()
    return F.relu(margin + d_ap - d_an).mean()


class BatchHardTriplet(nn.Module):
    """:func:`batch_hard_triplet` with ``margin``, ``soft_margin`` and ``metric`` fixed."""

    def __init__(
        self, margin: float = 0.3, *, soft_margin: bool = False, metric: Metric = "euclidean"
    ) -> None:
        super().__init__()
        check_margin(margin)
        check_metric(metric)
        self.margin = float(margin)
        self.soft_margin = bool(soft_margin)
        self.metric: Metric = metric

    def forward(
        self,
        features: Tensor,
        labels: Tensor,
        *,
        anchors: Tensor | None = None,
        candidates: Tensor | None = None,
    ) -> Tensor:
        return batch_hard_triplet(
            features,
            labels,
            margin=self.margin,
            soft_margin=self.soft_margin,
            metric=self.metric,
            anchors=anchors,
            candidates=candidates,
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}, soft_margin={self.soft_margin}, metric={self.metric!r}"
