"""Method B's multi-mode intra-modality loss (MML) [reconstruction of the seed's words].

Spec: ``spec/losses/mml.md``. The batch-hard triplet inside one modality ``m`` (anchors,
positives and negatives all of modality ``m``; Euclidean or cosine distance ``d``)::

    T(m) = mean_{a: m_a = m} [ margin + max_{p: m_p = m, y_p = y_a, p != a} d(a, p)
                                      - min_{n: m_n = m, y_n != y_a} d(a, n) ]_+

and ``MML = mean`` (default) or ``sum`` of ``T(m)`` over the modalities: the four of Method B
(V, I, DV, DI) by default, or exactly those present in the batch with ``modalities=None``.
``T(m)`` is the MDL building block :func:`~reference.losses.directional.directional_triplet` with
``A = B = m``, so one definition of the batch-hard term serves both losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reference.data.modality import Modality
from reference.losses.checks import (
    check_metric_inputs,
    check_modalities,
    check_reduction,
    check_triplet_options,
)
from reference.losses.directional import check_direction, directional_triplet_block
from reference.losses.groups import modality_counts
from reference.losses.terms import reduce_terms

#: Method B's four modalities [seed].
ALL_MODALITIES: tuple[int, ...] = tuple(int(m) for m in Modality)


def mml_terms(
    features: torch.Tensor,
    labels: torch.Tensor,
    modality: torch.Tensor,
    *,
    modalities: Sequence[int] | None = ALL_MODALITIES,
    margin: float = 0.3,
    soft_margin: bool = False,
    metric: str = "euclidean",
) -> dict[str, torch.Tensor]:
    """``T(m)`` for each modality, by short name (``"V"``, ``"I"``, ``"DV"``, ``"DI"``)."""
    check_metric_inputs(features, labels, modality)
    check_triplet_options(margin, metric)
    counts = modality_counts(labels, modality)
    present = [int(m) for m in Modality if int(counts[1][m].sum()) > 0]
    chosen = check_modalities(modalities, present)
    for m in chosen:
        check_direction(
            labels, modality, (m, m), what=f"MML modality {Modality(m).short}", counts=counts
        )
    return {
        Modality(m).short: directional_triplet_block(
            features, labels, modality, (m, m), margin, soft_margin, metric
        )
        for m in chosen
    }


def mml_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    modality: torch.Tensor,
    *,
    modalities: Sequence[int] | None = ALL_MODALITIES,
    margin: float = 0.3,
    soft_margin: bool = False,
    metric: str = "euclidean",
    reduction: str = "mean",
) -> torch.Tensor:
    """MML: the mean (or sum) of :func:`mml_terms` over the modalities."""
    check_reduction(reduction)
    terms = mml_terms(
        features,
        labels,
        modality,
        modalities=modalities,
        margin=margin,
        soft_margin=soft_margin,
        metric=metric,
    )
    return reduce_terms(terms, reduction)
