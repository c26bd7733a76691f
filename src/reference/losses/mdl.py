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
zero. The term ``T(A->B)`` is :func:`~reference.losses.directional.directional_triplet`, also
the building block of MML (``A == B``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reference.data.modality import Modality
from reference.losses.checks import (
    check_directions,
    check_metric_inputs,
    check_reduction,
    check_triplet_options,
)
from reference.losses.directional import check_direction, direction_name, directional_triplet_block
from reference.losses.groups import modality_counts
from reference.losses.terms import reduce_terms

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
    directions = check_directions(directions)
    check_triplet_options(margin, metric)
    counts = modality_counts(labels, modality)
    for d in directions:
        check_direction(
            labels, modality, d, what=f"MDL direction {direction_name(d)}", counts=counts
        )
    return {
        direction_name(d): directional_triplet_block(
            features, labels, modality, d, margin, soft_margin, metric
        )
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
    check_reduction(reduction)
    terms = mdl_terms(
        features,
        labels,
        modality,
        directions=directions,
        margin=margin,
        soft_margin=soft_margin,
        metric=metric,
    )
    return reduce_terms(terms, reduction)
