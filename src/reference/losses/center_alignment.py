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

Plain formula of the centers and the pull: :func:`centers_and_pull_plain`; the loss runs its fast
path ``_CentersAndPullFastBackward`` (one autograd node with a written-out backward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference.checks import check_choice, check_number
from reference.data.modality import Modality, check_modality_tags
from reference.errors import VireidError
from reference.losses.checks import check_labels
from reference.losses.distances import (
    check_features,
    compute_dtype,
    recomputed_gradients,
    row_difference_distances,
)
from reference.losses.groups import (
    check_finite_via_centers,
    group_counts,
    group_rows,
    identity_mask,
    modality_groups,
)

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
        pull = self.pull if self.pull_weight == 1.0 else self.pull_weight * self.pull
        return torch.add(pull, self.push, alpha=self.push_weight)  # one operation

    def as_dict(self) -> dict[str, Tensor]:
        """``{"pull": ..., "push": ...}`` (unweighted), for ``LossTerms``."""
        return {"pull": self.pull, "push": self.push}

    def part_weights(self) -> dict[str, float]:
        """``{"pull": pull_weight, "push": push_weight}``: the weights of :meth:`as_dict`."""
        return {"pull": self.pull_weight, "push": self.push_weight}


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
            check_number(getattr(self, name), name, low=0.0, expected="a finite number >= 0")
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
            check_choice(getattr(self, name), name, allowed)


def centers_and_pull_plain(
    x: Tensor,
    group: Tensor,
    counts: Tensor,
    merge: int,
    identity: Tensor,
    squared: bool,
    detach: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The plain formula of the centers and the pull term, in differentiable operations: the
    centers, the pull, and the ``a_i`` and ``||a_i||`` the fast path's backward needs (also what
    a second derivative differentiates)."""
    size = counts.to(x.dtype)[:, None]
    # in place on fresh tensors (autograd records these too): one (n, d) allocation fewer
    means = x.new_zeros(counts.shape[0], x.shape[1]).index_add_(0, group, x).div_(size)
    centers = means if merge == 1 else means.view(-1, merge, x.shape[1]).mean(dim=1)
    target = centers.detach() if detach else centers
    away = target.index_select(0, identity).sub_(x)
    dist = torch.linalg.vector_norm(away, dim=1)
    pull = (dist.square() if squared else dist).mean()
    return centers, pull, away, dist


class _CentersAndPullFastBackward(torch.autograd.Function):
    """Fast path of :func:`centers_and_pull_plain`: the identity centers and the pull term as one
    autograd node, equal to the plain formula in value and gradient (proved by
    ``tests/losses/test_center_alignment.py::test_gradients_of_every_center_kind_on_uneven_groups``
    and ``::test_gradients``; second derivatives by ``::test_second_derivatives``).

    ``c_p`` is the mean over ``merge`` consecutive groups of the group means (``merge = M``:
    modality_mean; ``merge = 1`` with one group per identity: sample_mean), and with
    ``a_i = c_{y_i} - f_i``, ``pull = mean_i ||a_i||`` (or ``||a_i||^2``). Backward, with
    ``t_i = d pull / d c_{y_i}`` from row ``i`` (``a_i / (n ||a_i||)``, 0 at ``a_i = 0``, or
    ``2 a_i / n``): ``G = dL/dc + sum_{i: y_i = p} t_i`` (the sum left out when the pull's
    centers are detached), and ``dL/df_i = G_{y_i} / (merge * count(group_i)) - t_i``: one
    gather and one sum over the rows instead of the separate nodes of centers and pull. When a
    graph of the gradient is asked for, autograd differentiates :func:`centers_and_pull_plain`.
    """

    @staticmethod
    def forward(ctx, x, group, counts, merge, identity, squared, detach):
        centers, pull, away, dist = centers_and_pull_plain(
            x, group, counts, merge, identity, squared, detach
        )
        ctx.save_for_backward(x, group, counts, identity, away, dist)
        ctx.merge, ctx.squared, ctx.detach = merge, squared, detach
        return centers, pull

    @staticmethod
    def backward(ctx, grad_centers, grad_pull):
        x, group, counts, identity, away, dist = ctx.saved_tensors
        if torch.is_grad_enabled():
            (gx,) = recomputed_gradients(
                lambda t: centers_and_pull_plain(
                    t, group, counts, ctx.merge, identity, ctx.squared, ctx.detach
                )[:2],
                (x,),
                (grad_centers, grad_pull),
                (True,),
            )
            return gx, None, None, None, None, None, None
        n, d = away.shape
        if ctx.squared:
            t = away * (grad_pull * (2.0 / n))
        else:
            t = away * (grad_pull / n / dist).masked_fill_(dist == 0, 0.0)[:, None]
        g = grad_centers
        if not ctx.detach:
            g = g.index_add(0, identity, t)
        merge = ctx.merge
        size = counts.to(away.dtype)[:, None]
        per_group = (g[:, None, :] / (size.view(-1, merge, 1) * merge)).view(-1, d)
        return per_group.index_select(0, group).sub_(t), None, None, None, None, None, None


def center_alignment_terms(
    features: Tensor,
    labels: Tensor,
    modality: Tensor,
    config: CenterAlignmentConfig | None = None,
) -> CenterAlignmentTerms:
    """``pull`` and ``push`` (unweighted) and their weights; see the module docstring."""
    config = CenterAlignmentConfig() if config is None else config
    check_features(features, finite=False)  # finiteness: from the centers, below
    n = features.shape[0]
    check_labels(labels, n)
    check_modality_tags(modality, n)
    groups = group_rows(labels.to(features.device), modality.to(features.device), config.modalities)

    dtype = compute_dtype(features.dtype)
    with torch.autocast(device_type=features.device.type, enabled=False):
        f = features.to(dtype)
        if config.center == "modality_mean":
            group, counts = modality_groups(groups, config.modalities)
            merge = len(config.modalities)
        else:
            group, counts = groups.identity, group_counts(groups.identity, groups.ids.numel())
            merge = 1
        centers, pull = _CentersAndPullFastBackward.apply(
            groups.select(f),
            group,
            counts,
            merge,
            groups.identity,
            config.pull_distance == "squared",
            config.detach_centers,
        )
        check_finite_via_centers(features, groups, centers)

        p = groups.ids.numel()
        between = row_difference_distances(centers)  # few centers: exact, from differences
        if config.push == "hardest":
            nearest = torch.where(identity_mask(p, f.device), float("inf"), between).amin(dim=1)
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
