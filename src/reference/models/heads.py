"""Branch heads on the shared feature map: global, coarse and fine stripes; BN neck; classifiers.

Spec: ``spec/models/heads.md``. A *granularity* with ``n`` stripes (the global branch is one
stripe covering the whole map) computes, for every stripe ``i``:

    pooled_i  = GeM_p(stripe i of the map)                          (B, 2048)
    feature_i = ReLU(BN2d(W_i pooled_i + b_i))   or pooled_i when not reduced     (B, d)
    neck_i    = BN1d_i(feature_i)  (bias frozen at 0)   when bn_neck               (B, d)
    logits_i  = V_i neck_i   (no bias)  if bn_neck,  else  V_i feature_i + c_i     (B, C)

Every stripe has its own ``W_i, b_i, BN, V_i``, stored per granularity as one grouped 1x1
convolution, one BN over ``n d`` channels and one ``(n, K, d)`` classifier weight: exactly ``n``
independent layers. The stripes of every granularity are pooled together from one power of the
map (``gem_stripes_many``), and a granularity's ``n`` reductions and ``n`` classifiers each run as
one batched product (the reductions with a written-out backward that never copies the weights:
``_StripeLinearFastBackward``, the fast path of the plain grouped convolution
:func:`stripe_linear_plain`).

The test embedding is the concatenation of the chosen branches' features (or neck features),
L2-normalised as a whole (``embedding_norm="concat"``) or per branch (``"branch"``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from reference.checks import check_choice
from reference.errors import VireidError
from reference.models.output import ModelOutput
from reference.models.pooling import check_gem_p, gem_stripes, gem_stripes_many

EMBEDDINGS = ("all", "global", "fine", "coarse")
EMBEDDING_NORMS = ("concat", "branch")


def stripe_linear_plain(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The plain formula: ``z[b, i] = W_i x[b, i] + b_i`` for ``n`` stripes, ``(B, n, C) ->
    (B, n, d)``, as the grouped 1x1 convolution (weight ``(n d, C, 1, 1)``, bias ``(n d)``)."""
    b, n, c = x.shape
    z = F.conv2d(x.reshape(b, n * c, 1, 1), weight, bias, groups=n)
    return z.reshape(b, n, -1)


class _StripeLinearFastBackward(torch.autograd.Function):
    """Fast path of :func:`stripe_linear_plain`: the grouped 1x1 convolution as batched matrix
    products, equal to it in value and gradient (proved by
    ``tests/models/test_heads.py::test_fast_head_equals_the_per_branch_formulation``; second
    derivatives by ``::test_second_derivatives``).

    Same numbers as ``conv2d(x.reshape(B, n C, 1, 1), weight, bias, groups=n)``, but the
    products are laid out so that neither the weight nor its gradient is ever copied: on a CPU
    both the grouped convolution and autograd's own ``bmm`` backward copy the ``n d C`` weights
    several times per step, which made the reductions most of the head's cost.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        _, n, c = x.shape  # x: (B, n, C)
        d = weight.shape[0] // n
        xs = x.transpose(0, 1)  # (n, B, C), a view
        # the inputs themselves are saved (not xs), so that the backward's operations are
        # recorded under create_graph and second derivatives are complete
        ctx.save_for_backward(x, weight)
        z = torch.baddbmm(bias.view(n, 1, d), xs, weight.view(n, d, c).mT)  # (n, B, d)
        return z.transpose(0, 1)

    @staticmethod
    def backward(
        ctx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors
        xs = x.transpose(0, 1)  # (n, B, C)
        n, _, c = xs.shape
        # under autocast the forward ran in reduced precision; the backward runs in the wider one
        dtype = torch.promote_types(grad.dtype, weight.dtype)
        g = grad.transpose(0, 1).to(dtype)  # (n, B, d)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.bmm(g, weight.view(n, -1, c).to(dtype)).transpose(0, 1).to(xs.dtype)
        if ctx.needs_input_grad[1]:
            gw = torch.bmm(g.mT, xs.to(dtype)).view(weight.shape).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            gb = g.sum(dim=1).reshape(-1).to(weight.dtype)
        return gx, gw, gb


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
        return self.branches(gem_stripes(fmap, self.stripes, self.gem_p), with_logits=with_logits)

    def branches(
        self, pooled: torch.Tensor, *, with_logits: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The same from the stripes' GeM values ``(B, C, n)`` (pooled once for all branches)."""
        b, n, d = pooled.shape[0], self.stripes, self.dim
        feats = pooled.transpose(1, 2)  # (B, n, C)
        if self.reduce is not None:
            conv, bn, relu = self.reduce
            z = _StripeLinearFastBackward.apply(feats, conv.weight, conv.bias)  # (B, n, d)
            feats = relu(bn(z.reshape(b, n * d, 1, 1))).view(b, n, d)
        neck = None
        if self.neck is not None:
            neck = self.neck(feats.reshape(b, n * d)).view(b, n, d)
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
        check_choice(embedding, "embedding", EMBEDDINGS, expected=f"one of {EMBEDDINGS}")
        check_choice(
            embedding_norm, "embedding_norm", EMBEDDING_NORMS, expected=f"one of {EMBEDDING_NORMS}"
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
        self.gem_p = check_gem_p(gem_p)
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
        grans = list(self.granularities.items())
        # one power of the map and one pooling for the stripes of every granularity
        pooled = gem_stripes_many(fmap, [g.stripes for _, g in grans], self.gem_p)
        for (kind, gran), stripes in zip(grans, pooled, strict=True):
            feats, neck, logit = gran.branches(stripes, with_logits=self.training)
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
