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

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference.data.modality import Modality, check_modality_tags
from reference.errors import VireidError
from reference.losses.distances import (
    check_features,
    compute_dtype,
    report_nonfinite,
    row_difference_distances,
)
from reference.losses.triplet import check_labels, check_two_identities


def _name(m: int) -> str:
    return f"{Modality(m).short} ({int(m)})"


def check_modality_pair(modalities: Sequence[int]) -> tuple[int, int]:
    """Two distinct Modality values, as plain ints."""
    valid = {int(m) for m in Modality}
    try:
        pair = tuple(int(m) for m in modalities)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= valid:
        raise VireidError(
            "modalities: expected two distinct modality tags out of "
            + ", ".join(_name(m) for m in Modality)
            + f", got {modalities!r}"
        )
    return pair  # type: ignore[return-value]


def _check_margin(margin: float) -> None:
    if not isinstance(margin, (int, float)) or not (0.0 <= margin < float("inf")):
        raise VireidError(f"margin: expected a finite number >= 0, got {margin!r}")


@dataclass(frozen=True)
class RowGroups:
    """Rows of a batch grouped by identity and modality slot (see :func:`group_rows`)."""

    keep: Tensor | None  # (n,) bool: the rows used; None when every row is used
    ids: Tensor  # (P,) sorted identity labels of the rows used
    identity: Tensor  # (n_used,) index into ``ids`` of each row used
    slot: Tensor  # (n_used,) index into ``modalities`` of each row used

    def select(self, rows: Tensor) -> Tensor:
        """The rows used, in batch order (no copy when every row is used)."""
        return rows if self.keep is None else rows[self.keep]


def group_rows(labels: Tensor, modality: Tensor, modalities: Sequence[int]) -> RowGroups:
    """Group rows by identity label and by position of their tag in ``modalities``.

    Rows whose tag is not in ``modalities`` are left out. Fewer than two identities among the
    rows used is a :class:`VireidError`. Inputs must be validated by the caller.
    """
    # a lookup table tag -> slot (-1: not used) gives every row's slot in one gather
    table = [-1] * len(Modality)
    for j, m in enumerate(modalities):
        table[int(m)] = j
    slot = torch.tensor(table, device=labels.device).index_select(0, modality.long())
    used = slot >= 0
    keep = None if bool(used.all()) else used
    ids, identity = torch.unique(labels if keep is None else labels[keep], return_inverse=True)
    if ids.numel() < 2:
        check_two_identities(ids)
    return RowGroups(keep, ids, identity, slot if keep is None else slot[keep])


@functools.lru_cache(maxsize=32)
def identity_mask(p: int, device: torch.device) -> Tensor:
    """The ``(p, p)`` bool identity matrix (cached: every batch of ``p`` identities reuses it)."""
    return torch.eye(p, dtype=torch.bool, device=device)


def check_finite_via_centers(features: Tensor, groups: RowGroups, centers: Tensor) -> None:
    """The finiteness half of ``check_features``, read off the centers when they cover every row.

    A NaN or inf feature makes the center of its group non-finite, so a finite sum of the few
    centers proves every used row finite without a pass over the rows; otherwise (or when rows
    were left out) the element-wise check names the first bad row. A sum that overflowed from
    finite values is not an input error and is left to the loss.
    """
    if groups.keep is not None:
        check_features(features)
    elif not math.isfinite(centers.detach().sum().item()):
        report_nonfinite(features)


def group_counts(index: Tensor, size: int) -> Tensor:
    """How many entries of ``index`` equal each of ``0..size-1`` (``bincount`` without its
    non-deterministic CUDA kernel, which ``torch.use_deterministic_algorithms`` refuses; the
    CPU kernel is deterministic and one operation)."""
    if index.device.type == "cpu":
        return torch.bincount(index, minlength=size)
    return (index[:, None] == torch.arange(size, device=index.device)).sum(dim=0)


def modality_groups(groups: RowGroups, modalities: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Each used row's (identity, modality) group ``identity * M + slot`` and the ``(P * M,)``
    row counts of the groups; a :class:`VireidError` lists the identities that lack a modality."""
    p, m_count = groups.ids.numel(), len(modalities)
    group = groups.identity * m_count + groups.slot
    counts = group_counts(group, p * m_count).view(p, m_count)
    if int(counts.min()) == 0:  # one reduction, one sync
        missing = counts == 0
        parts = []
        for j, m in enumerate(modalities):
            lacking = groups.ids[missing[:, j]].tolist()
            if lacking:
                parts.append(f"identity labels {lacking} have no {_name(int(m))} rows")
        raise VireidError(
            "modality: "
            + "; ".join(parts)
            + "; every identity needs rows in each of "
            + ", ".join(_name(int(m)) for m in modalities)
        )
    return group, counts.view(-1)


def modality_centers(features: Tensor, groups: RowGroups, modalities: Sequence[int]) -> Tensor:
    """Centers ``(P, M, d)``: the mean of each identity's rows in each of ``modalities``.

    Every identity must have rows in each modality (a :class:`VireidError` lists those that do
    not). ``features`` are all the batch's rows; the centers are in their dtype.
    """
    group, counts = modality_groups(groups, modalities)
    used = groups.select(features)
    return group_means(used, group, counts).view(groups.ids.numel(), len(modalities), -1)


class _GroupMeans(torch.autograd.Function):
    """``out[g] = mean{ x_i : group_i = g }`` as one node: the backward is one gather of
    ``grad[g] / count[g]`` (autograd of index_add and a division would be several)."""

    @staticmethod
    def forward(ctx, x: Tensor, group: Tensor, counts: Tensor) -> Tensor:
        size = counts.to(x.dtype)[:, None]
        ctx.save_for_backward(group, size)
        return x.new_zeros(counts.shape[0], x.shape[1]).index_add_(0, group, x).div_(size)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        # linear in x: these differentiable operations on grad are the whole second derivative
        group, size = ctx.saved_tensors
        return (grad / size).index_select(0, group), None, None


def group_means(x: Tensor, group: Tensor, counts: Tensor) -> Tensor:
    """``(n, d), (n,), (G,) -> (G, d)``: the mean of the rows of each group (``counts[g] >= 1``
    rows have ``group == g``; the caller has checked that)."""
    return _GroupMeans.apply(x, group, counts)


def identity_modality_centers(
    features: Tensor, labels: Tensor, modality: Tensor, modalities: Sequence[int] = (0, 1)
) -> tuple[Tensor, Tensor]:
    """Centers ``(P, M, d)`` per identity and modality, and the sorted identity labels ``(P,)``.

    Rows of modalities not in ``modalities`` are ignored; every identity present must have rows
    in each of ``modalities`` (a :class:`VireidError` lists those that do not). Features must be
    validated by the caller; the centers are in the features' dtype.
    """
    groups = group_rows(labels, modality, modalities)
    return modality_centers(features, groups, modalities), groups.ids


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
    _check_margin(margin)
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
        _check_margin(margin)
        self.margin = float(margin)
        self.modalities = check_modality_pair(modalities)

    def forward(self, features: Tensor, labels: Tensor, modality: Tensor) -> Tensor:
        return hetero_center_triplet(
            features, labels, modality, margin=self.margin, modalities=self.modalities
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}, modalities={self.modalities}"
