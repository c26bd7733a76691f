"""Branch heads on the shared feature map: global, coarse and fine stripes; BN neck; classifiers.

Spec: ``spec/models/heads.md``. A *granularity* with ``n`` stripes (the global branch is one
stripe covering the whole map) computes, for every stripe ``i``:

    pooled_i  = GeM_p(stripe i of the map)                          (B, 2048)
    feature_i = ReLU(BN2d(W_i pooled_i + b_i))   or pooled_i when not reduced     (B, d)
    neck_i    = BN1d_i(feature_i)  (bias frozen at 0)   when bn_neck               (B, d)
    logits_i  = V_i neck_i   (no bias)  if bn_neck,  else  V_i feature_i + c_i     (B, C)

Every stripe has its own ``W_i, b_i, BN, V_i``: the ``n`` reductions run as one grouped 1x1
convolution and the ``n`` classifiers as one batched product, which is exactly ``n`` independent
layers. The test embedding is the concatenation of the chosen branches' features (or neck
features), L2-normalised as a whole (``embedding_norm="concat"``) or per branch (``"branch"``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from reference.errors import VireidError
from reference.models.output import ModelOutput
from reference.models.pooling import check_gem_p, gem_stripes

EMBEDDINGS = ("all", "global", "fine", "coarse")
EMBEDDING_NORMS = ("concat", "branch")


class Granularity(nn.Module):
    """``stripes`` parallel branches: GeM, optional reduction, optional BN neck, classifier."""

    def __init__(
        self,
        *,
        stripes: int,
        in_channels: int,
        reduction_dim: int | None,
        num_classes: int,
        gem_p: float,
        bn_neck: bool,
    ) -> None:
        super().__init__()
        self.stripes = stripes
        self.gem_p = check_gem_p(gem_p)
        self.dim = reduction_dim if reduction_dim is not None else in_channels
        n, d = stripes, self.dim
        self.reduce: nn.Module | None = None
        if reduction_dim is not None:
            conv = nn.Conv2d(n * in_channels, n * d, kernel_size=1, groups=n)
            # fan_in of a group is in_channels, as for n separate 1x1 convs [predecessor]
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            self.reduce = nn.Sequential(conv, nn.BatchNorm2d(n * d), nn.ReLU(inplace=True))
        self.neck: nn.BatchNorm1d | None = None
        if bn_neck:
            self.neck = nn.BatchNorm1d(n * d)
            nn.init.normal_(self.neck.weight, 1.0, 0.01)
            nn.init.zeros_(self.neck.bias)
            self.neck.bias.requires_grad_(False)  # no shift [predecessor]
        self.classifier_weight = nn.Parameter(torch.empty(n, num_classes, d))
        nn.init.normal_(self.classifier_weight, 0.0, 0.001)
        self.classifier_bias = None if bn_neck else nn.Parameter(torch.zeros(n, num_classes))

    def forward(
        self, fmap: torch.Tensor, *, with_logits: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Map ``(B, C, h, w)`` to features and neck ``(B, n, d)``, logits ``(B, n, K)``."""
        b = fmap.shape[0]
        pooled = gem_stripes(fmap, self.stripes, self.gem_p)  # (B, C, n)
        feats = pooled.transpose(1, 2)  # (B, n, C)
        if self.reduce is not None:
            feats = self.reduce(feats.reshape(b, -1, 1, 1)).reshape(b, self.stripes, self.dim)
        neck = None
        if self.neck is not None:
            neck = self.neck(feats.reshape(b, -1)).reshape(b, self.stripes, self.dim)
        logits = None
        if with_logits:
            src = neck if neck is not None else feats
            logits = torch.einsum("bnd,nkd->bnk", src, self.classifier_weight)
            if self.classifier_bias is not None:
                logits = logits + self.classifier_bias
        return feats, neck, logits


class MultiGranularityHead(nn.Module):
    """Global, coarse and fine branches on one feature map, returning a :class:`ModelOutput`.

    In training mode every branch's features, neck features and logits are returned. In eval
    mode ``logits`` is empty (evaluation needs only the embedding; the classifiers are skipped).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 2048,
        global_branch: bool = True,
        reduce_global: bool = True,
        coarse_stripes: int = 3,
        fine_stripes: int = 6,
        reduction_dim: int = 256,
        gem_p: float = 3.0,
        bn_neck: bool = True,
        embedding: Literal["all", "global", "fine", "coarse"] = "all",
        embedding_norm: Literal["concat", "branch"] = "concat",
        embedding_neck: bool = False,
    ) -> None:
        super().__init__()
        if embedding not in EMBEDDINGS:
            raise VireidError(f"embedding: expected one of {EMBEDDINGS}, got {embedding!r}")
        if embedding_norm not in EMBEDDING_NORMS:
            raise VireidError(
                f"embedding_norm: expected one of {EMBEDDING_NORMS}, got {embedding_norm!r}"
            )
        if embedding_neck and not bn_neck:
            raise VireidError("embedding_neck: needs bn_neck=True")
        common = dict(
            in_channels=in_channels, num_classes=num_classes, gem_p=gem_p, bn_neck=bn_neck
        )
        self.granularities = nn.ModuleDict()
        if global_branch:
            self.granularities["global"] = Granularity(
                stripes=1, reduction_dim=reduction_dim if reduce_global else None, **common
            )
        if coarse_stripes:
            self.granularities["coarse"] = Granularity(
                stripes=coarse_stripes, reduction_dim=reduction_dim, **common
            )
        if fine_stripes:
            self.granularities["fine"] = Granularity(
                stripes=fine_stripes, reduction_dim=reduction_dim, **common
            )
        if not self.granularities:
            raise VireidError("head: at least one branch is needed (global, coarse or fine)")
        if embedding != "all" and embedding not in self.granularities:
            raise VireidError(f"embedding: {embedding!r} needs the {embedding} branch")
        self.embedding = embedding
        self.embedding_norm = embedding_norm
        self.embedding_neck = embedding_neck

    @property
    def row_multiple(self) -> int:
        """The feature map height must be a multiple of this (every stripe count divides it)."""
        return math.lcm(*(g.stripes for g in self.granularities.values()))

    def embedding_dim(self) -> int:
        names = self.granularities if self.embedding == "all" else [self.embedding]
        return sum(self.granularities[n].stripes * self.granularities[n].dim for n in names)

    def forward(self, fmap: torch.Tensor, modality: torch.Tensor) -> ModelOutput:
        features: dict[str, torch.Tensor] = {}
        necks: dict[str, torch.Tensor] = {}
        logits: dict[str, torch.Tensor] = {}
        parts: list[torch.Tensor] = []  # embedding pieces, (B, n, d) each
        for kind, gran in self.granularities.items():
            feats, neck, logit = gran(fmap, with_logits=self.training)
            for i in range(gran.stripes):
                name = "global" if kind == "global" else f"{kind}.{i}"
                features[name] = feats[:, i]
                if neck is not None:
                    necks[name] = neck[:, i]
                if logit is not None:
                    logits[name] = logit[:, i]
            if self.embedding in ("all", kind):
                parts.append(neck if self.embedding_neck else feats)
        if self.embedding_norm == "branch":
            parts = [F.normalize(p, dim=-1) for p in parts]
        embedding = torch.cat([p.flatten(1) for p in parts], dim=1)
        if self.embedding_norm == "concat":
            embedding = F.normalize(embedding, dim=1)
        return ModelOutput(
            features=features,
            logits=logits,
            modality=modality,
            embedding=embedding,
            neck_features=necks,
        )
