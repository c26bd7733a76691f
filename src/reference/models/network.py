"""A re-identification network: modality routing, multi-stream backbone, branch heads.

Spec: ``spec/models/network.md``. ``forward(images (B, 3, H, W), modality (B,))``: each row's
modality tag picks the backbone stream whose specific stages it goes through (the *routing*
table), the shared stages and the heads then run on the whole batch, and the result is a
:class:`~reference.models.output.ModelOutput` whose rows are in input order and carry the input
modality tags.
"""

from __future__ import annotations

import torch
from torch import nn

from reference.data.modality import Modality, check_modality_tags
from reference.errors import VireidError
from reference.models.backbone import MultiStreamResNet, feature_map_rows
from reference.models.heads import MultiGranularityHead
from reference.models.output import ModelOutput

# routing tables: stream index per modality value (V, I, DV, DI); None = not accepted
TWO_MODALITIES: tuple[int | None, ...] = (0, 1, None, None)
DERIVED_ROUTINGS: dict[str, tuple[int | None, ...]] = {
    "base": (0, 1, 0, 1),  # a derivative goes through its base modality's stream
    "cross": (0, 1, 1, 0),  # a derivative goes through the other base modality's stream
    "own": (0, 1, 2, 3),  # four streams, one per modality
}


class ReidNetwork(nn.Module):
    def __init__(
        self,
        backbone: MultiStreamResNet,
        head: MultiGranularityHead,
        routing: tuple[int | None, ...] = TWO_MODALITIES,
    ) -> None:
        super().__init__()
        if len(routing) != len(Modality):
            raise VireidError(
                f"routing: expected one entry per modality ({len(Modality)}), got {len(routing)}"
            )
        used = {s for s in routing if s is not None}
        if not used or max(used) >= backbone.num_streams or min(used) < 0:
            raise VireidError(
                f"routing: stream indices must be in 0..{backbone.num_streams - 1}, got {routing}"
            )
        self.backbone = backbone
        self.head = head
        self.routing = tuple(routing)
        table = torch.tensor([-1 if s is None else s for s in routing], dtype=torch.int64)
        self.register_buffer("_route", table, persistent=False)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split into ``backbone`` (ImageNet-initialised, each shared
        parameter once) and ``head`` (new layers): the predecessor trains them with learning
        rates 0.01 and 0.1."""
        return {
            "backbone": [p for p in self.backbone.parameters() if p.requires_grad],
            "head": [p for p in self.head.parameters() if p.requires_grad],
        }

    def accepted(self) -> list[Modality]:
        return [m for m in Modality if self.routing[m] is not None]

    def check_inputs(self, images: torch.Tensor, modality: torch.Tensor) -> None:
        """Raise :class:`VireidError` unless the batch can go through this network."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise VireidError(f"images: expected a (B, 3, H, W) tensor, got {shape}")
        if not images.is_floating_point():
            raise VireidError(f"images: expected a floating-point tensor, got {images.dtype}")
        if images.shape[0] == 0:
            raise VireidError("images: expected at least one row, got an empty batch")
        # a compiled network (run.compile) reads no values: the engine made the batch, and
        # reading them would break torch.compile's graph
        values = not torch.compiler.is_compiling()
        if values and not bool(torch.isfinite(images).all()):
            raise VireidError("images: contains NaN or infinite values")
        check_modality_tags(modality, images.shape[0])
        tags = {int(t) for t in modality.unique().tolist()} if values else set()
        refused = sorted(tags - set(self.accepted()))
        if refused:
            names = ", ".join(f"{t} ({Modality(t).short})" for t in refused)
            ok = ", ".join(m.short for m in self.accepted())
            raise VireidError(
                f"modality: tag(s) {names} not accepted by this model, which routes {ok}"
            )
        rows = feature_map_rows(images.shape[2], self.backbone.last_stride)
        multiple = self.head.row_multiple
        if rows % multiple:
            step = multiple * (16 if self.backbone.last_stride == 1 else 32)
            raise VireidError(
                f"images: height {images.shape[2]} gives a feature map of {rows} rows, not "
                f"divisible by the stripe count(s) (lcm {multiple}); use a height that is a "
                f"multiple of {step}"
            )

    def feature_map(self, images: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        """The backbone's map ``(B, C, h, w)`` (C = 2048 at depth 50) of a checked batch, each
        row routed through its modality's stream: the head's input."""
        self.check_inputs(images, modality)
        streams = self._route[modality.to(device=self._route.device, dtype=torch.int64)]
        return self.backbone(images, streams.to(images.device))

    def forward(self, images: torch.Tensor, modality: torch.Tensor) -> ModelOutput:
        return self.head(self.feature_map(images, modality), modality)
