"""The loss audit's batches: which losses, their references, adapters and generated batches.

Spec: ``spec/audit/loss.md`` ("Batches"). P identities x K rows in each modality (the form the
training samplers give), float64, in canonical order (by modality, then identity) or permuted, or
with every row of one identity identical (zero distances).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reference.checks import check_choice
from reference.losses.center_alignment import center_alignment
from reference.losses.hetero_center import hetero_center_triplet
from reference.losses.identity import identity_loss
from reference.losses.mdl import mdl_loss
from reference.losses.mml import mml_loss
from reference.losses.triplet import batch_hard_triplet


@dataclass(frozen=True)
class LossInfo:
    name: str
    title: str
    reference: Callable[..., torch.Tensor]
    modalities: tuple[int, ...]  # () for losses without modality tags
    adapters: tuple[str, ...]  # the first is the default
    k: tuple[int, int]  # rows per identity and modality
    variants: tuple[tuple[str, str, dict[str, str]], ...]


_TRIPLET_VARIANTS = (
    ("distance", "squared Euclidean distances", {"distance": "squared"}),
    ("margin", "margin added outside the hinge", {"margin": "outside"}),
    ("margin", "no margin", {"margin": "zero"}),
    ("margin", "soft margin (softplus, no margin)", {"margin": "soft"}),
    ("reduction", "sum instead of mean", {"reduction": "sum"}),
)

LOSSES: dict[str, LossInfo] = {
    "tri": LossInfo(
        "tri", "batch-hard triplet (reference.losses.triplet.batch_hard_triplet)",
        lambda x, y, m: batch_hard_triplet(x, y), (), ("plain",), (1, 3),
        (*_TRIPLET_VARIANTS,
         ("reduction", "mean over every anchor, those without a triplet as 0",
          {"reduction": "pooled"})),
    ),
    "hctri": LossInfo(
        "hctri", "hetero-center triplet (reference.losses.hetero_center.hetero_center_triplet)",
        hetero_center_triplet, (0, 1), ("tags", "halves"), (1, 3), _TRIPLET_VARIANTS,
    ),
    "ca": LossInfo(
        "ca", "center alignment (reference.losses.center_alignment.center_alignment)",
        center_alignment, (0, 1), ("tags", "halves"), (1, 3),
        (("distance", "squared Euclidean distances", {"distance": "squared"}),
         ("distance", "squared distances to the centers (pull)", {"distance": "squared-pull"}),
         ("margin", "no margin (push always 0)", {"margin": "zero"}),
         ("margin", "soft margin (softplus)", {"margin": "soft"}),
         ("reduction", "sums instead of means", {"reduction": "sum"})),
    ),
    "mml": LossInfo(
        "mml", "multi-mode intra-modality loss (reference.losses.mml.mml_loss)",
        mml_loss, (0, 1, 2, 3), ("tags",), (2, 3),
        (*_TRIPLET_VARIANTS,
         ("reduction", "one mean over the anchors of every modality", {"reduction": "pooled"})),
    ),
    "mdl": LossInfo(
        "mdl", "multi-directional cross-modality loss (reference.losses.mdl.mdl_loss)",
        mdl_loss, (0, 1, 2, 3), ("tags",), (1, 2),
        (*_TRIPLET_VARIANTS,
         ("reduction", "one mean over the anchors of every direction", {"reduction": "pooled"})),
    ),
    "id": LossInfo(
        "id", "identity loss, cross-entropy (reference.losses.identity.identity_loss)",
        lambda z, y, m: identity_loss(z, y), (), ("plain",), (1, 3),
        (("reduction", "sum instead of mean", {"reduction": "sum"}),),
    ),
}  # fmt: skip

ADAPTERS: dict[str, str] = {
    "plain": "f(features, labels) -> loss (id: f(logits, labels))",
    "tags": "f(features, labels, modality) -> loss; modality: 0 V, 1 I, 2 DV, 3 DI",
    "halves": "f(features, labels) -> loss; rows are [visible rows; infrared rows], equal halves",
}


def check_loss(name: str) -> LossInfo:
    check_choice(name, "loss", LOSSES)
    return LOSSES[name]


@dataclass(frozen=True, eq=False)
class LossProblem:
    """A batch in canonical order (by modality, then label) and the row order shown."""

    loss: str
    features: np.ndarray  # (n, d) float64, canonical order (id: logits (n, C))
    labels: np.ndarray  # (n,) int64
    modality: np.ndarray | None  # (n,) int64
    perm: np.ndarray | None = None  # rows shown to the target: canonical[perm]
    params: tuple[Any, ...] = ()
    values_only: bool = False  # compare values (and finiteness), not gradients

    @property
    def size(self) -> int:
        return int(self.labels.size)

    def describe(self) -> str:
        ids = len(set(self.labels.tolist()))
        order = ", rows permuted" if self.perm is not None else ""
        return f"{self.size} rows ({ids} identities, dim {self.features.shape[1]}){order}"

    def shown(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(features, labels, modality) in the order the target sees."""
        if self.perm is None:
            return self.features, self.labels, self.modality
        m = None if self.modality is None else self.modality[self.perm]
        return self.features[self.perm], self.labels[self.perm], m

    def canonical(self) -> LossProblem:
        return LossProblem(self.loss, self.features, self.labels, self.modality, None,
                           self.params, self.values_only)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        f, y, m = self.shown()
        return {
            "loss": self.loss,
            "features": f.tolist(),
            "labels": y.tolist(),
            **({"modality": m.tolist()} if m is not None else {}),
        }

    def snippet(self) -> str:
        f, y, m = self.shown()
        text = lambda a: np.array2string(a, separator=", ", threshold=10**9,  # noqa: E731
                                         max_line_width=96, floatmode="unique")  # fmt: skip
        name = "logits" if self.loss == "id" else "features"
        lines = ["import torch", "",
                 f"{name} = torch.tensor({text(f)}, dtype=torch.float64, requires_grad=True)",
                 f"labels = torch.tensor({text(y)})"]  # fmt: skip
        if m is not None:
            lines.append(f"modality = torch.tensor({text(m)})")
        return "\n".join(lines)


