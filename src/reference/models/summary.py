"""A model's stages, shapes, parameters and step cost, as a table: ``vireid model summary``.

Spec: ``spec/models/summary.md``. ``summarize(model, height, width)`` describes a network made by
``build_model`` for one input size: per backbone stage, whether it is shared or exists once per
stream, its output shape and its parameters; the head's branches and embedding width; the
parameter totals; and the operations of one training step per image (``cost.md``). The command
(``models/commands.py``) builds the model from a config (flags, or a JSON file of ``ModelConfig``
fields), loads the local ``--pretrained`` weights if given, and prints the table, so a weights file
and a config can be checked before any training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from reference.data.modality import Modality
from reference.errors import VireidError
from reference.models.backbone import STAGES
from reference.models.build import ModelConfig
from reference.models.cost import head_step_flops, step_flops
from reference.models.network import ReidNetwork


@dataclass(frozen=True)
class StageRow:
    name: str
    copies: int  # 1 when shared, else the number of streams
    output: tuple[int, int, int]  # channels, rows, columns for one image
    parameters: int  # of one copy


@dataclass(frozen=True)
class ModelSummary:
    height: int
    width: int
    stages: tuple[StageRow, ...]
    branches: dict[str, int]  # branch name -> feature width
    embedding_dim: int
    parameters: int
    trainable: int
    forward_flops: int  # one training step, per image
    backward_flops: int
    head_share: float  # the head's part of the step's operations


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def summarize(model: ReidNetwork, height: int, width: int) -> ModelSummary:
    """Describe ``model`` for ``height`` x ``width`` images (checked like a real batch)."""
    if not isinstance(model, ReidNetwork):
        raise VireidError(
            f"model: expected a ReidNetwork (build_model), got {type(model).__name__}"
        )
    device = next(model.parameters()).device
    tags = torch.tensor(
        [Modality.VISIBLE, Modality.INFRARED], device=device
    )  # every model routes both
    images = torch.zeros(2, 3, height, width, device=device)  # two rows: BN needs them in train
    try:
        model.check_inputs(images, tags)
    except VireidError as exc:
        raise VireidError(f"size {height}x{width}: {exc}") from None
    backbone = model.backbone
    rows = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = images[:1]
        for name in STAGES:
            x = backbone.stage(name, 0)(x)
            copies = 1 if backbone.is_shared(name) else backbone.num_streams
            rows.append(StageRow(name, copies, tuple(x.shape[1:]), _count(backbone.stage(name, 0))))
        out = model.head(x, tags[:1])  # the head on the stages' map: no second backbone pass
    model.train(was_training)
    step = step_flops(model, images, tags)
    head = head_step_flops(model, images, tags)
    return ModelSummary(
        height=height,
        width=width,
        stages=tuple(rows),
        branches={name: f.shape[1] for name, f in out.features.items()},
        embedding_dim=out.embedding.shape[1],
        parameters=_count(model),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        forward_flops=step.forward // 2,
        backward_flops=step.backward // 2,
        head_share=head.total / step.total,
    )


def _branch_groups(branches: dict[str, int]) -> str:
    groups: dict[str, list[str]] = {}
    for name in branches:
        groups.setdefault(name.split(".")[0], []).append(name)
    parts = []
    for kind, names in groups.items():
        widths = sorted({branches[n] for n in names})
        width = "/".join(str(w) for w in widths)
        parts.append(kind if len(names) == 1 else f"{kind} x {len(names)}")
        parts[-1] += f" ({width})"
    return ", ".join(parts)


def format_summary(config: ModelConfig, summary: ModelSummary, pretrained: str) -> str:
    s = summary
    lines = [
        f"model       {config.kind}, ResNet-{config.depth}, {config.num_classes} classes, "
        f"share_from={config.share_from}, "
        f"last_stride={config.last_stride}, input {s.height}x{s.width}",
        f"pretrained  {pretrained}",
        "",
        f"{'stage':<8}{'copies':<14}{'output (C x H x W)':<22}{'parameters':>14}",
    ]
    for row in s.stages:
        copies = "shared" if row.copies == 1 else f"{row.copies} (one each)"
        shape = " x ".join(str(v) for v in row.output)
        params = f"{row.parameters:,}" if row.copies == 1 else f"{row.copies} x {row.parameters:,}"
        lines.append(f"{row.name:<8}{copies:<14}{shape:<22}{params:>14}")
    lines += [
        "",
        f"branches    {len(s.branches)}: {_branch_groups(s.branches)}",
        f"embedding   {s.embedding_dim}",
        f"parameters  {s.parameters:,} ({s.trainable:,} trainable)",
        f"step cost   per image: forward {s.forward_flops / 1e9:.2f} GFLOP, backward "
        f"{s.backward_flops / 1e9:.2f} GFLOP; head {100 * s.head_share:.2f} % of it",
    ]
    return "\n".join(lines)


_SIZE = re.compile(r"^(\d+)x(\d+)$")


def parse_size(text: str) -> tuple[int, int]:
    match = _SIZE.match(text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise VireidError(f"size: expected HEIGHTxWIDTH in pixels, e.g. 288x144, got {text!r}")
    return int(match[1]), int(match[2])
