"""Load a local torchvision ResNet state dict into every stream of a backbone.

Spec: ``spec/models/pretrained.md``. Every key of a torchvision ResNet state dict of the
backbone's depth (ResNet-50 for the methods) is mapped:
``conv1.*`` and ``bn1.*`` to the ``stem`` stage, ``layer<i>.*`` to stage ``layer<i>``; a stage
that exists once per stream receives its own copy in each stream, a shared stage receives it once.
``fc.*`` (the ImageNet classifier) is ignored on purpose. Nothing is downloaded: the file must be
local. A missing, unreadable, truncated or mismatched file raises :class:`VireidError` naming the
path and the first offending keys, and leaves the model unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from reference.checks import check_file
from reference.errors import VireidError
from reference.models.backbone import STAGES, MultiStreamResNet

IGNORED_PREFIX = "fc."
_SHOWN = 5  # how many offending keys a message lists


def torchvision_key(stage: str, key: str) -> str:
    """The torchvision ResNet key of ``key`` (relative to stage ``stage``)."""
    return key if stage == "stem" else f"{stage}.{key}"


def stage_of(tv_key: str) -> str | None:
    """The stage a torchvision key belongs to; ``None`` for ``fc.*`` and unknown keys."""
    head = tv_key.split(".", 1)[0]
    if head in ("conv1", "bn1"):
        return "stem"
    return head if head in STAGES else None


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state-dict file (tensors only, never arbitrary pickled objects)."""
    path = check_file(
        path, "path", expected="a weights file (a torch state dict)",
        missing="pretrained weights file not found",
    )  # fmt: skip
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, not a torch file at all
        raise VireidError(
            f"{path}: cannot read a torch state dict ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise VireidError(
            f"{path}: expected a state dict (a mapping of parameter names to tensors), "
            f"got {type(state).__name__}"
        )
    return state


def load_pretrained(model: nn.Module, path: str | os.PathLike[str]) -> list[str]:
    """Copy a torchvision ResNet state dict (of the backbone's depth) into every stream of
    ``model``'s backbone.

    ``model`` is a :class:`MultiStreamResNet` or a module with one as ``.backbone``. Returns
    the list of model parameter/buffer names that were written.
    """
    backbone = model if isinstance(model, MultiStreamResNet) else getattr(model, "backbone", None)
    if not isinstance(backbone, MultiStreamResNet):
        raise VireidError(
            f"model: expected a MultiStreamResNet or a model with one as .backbone, "
            f"got {type(model).__name__}"
        )
    path = Path(path)
    state = read_state_dict(path)
    kind = f"a torchvision ResNet-{backbone.depth} state dict"

    # where each stage lives: (prefix in the model's state dict, module)
    places: list[tuple[str, str, nn.Module]] = []
    for name in STAGES:
        if backbone.is_shared(name):
            places.append((name, f"shared.{name}", backbone.shared[name]))
        else:
            for s, stages in enumerate(backbone.specific):
                places.append((name, f"specific.{s}.{name}", stages[name]))

    expected: dict[str, torch.Tensor] = {}
    for stage, _, module in places:
        for key, value in module.state_dict().items():
            expected[torchvision_key(stage, key)] = value
    given = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIX)}

    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing key(s) {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected key(s) {_first(unexpected)}")
        raise VireidError(f"{path}: not {kind}: " + "; ".join(parts))
    wrong_shape = [
        f"{k} {tuple(given[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if given[k].shape != v.shape
    ]
    if wrong_shape:
        raise VireidError(f"{path}: not {kind}: wrong shape(s) {_first(wrong_shape)}")
    not_finite = [
        k for k, v in given.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if not_finite:
        raise VireidError(f"{path}: non-finite values in {_first(sorted(not_finite))}")

    written = []
    for stage, prefix, module in places:
        local = {key: given[torchvision_key(stage, key)] for key in module.state_dict()}
        module.load_state_dict(local, strict=True)
        written.extend(f"{prefix}.{key}" for key in local)
    return written
