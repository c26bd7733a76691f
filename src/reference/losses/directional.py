"""The directional batch-hard triplet ``T(A->B)``: the shared term of MDL and MML.

Spec: ``spec/losses/mdl.md`` (``T(A->B)``) and ``spec/losses/mml.md`` (``A == B``). For a
direction ``(A, B)`` every row ``a`` of modality ``A`` is an anchor whose positives and negatives
are the rows of modality ``B``::

    T(A->B) = mean_{a: m_a = A} [ margin + max_{p: m_p = B, y_p = y_a, p != a} d(a, p)
                                         - min_{n: m_n = B, y_n != y_a} d(a, n) ]_+

(``softplus(max - min)`` with ``soft_margin``). Plain formula: the batch-hard triplet of
``spec/losses/triplet.md`` with ``anchors = modality == A`` and ``candidates = modality == B``.
Fast path: :func:`directional_triplet_block`, on the (|A|, |B|) distance block only. Every anchor
must have a positive and a negative in ``B`` (:func:`check_direction`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reference.data.modality import Modality
from reference.errors import VireidError
from reference.losses.checks import check_directions, check_metric_inputs, check_triplet_options
from reference.losses.distances import pairwise_distances
from reference.losses.groups import modality_counts


def _short(m: int) -> str:
    return Modality(m).short


def direction_name(direction: tuple[int, int]) -> str:
    """``"V->I"`` for ``(0, 1)``: the name of a direction's term."""
    return f"{_short(direction[0])}->{_short(direction[1])}"


def check_direction(
    labels: torch.Tensor,
    modality: torch.Tensor,
    direction: tuple[int, int],
    *,
    what: str,
    counts: tuple[list[int], torch.Tensor] | None = None,
) -> None:
    """Raise :class:`VireidError` unless each anchor in ``A`` has a positive and negative in ``B``.

    ``what`` names the loss term in the message (e.g. ``"MDL direction V->I"``).
    """
    a, b = direction
    ids, table = modality_counts(labels, modality) if counts is None else counts
    present = [_short(m) for m in Modality if int(table[m].sum()) > 0]
    for m in (a, b):
        if int(table[m].sum()) == 0:
            raise VireidError(
                f"modality: {what} needs rows of modality {_short(m)} ({m}); "
                f"the batch has {', '.join(present)}"
            )
    # a row is not its own positive, so within one modality an identity needs two rows
    positives = table[b] - (1 if a == b else 0)
    for j, pid in enumerate(ids):
        if int(table[a, j]) > 0 and int(positives[j]) < 1:
            where = "no other row" if a == b else "no row"
            raise VireidError(
                f"labels: {what}: identity {pid} has {int(table[a, j])} row(s) of modality "
                f"{_short(a)} but {where} of modality {_short(b)} to be its positive"
            )
    n_ids_b = int((table[b] > 0).sum())
    if n_ids_b < 2:
        raise VireidError(
            f"labels: {what} needs at least 2 identities in modality {_short(b)} "
            f"(for negatives), got {n_ids_b}"
        )


def directional_triplet(
    features: torch.Tensor,
    labels: torch.Tensor,
    modality: torch.Tensor,
    direction: tuple[int, int],
    *,
    margin: float = 0.3,
    soft_margin: bool = False,
    metric: str = "euclidean",
    what: str | None = None,
) -> torch.Tensor:
    """``T(A->B)``: batch-hard triplet, anchors of modality ``A``, candidates of modality ``B``."""
    check_metric_inputs(features, labels, modality)
    (direction,) = check_directions([direction])
    check_triplet_options(margin, metric)
    what = what or f"direction {direction_name(direction)}"
    check_direction(labels, modality, direction, what=what)
    return directional_triplet_block(
        features, labels, modality, direction, margin, soft_margin, metric
    )


def directional_triplet_block(
    features: torch.Tensor,
    labels: torch.Tensor,
    modality: torch.Tensor,
    direction: tuple[int, int],
    margin: float,
    soft_margin: bool,
    metric: str,
) -> torch.Tensor:
    """Fast path of ``T(A->B)``, on the (|A|, |B|) block of distances only (inputs checked).

    Equal to the plain formula ``batch_hard_triplet(features, labels, anchors=modality == A,
    candidates=modality == B)`` (proved by
    ``tests/losses/test_directional.py::test_same_value_as_batch_hard_triplet_with_masks``),
    without the full (N, N) distance matrix per direction: with eight directions that matrix and
    its backward dominated the cost.
    """
    a, b = direction
    in_a = modality == a
    xa, ya = features[in_a], labels[in_a]
    if a == b:
        dist = pairwise_distances(xa, metric=metric)
        same = ya[:, None] == ya[None, :]
        # a row is not its own positive
        pos = same & ~torch.eye(len(ya), dtype=torch.bool, device=same.device)
    else:
        in_b = modality == b
        dist = pairwise_distances(xa, features[in_b], metric=metric)
        same = ya[:, None] == labels[in_b][None, :]
        pos = same
    # every anchor has a positive and a negative (check_direction), so no row is all -inf / inf
    d_ap = torch.where(pos, dist, -math.inf).amax(dim=1)
    d_an = torch.where(~same, dist, math.inf).amin(dim=1)
    if soft_margin:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(margin + d_ap - d_an).mean()
