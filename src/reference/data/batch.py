"""The ``Batch``: what the data side hands to a model.

Spec: ``spec/data/batch.md``. Images ``(B, 3, H, W)``; ``labels`` 0..C-1, the same identity label
in every modality; ``modality`` tags (:class:`~reference.data.modality.Modality`); ``camids`` the
dataset camera of each row (derived rows keep the camera of the image they come from).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reference.data.modality import check_modality_tags
from reference.errors import VireidError


def _check_index_tensor(value: object, n: int, field: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise VireidError(f"{field}: expected a torch.Tensor, got {type(value)!r}")
    if value.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise VireidError(f"{field}: expected an integer tensor, got dtype {value.dtype}")
    if value.shape != (n,):
        raise VireidError(f"{field}: expected shape ({n},), got {tuple(value.shape)}")


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    modality: torch.Tensor
    camids: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dim() != 4:
            shape = tuple(self.images.shape) if isinstance(self.images, torch.Tensor) else None
            raise VireidError(f"images: expected a (B, 3, H, W) tensor, got shape {shape}")
        if self.images.shape[1] != 3:
            raise VireidError(
                f"images: expected 3 channels in dimension 1, got shape {tuple(self.images.shape)}"
            )
        n = self.images.shape[0]
        _check_index_tensor(self.labels, n, "labels")
        _check_index_tensor(self.camids, n, "camids")
        check_modality_tags(self.modality, n)
        if n and int(self.labels.min()) < 0:
            raise VireidError("labels: expected identity labels >= 0, got a negative label")

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> Batch:
        return Batch(
            images=self.images.to(device, non_blocking=non_blocking),
            labels=self.labels.to(device, non_blocking=non_blocking),
            modality=self.modality.to(device, non_blocking=non_blocking),
            camids=self.camids.to(device, non_blocking=non_blocking),
        )
