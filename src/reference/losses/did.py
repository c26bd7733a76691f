"""Method B's DID loss [reconstruction]: the identity loss over all four modalities.

Spec: ``spec/losses/did.md``. The seed names a "DID loss" and nothing more; this project reads it
as the identity (cross-entropy) loss applied to the rows of the base *and* the derivative
modalities with one classifier shared by all of them. With ``CE_i`` the (optionally
label-smoothed) cross-entropy of row ``i`` and ``S`` the rows whose modality is selected::

    DID = mean_{i in S} CE_i                                   (reduction="rows", default)
    DID = mean_{m in modalities} mean_{i: m_i = m} CE_i        (reduction="modality")

The two agree when every modality has the same number of rows (a P x K x 4 batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reference.data.modality import Modality, check_modality_tags
from reference.errors import VireidError
from reference.losses.checks import (
    check_class_indices,
    check_epsilon,
    check_labels,
    check_modalities,
)
from reference.losses.distances import check_features
from reference.losses.identity import cross_entropy_unchecked
from reference.losses.mml import ALL_MODALITIES
from reference.losses.terms import loss_of_terms


def check_logit_inputs(
    logits: torch.Tensor, labels: torch.Tensor, modality: torch.Tensor, *, finite: bool = True
) -> None:
    """Raise :class:`VireidError` unless logits (N, C), labels (N,) in 0..C-1 and modality agree.

    The logits and label checks (and their messages) are the identity loss's, applied to every
    row, including rows of modalities that are not selected. ``finite=False`` leaves the
    finiteness of the logits to the caller.
    """
    check_features(logits, "logits", finite=finite)
    n, num_classes = logits.shape
    if n == 0:
        raise VireidError(f"logits: expected at least one row, got shape (0, {num_classes})")
    check_labels(labels, n, against="logits")
    check_modality_tags(modality, n)
    if labels.device != logits.device or modality.device != logits.device:
        raise VireidError(
            f"labels, modality: expected tensors on {logits.device}, got labels on "
            f"{labels.device} and modality on {modality.device}"
        )
    check_class_indices(labels, num_classes)


def _selected(
    modality: torch.Tensor, modalities: Sequence[int] | None
) -> tuple[tuple[int, ...], bool]:
    """The selected modalities, and whether they cover every row of the batch."""
    counts = torch.bincount(modality.long(), minlength=len(Modality)).tolist()
    present = [m for m, c in enumerate(counts) if c]
    chosen = check_modalities(modalities, present)
    missing = [m for m in chosen if m not in present]
    if missing:
        raise VireidError(
            f"modality: DID needs rows of modality {Modality(missing[0]).short} ({missing[0]}); "
            f"the batch has {', '.join(Modality(m).short for m in present)}"
        )
    return chosen, set(present) <= set(chosen)


def did_terms(
    logits: torch.Tensor,
    labels: torch.Tensor,
    modality: torch.Tensor,
    *,
    modalities: Sequence[int] | None = ALL_MODALITIES,
    epsilon: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Mean cross-entropy of each selected modality's rows, by short name (for logging)."""
    check_logit_inputs(logits, labels, modality)
    chosen, _ = _selected(modality, modalities)
    check_epsilon(epsilon)
    out = {}
    for m in chosen:
        rows = modality == m
        out[Modality(m).short] = cross_entropy_unchecked(logits[rows], labels[rows], epsilon)
    return out


def _mean_over_rows(
    logits: torch.Tensor,
    labels: torch.Tensor,
    modality: torch.Tensor,
    modalities: Sequence[int] | None,
    epsilon: float,
) -> torch.Tensor:
    """``reduction="rows"``: the cross-entropy over every row of the selected modalities."""
    # validated once; in the usual case (every row selected) the loss itself checks finiteness
    check_logit_inputs(logits, labels, modality, finite=False)
    chosen, every_row = _selected(modality, modalities)
    check_epsilon(epsilon)
    if every_row:  # the usual case: no copy of the logits
        return cross_entropy_unchecked(logits, labels, epsilon)
    check_features(logits, "logits")  # rows that are not selected are checked too
    rows = torch.isin(modality, torch.tensor(chosen, device=modality.device))
    return cross_entropy_unchecked(logits[rows], labels[rows], epsilon)


def _mean_over_modalities(**arguments: object) -> torch.Tensor:
    """``reduction="modality"``: the mean of :func:`did_terms`."""
    return torch.stack(list(did_terms(**arguments).values())).mean()  # type: ignore[arg-type]


#: ``did_loss(logits, labels, modality, *, <the options of did_terms>, reduction="rows")``
did_loss = loss_of_terms(
    did_terms,
    "did_loss",
    "DID: cross-entropy of a shared classifier over the rows of the selected modalities.",
    reductions={"rows": _mean_over_rows, "modality": _mean_over_modalities},
)