def build_batch(
    info: LossInfo, adapter: str, p: int, k: int, dim: int, scale: float, seed: int, order: str
) -> LossProblem:
    """A P x K (x modalities) batch; ``order``: "canonical", "shuffled" or "identical"."""
    rng = np.random.default_rng(seed)
    mods = info.modalities or (None,)
    if info.name == "id":
        classes = p + int(rng.integers(0, 3))
        ids = np.sort(rng.choice(classes, p, replace=False))
    else:
        ids = np.sort(rng.choice(100, p, replace=False))
    labels = np.array([i for _ in mods for i in ids for _ in range(k)], dtype=np.int64)
    modality = (
        None if info.modalities == ()
        else np.array([mm for mm in mods for _ in ids for _ in range(k)], dtype=np.int64)
    )  # fmt: skip
    n = labels.size
    if info.name == "id":
        features = rng.normal(size=(n, classes)) * 3 * scale
    else:
        centers = rng.normal(size=(len(ids), dim))
        own = np.searchsorted(ids, labels)
        features = centers[own] * 0.5 + rng.normal(size=(n, dim)) * scale
    if order == "identical":  # every row of the first identity the same vector: zero distances
        features[labels == ids[0]] = features[np.flatnonzero(labels == ids[0])[0]]
    perm = None
    if order == "shuffled":
        if adapter == "halves":  # the contract keeps visible rows first: shuffle within halves
            half = n // 2
            perm = np.concatenate([rng.permutation(half), half + rng.permutation(half)])
        else:
            perm = rng.permutation(n)
    for a in (features, labels, modality, perm):
        if a is not None:
            a.setflags(write=False)
    return LossProblem(info.name, features, labels, modality, perm,
                       (order, p, k, dim, scale, seed),
                       order == "identical" and info.name != "id")  # fmt: skip


def batch_strategy(info: LossInfo, adapter: str, order: str):
    from hypothesis import strategies as st

    @st.composite
    def draw(draw_: Any) -> LossProblem:
        p = draw_(st.integers(2, 4 if len(info.modalities) < 4 else 3))
        k = draw_(st.integers(*info.k))
        dim = draw_(st.integers(2, 4))
        scale = draw_(st.sampled_from([0.3, 1.0, 0.05]))
        seed = draw_(st.integers(0, 2**32 - 1))
        return build_batch(info, adapter, p, k, dim, scale, seed, order)

    return draw()
