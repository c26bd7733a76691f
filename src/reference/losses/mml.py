"""Method B's multi-mode intra-modality loss (MML) [reconstruction of the seed's words].

Spec: ``spec/losses/mml.md``. The batch-hard triplet inside one modality ``m`` (anchors,
positives and negatives all of modality ``m``; Euclidean or cosine distance ``d``)::

    T(m) = mean_{a: m_a = m} [ margin + max_{p: m_p = m, y_p = y_a, p != a} d(a, p)
                                      - min_{n: m_n = m, y_n != y_a} d(a, n) ]_+

and ``MML = mean`` (default) or ``sum`` of ``T(m)`` over the modalities: the four of Method B
(V, I, DV, DI) by default, or exactly those present in the batch with ``modalities=None``.
``T(m)`` is the MDL building block :func:`~reference.losses.mdl.directional_triplet` with
``A = B = m``, so one definition of the batch-hard term serves both losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch

from reference.data.modality import Modality
from reference.errors import VireidError
from reference.losses.mdl import (
    _check_reduction,
    _counts,
    _reduce_terms,
    _triplet,
    check_direction,
    check_metric_inputs,
    check_triplet_options,
)

#: Method B's four modalities [seed].
ALL_MODALITIES: tuple[int, ...] = tuple(int(m) for m in Modality)


def _resolve_modalities(modalities: Sequence[int] | None, present: list[int]) -> tuple[int, ...]:
    if modalities is None:
        return tuple(present)
    if isinstance(modalities, str) or not isinstance(modalities, Sequence):
        raise VireidError(f"modalities: expected a sequence of modality tags, got {modalities!r}")
    valid = {int(m) for m in Modality}
    out = []
    for m in modalities:
        if isinstance(m, bool) or not isinstance(m, Integral) or m not in valid:
            raise VireidError(f"modalities: expected modality tags 0..3, got {m!r}")
        out.append(int(m))
    if not out:
        raise VireidError("modalities: expected at least one modality, got none")
    if len(set(out)) != len(out):
        raise VireidError(f"modalities: each modality may appear once, got {out}")
    return tuple(out)


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
    counts = _counts(labels, modality)
    present = [int(m) for m in Modality if int(counts[1][m].sum()) > 0]
    chosen = _resolve_modalities(modalities, present)
    for m in chosen:
        check_direction(
            labels, modality, (m, m), what=f"MML modality {Modality(m).short}", counts=counts
        )
    return {
        Modality(m).short: _triplet(features, labels, modality, (m, m), margin, soft_margin, metric)
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
    _check_reduction(reduction)
    terms = mml_terms(
        features,
        labels,
        modality,
        modalities=modalities,
        margin=margin,
        soft_margin=soft_margin,
        metric=metric,
    )
    return _reduce_terms(terms, reduction)
