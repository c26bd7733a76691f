"""``ModelConfig`` and ``build_model(config)``: the one way to make a network.

Spec: ``spec/models/build.md``. A config is a frozen dataclass; fields left as ``None`` take the
default of the config's ``kind`` (``method_a``, ``method_b``, ``baseline``), so the three models
differ only in data. Values are checked when the config is made: a bad value is a
:class:`VireidError` naming the field (``model.<field>``) and what was expected.

Parameters are initialised from ``init_seed`` alone: the torchvision constructors draw from the
global CPU generator, so building runs inside ``torch.random.fork_rng`` with that generator seeded
from ``init_seed``; the caller's global random state is untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch

from reference.checks import check_bool, check_choice, check_integer
from reference.config import from_mapping
from reference.errors import VireidError
from reference.models.backbone import MultiStreamResNet, check_depth
from reference.models.heads import EMBEDDING_NORMS, EMBEDDINGS, MultiGranularityHead
from reference.models.network import DERIVED_ROUTINGS, TWO_MODALITIES, ReidNetwork
from reference.models.pooling import check_gem_p
from reference.models.pretrained import load_pretrained

KINDS = ("method_a", "method_b", "baseline")

# per-kind defaults of the fields left as None
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "method_a": dict(
        reduce_global=True, coarse_stripes=3, fine_stripes=6, embedding="all", derived_routing=None
    ),
    "method_b": dict(
        reduce_global=False, coarse_stripes=0, fine_stripes=0, embedding="global",
        derived_routing="base",
    ),
    "baseline": dict(
        reduce_global=False, coarse_stripes=0, fine_stripes=0, embedding="global",
        derived_routing=None,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class ModelConfig:
    kind: Literal["method_a", "method_b", "baseline"]
    num_classes: int
    share_from: int = 2
    last_stride: int = 1
    gem_p: float = 3.0
    global_branch: bool = True
    reduce_global: bool | None = None
    coarse_stripes: int | None = None
    fine_stripes: int | None = None
    reduction_dim: int = 256
    bn_neck: bool = True
    embedding: Literal["all", "global", "fine", "coarse"] | None = None
    embedding_norm: Literal["concat", "branch"] = "concat"
    embedding_neck: bool = False
    derived_routing: Literal["base", "cross", "own"] | None = None
    pretrained: Path | None = None
    init_seed: int = 0
    zero_init_residual: bool = False
    depth: int = 50

    def _check_int(self, name: str, low: int, high: int | None = None) -> None:
        check_integer(getattr(self, name), f"model.{name}", low=low, high=high, numpy=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise VireidError(f"model.kind: expected one of {KINDS}, got {self.kind!r}")
        given_routing = self.derived_routing
        for name, value in KIND_DEFAULTS[self.kind].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if isinstance(self.pretrained, str):
            object.__setattr__(self, "pretrained", Path(self.pretrained))
        self._check_int("num_classes", 1)
        check_depth(self.depth, "model.depth")
        self._check_int("share_from", 0, 5)
        check_choice(self.last_stride, "model.last_stride", (1, 2), expected="1 or 2")
        check_gem_p(self.gem_p, field="model.gem_p")
        for name in (
            "global_branch",
            "reduce_global",
            "bn_neck",
            "embedding_neck",
            "zero_init_residual",
        ):
            check_bool(getattr(self, name), f"model.{name}", expected="true or false")
        self._check_int("coarse_stripes", 0)
        self._check_int("fine_stripes", 0)
        self._check_int("reduction_dim", 1)
        self._check_int("init_seed", 0)
        check_choice(self.embedding, "model.embedding", EMBEDDINGS, expected=f"one of {EMBEDDINGS}")
        check_choice(
            self.embedding_norm,
            "model.embedding_norm",
            EMBEDDING_NORMS,
            expected=f"one of {EMBEDDING_NORMS}",
        )
        if self.pretrained is not None and not isinstance(self.pretrained, Path):
            raise VireidError(
                f"model.pretrained: expected a path or None, got {type(self.pretrained).__name__}"
            )
        if not (self.global_branch or self.coarse_stripes or self.fine_stripes):
            raise VireidError(
                "model: at least one branch is needed (global_branch, coarse_stripes or "
                "fine_stripes)"
            )
        present = {
            "global": self.global_branch,
            "coarse": self.coarse_stripes > 0,
            "fine": self.fine_stripes > 0,
        }
        if self.embedding != "all" and not present[self.embedding]:
            raise VireidError(
                f"model.embedding: {self.embedding!r} needs the {self.embedding} branch"
            )
        if self.embedding_neck and not self.bn_neck:
            raise VireidError("model.embedding_neck: needs bn_neck=true")
        if self.kind == "baseline" and (
            not self.global_branch or self.coarse_stripes or self.fine_stripes
        ):
            raise VireidError(
                "model: the baseline has the global branch only; got "
                f"global_branch={self.global_branch}, coarse_stripes={self.coarse_stripes}, "
                f"fine_stripes={self.fine_stripes}"
            )
        if self.kind == "method_b":
            check_choice(
                self.derived_routing,
                "model.derived_routing",
                tuple(DERIVED_ROUTINGS),
                expected=f"one of {tuple(DERIVED_ROUTINGS)}",
            )
        elif given_routing is not None:
            raise VireidError(
                f"model.derived_routing: only method_b takes derived modalities; "
                f"got {given_routing!r} for kind {self.kind!r}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """A config from a mapping (e.g. a preset file's ``model`` table): the generic loader
        (``reference.config.from_mapping``, errors named ``model.<field>``) after naming every
        unknown and missing field at once."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise VireidError(
                f"model: unknown field(s) {unknown}; expected some of {sorted(known)}"
            )
        missing = sorted({"kind", "num_classes"} - set(values))
        if missing:
            raise VireidError(f"model: missing field(s) {missing}")
        return from_mapping(cls, values, "model")

    @property
    def routing(self) -> tuple[int | None, ...]:
        if self.kind == "method_b":
            return DERIVED_ROUTINGS[self.derived_routing]
        return TWO_MODALITIES

    @property
    def num_streams(self) -> int:
        return max(s for s in self.routing if s is not None) + 1


