"""Grouping a batch's rows by identity and modality, and the per-group centers.

Spec: ``spec/losses/hetero_center.md`` and ``spec/losses/center_alignment.md`` (the centers),
``spec/losses/mdl.md`` (the per-modality identity counts). Shared by the center losses
(hetero-center triplet, center alignment) and the directional triplets of MDL and MML. Inputs are
validated by the callers (``losses/checks.py``); the errors raised here name what a batch lacks.

    c[p, m] = mean{ f_i : labels_i = p, modality_i = m }       (identity_modality_centers)

The means are :func:`group_means_plain` (index_add, division); the losses use its fast path
:func:`group_means`, one autograd node with a written-out backward.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from reference.data.modality import Modality
from reference.errors import VireidError
from reference.losses.checks import check_two_identities, modality_label
from reference.losses.distances import check_features, report_nonfinite


def modality_counts(labels: Tensor, modality: Tensor) -> tuple[list[int], Tensor]:
    """Distinct identities (sorted) and a (4, n_ids) table of rows per modality and identity."""
    ids, inverse = torch.unique(labels, return_inverse=True)
    table = torch.zeros(len(Modality) * ids.numel(), dtype=torch.int64, device=labels.device)
    table.index_add_(0, modality.long() * ids.numel() + inverse, torch.ones_like(inverse))
    return ids.tolist(), table.view(len(Modality), ids.numel()).cpu()


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
                parts.append(f"identity labels {lacking} have no {modality_label(int(m))} rows")
        raise VireidError(
            "modality: "
            + "; ".join(parts)
            + "; every identity needs rows in each of "
            + ", ".join(modality_label(int(m)) for m in modalities)
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


def group_means_plain(x: Tensor, group: Tensor, counts: Tensor) -> Tensor:
    """The plain formula: ``out[g] = mean{ x_i : group_i = g }`` as an index_add and a division,
    ``(n, d), (n,), (G,) -> (G, d)``."""
    return (
        x.new_zeros(counts.shape[0], x.shape[1]).index_add(0, group, x)
        / counts.to(x.dtype)[:, None]
    )


class _GroupMeansFastBackward(torch.autograd.Function):
    """Fast path of :func:`group_means_plain` as one node: the backward is one gather of
    ``grad[g] / count[g]`` (autograd of index_add and a division would be several). Equal to the
    plain formula in value and gradient (proved by
    ``tests/losses/test_groups.py::test_group_means_fast_path_equals_the_plain_formula``)."""

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
    return _GroupMeansFastBackward.apply(x, group, counts)


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
