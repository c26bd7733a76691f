"""Hetero-center triplet loss [predecessor]: triplets between per-identity, per-modality centers.

Spec: ``spec/losses/hetero_center.md``. With the two modalities ``(m0, m1) = modalities`` (default
visible 0 and infrared 1), rows are grouped by identity label and modality tag (never by their
position in the batch). For each identity ``p`` and modality ``m`` the center is the mean of its
rows, ``c[p, m] = mean{ f_i : labels_i = p, modality_i = m }``. With Euclidean distances
``D = pairwise_distances(centers)``, for each of the ``2P`` centers ``a = c[p, m]``::

    l(a) = max(0, margin + D(a, c[p, m']) - min_{q != p, r in {m0, m1}} D(a, c[q, r]))

where ``m'`` is the other modality, and the loss is the mean of ``l`` over the ``2P`` centers.
Rows whose tag is not in ``modalities`` are ignored. Every identity present must have rows in both
modalities, and at least two identities are needed; otherwise a :class:`VireidError` names the
labels. Computed (and returned) in float32 for float16/bfloat16 features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference.checks import check_margin
from reference.data.modality import check_modality_tags
from reference.losses.checks import check_labels, check_modality_pair
from reference.losses.distances import check_features, compute_dtype, row_difference_distances
from reference.losses.groups import (
    check_finite_via_centers,
    group_rows,
    identity_mask,
    modality_centers,
)


def hetero_center_triplet(
    features: Tensor,
    labels: Tensor,
    modality: Tensor,
    *,
    margin: float = 0.3,
    modalities: Sequence[int] = (0, 1),
) -> Tensor:
    """Scalar hetero-center triplet loss; see the module docstring and the spec."""
    check_features(features, finite=False)  # finiteness: from the centers, below
    n = features.shape[0]
    check_labels(labels, n)
    check_modality_tags(modality, n)
    pair = check_modality_pair(modalities)
    check_margin(margin)
    groups = group_rows(labels.to(features.device), modality.to(features.device), pair)

    dtype = compute_dtype(features.dtype)
    with torch.autocast(device_type=features.device.type, enabled=False):
        centers = modality_centers(features.to(dtype), groups, pair)
        check_finite_via_centers(features, groups, centers)
        p = groups.ids.numel()
        flat = centers.reshape(2 * p, -1)  # row 2q + s: identity q, modality slot s
        # few centers: every distance from a difference of two centers (exact, one matrix)
        dist = row_difference_distances(flat).view(p, 2, p, 2)
        same_id = identity_mask(p, flat.device)[:, None, :, None]
        d_an = torch.where(same_id, float("inf"), dist).amin(dim=(2, 3))  # (p, 2)
        # counterpart: the same identity's center in the other modality (same for both slots)
        d_ap = dist.diagonal(dim1=0, dim2=2)[0, 1][:, None]  # (p, 1): D(c[q, 0], c[q, 1])
        return F.relu(margin + d_ap - d_an).mean()


class HeteroCenterTriplet(nn.Module):
    """:func:`hetero_center_triplet` with ``margin`` and ``modalities`` fixed."""

    def __init__(self, margin: float = 0.3, *, modalities: Sequence[int] = (0, 1)) -> None:
        super().__init__()
        check_margin(margin)
        self.margin = float(margin)
        self.modalities = check_modality_pair(modalities)

    def forward(self, features: Tensor, labels: Tensor, modality: Tensor) -> Tensor:
        return hetero_center_triplet(
            features, labels, modality, margin=self.margin, modalities=self.modalities
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}, modalities={self.modalities}"