def predecessor_config(num_classes: int, **changes: Any) -> ModelConfig:
    """The hetero-center triplet network [predecessor]: six GeM stripes, no global/coarse
    branch, no BN neck, embedding = L2-normalised concatenation of the six stripe features."""
    base = ModelConfig(
        kind="method_a",
        num_classes=num_classes,
        global_branch=False,
        coarse_stripes=0,
        fine_stripes=6,
        bn_neck=False,
        embedding="fine",
    )
    return replace(base, **changes)


def build_model(config: ModelConfig, *, initialise: bool = True) -> ReidNetwork:
    """The network ``config`` describes, initialised from ``config.init_seed`` (with the residual
    blocks' last BatchNorm scales at 0 when ``config.zero_init_residual``) and, when
    ``config.pretrained`` is set, with the backbone loaded from that local file (which overwrites
    every backbone parameter, those scales included).

    ``initialise=False``: the parameters and buffers of the backbone and head are allocated but
    left as they come (no random numbers drawn, ``pretrained`` not read), for a caller that loads
    every one of them right after (``load_state_dict(..., strict=True)``, as from a checkpoint).
    The network's routing table, which no state dict holds, is set as always."""
    if not isinstance(config, ModelConfig):
        raise VireidError(f"config: expected a ModelConfig, got {type(config).__name__}")
    check_bool(initialise, "initialise")
    with torch.random.fork_rng(devices=[]), _allocation(initialise):
        torch.default_generator.manual_seed(config.init_seed)
        backbone = MultiStreamResNet(
            share_from=config.share_from,
            last_stride=config.last_stride,
            num_streams=config.num_streams,
            zero_init_residual=config.zero_init_residual,
            depth=config.depth,
        )
        head = MultiGranularityHead(
            in_channels=backbone.out_channels,
            num_classes=config.num_classes,
            global_branch=config.global_branch,
            reduce_global=config.reduce_global,
            coarse_stripes=config.coarse_stripes,
            fine_stripes=config.fine_stripes,
            reduction_dim=config.reduction_dim,
            gem_p=config.gem_p,
            bn_neck=config.bn_neck,
            embedding=config.embedding,
            embedding_norm=config.embedding_norm,
            embedding_neck=config.embedding_neck,
        )
    if not initialise:
        # built on the meta device (shapes only, no arithmetic), then given uninitialised memory
        backbone.to_empty(device="cpu")
        head.to_empty(device="cpu")
    model = ReidNetwork(backbone, head, config.routing)
    if initialise and config.pretrained is not None:
        load_pretrained(model, config.pretrained)
    return model


def _allocation(initialise: bool) -> contextlib.AbstractContextManager:
    """Where ``build_model`` makes the backbone and head: as usual, or on the meta device."""
    return contextlib.nullcontext() if initialise else torch.device("meta")
