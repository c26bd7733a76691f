"""Method B's multi-directional cross-modality loss (MDL) [reconstruction of the seed's words].

Spec: ``spec/losses/mdl.md``. For a direction ``(A, B)`` every row ``a`` of modality ``A`` is an
anchor whose positives and negatives are the rows of modality ``B`` (batch-hard, Euclidean or
cosine distance ``d``)::

    T(A->B) = mean_{a: m_a = A} [ margin + max_{p: m_p = B, y_p = y_a, p != a} d(a, p)
                                         - min_{n: m_n = B, y_n != y_a} d(a, n) ]_+

(``softplus(max - min)`` with ``soft_margin``), and ``MDL = mean`` (or ``sum``) of ``T`` over the
configured directions. The default directions are every ordered pair of modalities whose bases
differ (``V<->I`` [seed] plus ``V<->DI``, ``DV<->I``, ``DV<->DI`` [reconstruction]).

Every anchor must have a positive and a negative in ``B``: a batch where it has not (a missing
modality, an identity without rows in ``B``, a single identity) is an error, never a silent
zero. :func:`directional_triplet` is also the building block of MML (``A == B``). It is the
batch-hard triplet of ``spec/losses/triplet.md`` restricted by anchor and candidate masks, computed
on the (|A|, |B|) distance block with the shared ``pairwise_distances``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

import torch
import torch.nn.functional as F

from reference.data.modality import Modality, check_modality_tags
from reference.errors import VireidError
from reference.losses.distances import check_features, check_metric, pairwise_distances
from reference.losses.triplet import check_labels, check_two_identities

_V, _I, _DV, _DI = (int(m) for m in Modality)

#: The general bi-directional cross-modality loss of the two base modalities [seed].
BASE_DIRECTIONS: tuple[tuple[int, int], ...] = ((_V, _I), (_I, _V))
#: Every ordered pair of modalities with different bases (the default) [reconstruction].
CROSS_BASE_DIRECTIONS: tuple[tuple[int, int], ...] = (
    *BASE_DIRECTIONS,
    (_V, _DI),
    (_DI, _V),
    (_DV, _I),
    (_I, _DV),
    (_DV, _DI),
    (_DI, _DV),
)
#: Every ordered pair of distinct modalities, same-base pairs included [reconstruction].
ALL_DIRECTIONS: tuple[tuple[int, int], ...] = tuple(
    (a, b) for a in (_V, _I, _DV, _DI) for b in (_V, _I, _DV, _DI) if a != b
)
DEFAULT_DIRECTIONS = CROSS_BASE_DIRECTIONS

_REDUCTIONS = ("mean", "sum")


def _short(m: int) -> str:
    return Modality(m).short


def direction_name(direction: tuple[int, int]) -> str:
    """``"V->I"`` for ``(0, 1)``: the name of a direction's term."""
    return f"{_short(direction[0])}->{_short(direction[1])}"


def check_metric_inputs(
    features: torch.Tensor, labels: torch.Tensor, modality: torch.Tensor
) -> None:
    """Raise :class:`VireidError` unless features (N, d), labels (N,), modality (N,) agree.

    The feature and label checks (and their messages) are the batch-hard triplet's; a batch
    needs at least two identities.
    """
    check_features(features)
    n = features.shape[0]
    check_labels(labels, n)
    check_modality_tags(modality, n)
    if labels.device != features.device or modality.device != features.device:
        raise VireidError(
            f"labels, modality: expected tensors on {features.device}, got labels on "
            f"{labels.device} and modality on {modality.device}"
        )
    check_two_identities(labels)


