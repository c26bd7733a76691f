"""Center alignment loss (Method A) [reconstruction]: pull features to cross-modality identity
centers, keep the centers of different identities apart.

Spec: ``spec/losses/center_alignment.md`` (the seed only describes the loss in words; every choice
below is this project's and a switch). With ``modalities`` (default visible 0 and infrared 1) and
rows of other tags ignored, the cross-modality center of identity ``p`` is::

    center="modality_mean":  c_p = (1/M) sum_m mean{ f_i : labels_i = p, modality_i = m }
    center="sample_mean":    c_p = mean{ f_i : labels_i = p }

With Euclidean distances ``D``::

    pull = (1/n) sum_i D(f_i, c_{y_i})          (pull_distance="squared": D(f_i, c_{y_i})^2)
    push = (1/P) sum_p max(0, margin - min_{q != p} D(c_p, c_q))                 (push="hardest")
    push = (1/(P(P-1))) sum_{p != q} max(0, margin - D(c_p, c_q))               (push="all")
    total = pull_weight * pull + push_weight * push

``detach_centers=True`` stops the gradient through the centers in ``pull`` (the centers then act
as fixed targets for this step). Computed (and returned) in float32 for float16/bfloat16 features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference.data.modality import Modality, check_modality_tags
from reference.errors import VireidError
from reference.losses.distances import (
    check_features,
    compute_dtype,
    distances_unchecked,
    paired_unchecked,
)
from reference.losses.hetero_center import identity_modality_centers
from reference.losses.triplet import check_labels, check_two_identities

CenterKind = Literal["modality_mean", "sample_mean"]
PullDistance = Literal["euclidean", "squared"]
PushKind = Literal["hardest", "all"]


@dataclass(frozen=True)
class CenterAlignmentTerms:
    """The two unweighted terms, their weights, and the weighted total."""

    pull: Tensor
    push: Tensor
    pull_weight: float
    push_weight: float

    @property
    def total(self) -> Tensor:
        return self.pull_weight * self.pull + self.push_weight * self.push

    def as_dict(self) -> dict[str, Tensor]:
        """``{"pull": ..., "push": ...}`` (unweighted), for ``LossTerms``."""
        return {"pull": self.pull, "push": self.push}


@dataclass(frozen=True)
class CenterAlignmentConfig:
    """The switches of the loss; defaults are this project's reconstruction (see the spec)."""

    margin: float = 0.3
    pull_weight: float = 1.0
    push_weight: float = 1.0
    modalities: tuple[int, ...] = (0, 1)
    center: CenterKind = "modality_mean"
    pull_distance: PullDistance = "euclidean"
    push: PushKind = "hardest"
    detach_centers: bool = False

    def __post_init__(self) -> None:
        for name in ("margin", "pull_weight", "push_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (0.0 <= value < float("inf")):
                raise VireidError(f"{name}: expected a finite number >= 0, got {value!r}")
        valid = {int(m) for m in Modality}
        mods = self.modalities
        try:
            ok = len(mods) >= 1 and len(set(mods)) == len(mods) and set(mods) <= valid
        except TypeError:
            ok = False
        if not ok:
            raise VireidError(
                "modalities: expected distinct modality tags out of "
                + ", ".join(f"{m.short} ({int(m)})" for m in Modality)
                + f", got {mods!r}"
            )
        object.__setattr__(self, "modalities", tuple(int(m) for m in mods))
        choices = {
            "center": ("modality_mean", "sample_mean"),
            "pull_distance": ("euclidean", "squared"),
            "push": ("hardest", "all"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise VireidError(
                    f"{name}: expected one of {', '.join(map(repr, allowed))}, "
                    f"got {getattr(self, name)!r}"
                )


def identity_centers(
    features: Tensor, labels: Tensor, modality: Tensor, config: CenterAlignmentConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """Cross-modality centers ``(P, d)``, sorted labels ``(P,)``, mask of the rows used ``(n,)``."""
    mods = torch.tensor(config.modalities, device=features.device)
    keep = (modality[:, None] == mods[None, :]).any(dim=1)
    if config.center == "modality_mean":
        per_modality, ids = identity_modality_centers(features, labels, modality, config.modalities)
        return per_modality.mean(dim=1), ids, keep
    if not bool(keep.any()):
        raise VireidError(
            "modality: no rows of modalities "
            + " or ".join(f"{Modality(m).short} ({m})" for m in config.modalities)
            + " in the batch"
        )
    ids, row_id = torch.unique(labels[keep], return_inverse=True)
    kept = features[keep]
    sums = torch.zeros(ids.numel(), kept.shape[1], dtype=kept.dtype, device=kept.device)
    sums = sums.index_add(0, row_id, kept)
    counts = torch.bincount(row_id, minlength=ids.numel()).to(kept.dtype)
    return sums / counts[:, None], ids, keep


def center_alignment_terms(
    features: Tensor,
    labels: Tensor,
    modality: Tensor,
    config: CenterAlignmentConfig | None = None,
) -> CenterAlignmentTerms:
    """``pull`` and ``push`` (unweighted) and their weights; see the module docstring."""
    config = CenterAlignmentConfig() if config is None else config
    check_features(features)
    n = features.shape[0]
    check_labels(labels, n)
    check_modality_tags(modality, n)
    labels = labels.to(features.device)
    modality = modality.to(features.device)
    mods = torch.tensor(config.modalities, device=features.device)
    check_two_identities(labels[(modality[:, None] == mods[None, :]).any(dim=1)])

    dtype = compute_dtype(features.dtype)
    with torch.autocast(device_type=features.device.type, enabled=False):
        f = features.to(dtype)
        centers, ids, keep = identity_centers(f, labels, modality, config)
        kept_f, kept_y = f[keep], labels[keep]
        targets = centers.detach() if config.detach_centers else centers
        row_center = targets[torch.searchsorted(ids, kept_y)]
        to_center = paired_unchecked(kept_f, row_center)
        pull = (to_center.square() if config.pull_distance == "squared" else to_center).mean()

        p = ids.numel()
        between = distances_unchecked(centers)
        if config.push == "hardest":
            eye = torch.eye(p, dtype=torch.bool, device=f.device)
            nearest = torch.where(eye, float("inf"), between).amin(dim=1)
            push = F.relu(config.margin - nearest).mean()
        else:
            off = ~torch.eye(p, dtype=torch.bool, device=f.device)
            push = F.relu(config.margin - between[off]).mean()
    return CenterAlignmentTerms(pull, push, config.pull_weight, config.push_weight)


def center_alignment(
    features: Tensor,
    labels: Tensor,
    modality: Tensor,
    config: CenterAlignmentConfig | None = None,
) -> Tensor:
    """The weighted total ``pull_weight * pull + push_weight * push`` as a scalar."""
    return center_alignment_terms(features, labels, modality, config).total


class CenterAlignment(nn.Module):
    """:func:`center_alignment_terms` with a fixed config; ``forward`` returns the terms."""

    def __init__(self, config: CenterAlignmentConfig | None = None) -> None:
        super().__init__()
        self.config = CenterAlignmentConfig() if config is None else config

    def forward(self, features: Tensor, labels: Tensor, modality: Tensor) -> CenterAlignmentTerms:
        return center_alignment_terms(features, labels, modality, self.config)

    def extra_repr(self) -> str:
        return repr(self.config)
