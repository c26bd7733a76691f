"""Multi-stream ResNet whose later stages are shared between the streams.

Spec: ``spec/models/backbone.md``. torchvision's ResNet-50 (or, with ``depth``, ResNet-18 or
ResNet-34: the same five stages with basic blocks, 512 output channels) is cut into five stages,
``stem`` (conv1, bn1, relu, maxpool), ``layer1`` .. ``layer4`` (stage indices 0..4). With
``share_from = k`` (0..5) the stages of index ``< k`` exist once per stream (modality-specific),
the stages of index ``>= k`` exist once and are shared [predecessor]: k = 0 is one stream, k = 5
shares nothing. Each row of a batch goes through its own stream's specific stages, then the whole
batch goes through the shared stages at once; rows come out in input order.

``last_stride = 1`` sets the stride of layer4's first block to 1 (its strided 3x3 conv and the
downsample 1x1 conv), so a 288x144 image gives an 18x9 map instead of 9x5 [predecessor].

``zero_init_residual = True`` starts the last BatchNorm scale of every residual block at 0
(torchvision's ``zero_init_residual``): a randomly initialised network then starts as its
shortcuts, a shallow network [reconstruction]; loaded weights overwrite it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import ResNet, resnet18, resnet34, resnet50
from torchvision.models.resnet import Bottleneck

from reference.checks import check_integer
from reference.errors import VireidError

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
#: torchvision's constructor and the output channels of each depth: 50 is the methods' network
#: [seed]; 18 and 34 (basic blocks) are [reconstruction], for runs on a CPU (the demo, tests)
DEPTHS: dict[int, tuple[Callable[..., ResNet], int]] = {
    18: (resnet18, 512),
    34: (resnet34, 512),
    50: (resnet50, 2048),
}


def check_depth(depth: object, field: str = "depth") -> int:
    """``depth`` when it is one of :data:`DEPTHS`; otherwise an error naming ``field``."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth not in DEPTHS:
        raise VireidError(f"{field}: expected 18, 34 or 50, got {depth!r}")
    return depth


def out_channels(depth: int) -> int:
    """Channels of the map a ResNet of ``depth`` gives: 2048 for 50, 512 for 18 and 34."""
    return DEPTHS[check_depth(depth)][1]


def resnet_stages(
    last_stride: int = 1, zero_init_residual: bool = False, depth: int = 50
) -> OrderedDict[str, nn.Module]:
    """A fresh torchvision ResNet of ``depth`` (``weights=None``) cut into the five named stages.

    ``zero_init_residual``: the last BatchNorm's scale of every residual block (``bn3`` of a
    bottleneck, ``bn2`` of a basic block) starts at 0, so each block starts as its shortcut
    (torchvision's switch of that name; it draws no random numbers, so every other parameter is
    the same as without it)."""
    if last_stride not in (1, 2):
        raise VireidError(f"last_stride: expected 1 or 2, got {last_stride!r}")
    net = DEPTHS[check_depth(depth)][0](weights=None, zero_init_residual=zero_init_residual)
    if last_stride == 1:
        # torchvision puts a block's stride on its 3x3 conv (conv2 of a bottleneck, v1.5;
        # conv1 of a basic block) and on the downsample conv
        block = net.layer4[0]
        (block.conv2 if isinstance(block, Bottleneck) else block.conv1).stride = (1, 1)
        block.downsample[0].stride = (1, 1)
    stem = nn.Sequential(
        OrderedDict(conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool)
    )
    return OrderedDict(
        stem=stem, layer1=net.layer1, layer2=net.layer2, layer3=net.layer3, layer4=net.layer4
    )


def feature_map_rows(height: int, last_stride: int) -> int:
    """Rows of the ResNet's output map (every depth) for an input of ``height`` rows: every
    stride-2 layer (conv1, maxpool, layer2..layer4 with padding) maps ``h`` to ``ceil(h / 2)``."""
    for _ in range(4 if last_stride == 1 else 5):
        height = -(-height // 2)
    return height


class MultiStreamResNet(nn.Module):
    """A ResNet with ``num_streams`` specific stems/first stages and shared later stages.

    ``forward(images (B, 3, H, W), streams (B,) int64 in 0..num_streams-1) -> (B, C, h, w)``,
    ``C = out_channels`` (2048 at depth 50).
    """

    def __init__(
        self,
        share_from: int = 2,
        last_stride: int = 1,
        num_streams: int = 2,
        zero_init_residual: bool = False,
        depth: int = 50,
    ) -> None:
        super().__init__()
        check_integer(share_from, "share_from", low=0, high=5)
        check_integer(num_streams, "num_streams", low=1, numpy=False)
        self.depth = check_depth(depth)
        self.out_channels = DEPTHS[self.depth][1]
        self.share_from = share_from
        self.last_stride = last_stride
        self.num_streams = num_streams
        copies = [
            resnet_stages(last_stride, zero_init_residual, depth)
            for _ in range(num_streams if share_from else 1)
        ]
        self.specific = nn.ModuleList(
            nn.ModuleDict({name: copy[name] for name in STAGES[:share_from]}) for copy in copies
        )
        self.shared = nn.ModuleDict({name: copies[0][name] for name in STAGES[share_from:]})

    def stage(self, name: str, stream: int) -> nn.Module:
        """The module that runs stage ``name`` for ``stream`` (the same object for every stream
        when the stage is shared)."""
        if name not in STAGES:
            raise VireidError(f"stage: expected one of {', '.join(STAGES)}, got {name!r}")
        if name in self.shared:
            return self.shared[name]
        return self.specific[stream][name]

    def is_shared(self, name: str) -> bool:
        return STAGES.index(name) >= self.share_from

    def forward(self, images: torch.Tensor, streams: torch.Tensor) -> torch.Tensor:
        if streams.shape != images.shape[:1]:
            raise VireidError(
                f"streams: expected shape ({images.shape[0]},), got {tuple(streams.shape)}"
            )
        x = self._specific(images, streams) if self.share_from else images
        for stage in self.shared.values():
            x = stage(x)
        return x

    def _specific(self, images: torch.Tensor, streams: torch.Tensor) -> torch.Tensor:
        rows, outs = [], []
        for s, stages in enumerate(self.specific):
            idx = (streams == s).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            y = images.index_select(0, idx)
            for stage in stages.values():
                y = stage(y)
            rows.append(idx)
            outs.append(y)
        if sum(r.numel() for r in rows) != images.shape[0]:
            raise VireidError(f"streams: expected stream indices in 0..{self.num_streams - 1}")
        if len(outs) == 1:
            return outs[0]  # one stream: rows are already in input order
        order = torch.cat(rows)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        return torch.cat(outs).index_select(0, inverse)
