"""The losses' input checks: labels, identities, modality selections, options.

Spec: the "bad input" sections of ``spec/losses/*.md``. Each check raises a :class:`VireidError`
that names the field (its message is pinned by the tests of the loss that uses it); the feature
checks live with the distances (``distances.check_features``), the scalar field checks in
``reference.checks``.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
from torch import Tensor

from reference.checks import check_choice, check_margin, check_metric, check_number
from reference.data.modality import Modality, check_modality_tags
from reference.errors import VireidError
from reference.losses.distances import check_features

__all__ = [
    "check_class_indices",
    "check_directions",
    "check_epsilon",
    "check_labels",
    "check_metric_inputs",
    "check_modalities",
    "check_modality_pair",
    "check_reduction",
    "check_triplet_options",
    "check_two_identities",
    "modality_label",
]


def modality_label(m: int) -> str:
    """``"V (0)"``: a modality's short name and tag, for messages."""
    return f"{Modality(m).short} ({int(m)})"


def check_labels(
    labels: Tensor, n: int, field: str = "labels", *, against: str = "features"
) -> None:
    """Raise :class:`VireidError` unless ``labels`` is an integer tensor with one entry per row."""
    if not isinstance(labels, torch.Tensor):
        raise VireidError(
            f"{field}: expected a torch.Tensor of identity labels, got {type(labels)!r}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise VireidError(f"{field}: expected an integer tensor, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise VireidError(
            f"{field}: expected shape ({n},) to match {against}, got {tuple(labels.shape)}"
        )


def check_two_identities(labels: Tensor, field: str = "labels") -> None:
    """Raise :class:`VireidError` unless ``labels`` hold at least two identities."""
    ids = labels.unique()
    if ids.numel() < 2:
        which = f" (label {int(ids[0])})" if ids.numel() else ""
        raise VireidError(
            f"{field}: expected at least 2 identities in the batch, got {ids.numel()}{which}"
        )


def check_class_indices(labels: Tensor, num_classes: int) -> None:
    """Raise :class:`VireidError` unless every label is in ``0..num_classes - 1``."""
    if not labels.numel():
        return
    low, high = (int(v) for v in torch.aminmax(labels))  # one reduction, one sync
    if low < 0 or high >= num_classes:
        bad = (labels < 0) | (labels >= num_classes)
        values = sorted({int(v) for v in labels[bad].tolist()})
        raise VireidError(
            f"labels: expected class indices in 0..{num_classes - 1} (logits have {num_classes} "
            f"columns), got {values}"
        )


def check_epsilon(epsilon: object) -> float:
    """The label-smoothing weight: a number in [0, 1)."""
    return check_number(
        epsilon, "epsilon", low=0.0, high=1.0, expected="a label-smoothing weight in [0, 1)"
    )


def check_triplet_options(margin: float, metric: str) -> None:
    """Raise :class:`VireidError` unless ``margin`` is finite and >= 0 and ``metric`` is known."""
    check_margin(margin)
    check_metric(metric)


def check_reduction(reduction: object, allowed: tuple[str, str] = ("mean", "sum")) -> str:
    """``reduction`` if it is one of the two ``allowed`` (``'mean'``/``'sum'`` by default)."""
    return check_choice(
        reduction, "reduction", allowed, expected=f"{allowed[0]!r} or {allowed[1]!r}"
    )


def check_metric_inputs(features: Tensor, labels: Tensor, modality: Tensor) -> None:
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
            + ", ".join(modality_label(m) for m in Modality)
            + f", got {modalities!r}"
        )
    return pair  # type: ignore[return-value]


def _is_tag(x: object) -> bool:
    return not isinstance(x, bool) and isinstance(x, Integral) and x in {int(m) for m in Modality}


def check_modalities(
    modalities: Sequence[int] | None, present: Sequence[int] = ()
) -> tuple[int, ...]:
    """Distinct modality tags, as plain ints; ``None`` means the modalities ``present``."""
    if modalities is None:
        return tuple(present)
    if isinstance(modalities, str) or not isinstance(modalities, Sequence):
        raise VireidError(f"modalities: expected a sequence of modality tags, got {modalities!r}")
    out = []
    for m in modalities:
        if not _is_tag(m):
            raise VireidError(f"modalities: expected modality tags 0..3, got {m!r}")
        out.append(int(m))
    if not out:
        raise VireidError("modalities: expected at least one modality, got none")
    if len(set(out)) != len(out):
        raise VireidError(f"modalities: each modality may appear once, got {out}")
    return tuple(out)


def check_directions(directions: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Distinct ``(from, to)`` pairs of modality tags, as plain ints."""
    if isinstance(directions, str) or not isinstance(directions, Sequence):
        raise VireidError(
            f"directions: expected a sequence of (from, to) pairs, got {directions!r}"
        )
    out = []
    for item in directions:
        if not isinstance(item, tuple | list) or len(item) != 2 or not all(map(_is_tag, item)):
            raise VireidError(
                f"directions: expected (from, to) pairs of modality tags 0..3, got {item!r}"
            )
        out.append((int(item[0]), int(item[1])))
    if not out:
        raise VireidError("directions: expected at least one (from, to) pair, got none")
    if len(set(out)) != len(out):
        raise VireidError(f"directions: each direction may appear once, got {out}")
    return tuple(out)