def _counts(labels: torch.Tensor, modality: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Distinct identities (sorted) and a (4, n_ids) table of rows per modality and identity."""
    ids, inverse = torch.unique(labels, return_inverse=True)
    table = torch.zeros(len(Modality) * ids.numel(), dtype=torch.int64, device=labels.device)
    table.index_add_(0, modality.long() * ids.numel() + inverse, torch.ones_like(inverse))
    return ids.tolist(), table.view(len(Modality), ids.numel()).cpu()


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
    ids, table = _counts(labels, modality) if counts is None else counts
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


def _check_directions(directions: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    if isinstance(directions, str) or not isinstance(directions, Sequence):
        raise VireidError(
            f"directions: expected a sequence of (from, to) pairs, got {directions!r}"
        )
    out = []
    valid = {int(m) for m in Modality}
    for item in directions:
        if (
            not isinstance(item, tuple | list)
            or len(item) != 2
            or any(
                isinstance(x, bool) or not isinstance(x, Integral) or x not in valid for x in item
            )
        ):
            raise VireidError(
                f"directions: expected (from, to) pairs of modality tags 0..3, got {item!r}"
            )
        out.append((int(item[0]), int(item[1])))
    if not out:
        raise VireidError("directions: expected at least one (from, to) pair, got none")
    if len(set(out)) != len(out):
        raise VireidError(f"directions: each direction may appear once, got {out}")
    return tuple(out)


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise VireidError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")


def _reduce_terms(terms: dict[str, torch.Tensor], reduction: str) -> torch.Tensor:
    """The mean or the sum of the per-direction (or per-modality) terms."""
    total = torch.stack(list(terms.values())).sum()
    return total / len(terms) if reduction == "mean" else total


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
    (direction,) = _check_directions([direction])
    check_triplet_options(margin, metric)
    what = what or f"direction {direction_name(direction)}"
    check_direction(labels, modality, direction, what=what)
    return _triplet(features, labels, modality, direction, margin, soft_margin, metric)


def check_triplet_options(margin: float, metric: str) -> None:
    """Raise :class:`VireidError` unless ``margin`` is finite and >= 0 and ``metric`` is known."""
    if (
        isinstance(margin, bool)
        or not isinstance(margin, int | float)
        or not 0 <= margin < math.inf
    ):
        raise VireidError(f"margin: expected a finite number >= 0, got {margin!r}")
    check_metric(metric)


def _triplet(features, labels, modality, direction, margin, soft_margin, metric) -> torch.Tensor:
    """``T(A->B)`` on the (|A|, |B|) block of distances only (inputs already checked).

    The same value as ``batch_hard_triplet(features, labels, anchors=modality == A,
    candidates=modality == B)`` (the tests check it), without the full (N, N) distance matrix per
    direction: with eight directions that matrix and its backward dominated the cost.
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


def mdl_terms(
    features: torch.Tensor,
    labels: torch.Tensor,
    modality: torch.Tensor,
    *,
    directions: Sequence[tuple[int, int]] = DEFAULT_DIRECTIONS,
    margin: float = 0.3,
    soft_margin: bool = False,
    metric: str = "euclidean",
) -> dict[str, torch.Tensor]:
    """``T(A->B)`` for each configured direction, by name (``"V->I"``), in the given order."""
    check_metric_inputs(features, labels, modality)
    directions = _check_directions(directions)
    check_triplet_options(margin, metric)
    counts = _counts(labels, modality)
    for d in directions:
        check_direction(
            labels, modality, d, what=f"MDL direction {direction_name(d)}", counts=counts
        )
    return {
        direction_name(d): _triplet(features, labels, modality, d, margin, soft_margin, metric)
        for d in directions
    }


def mdl_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    modality: torch.Tensor,
    *,
    directions: Sequence[tuple[int, int]] = DEFAULT_DIRECTIONS,
    margin: float = 0.3,
    soft_margin: bool = False,
    metric: str = "euclidean",
    reduction: str = "mean",
) -> torch.Tensor:
    """MDL: the mean (or sum) of :func:`mdl_terms` over the directions."""
    _check_reduction(reduction)
    terms = mdl_terms(
        features,
        labels,
        modality,
        directions=directions,
        margin=margin,
        soft_margin=soft_margin,
        metric=metric,
    )
    return _reduce_terms(terms, reduction)
