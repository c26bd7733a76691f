from __future__ import annotations

import pytest
import torch

from reference.data.batch import Batch
from reference.errors import VireidError


def _batch(device, n=4, **overrides):
    values = dict(
        images=torch.zeros(n, 3, 8, 4, device=device),
        labels=torch.arange(n, device=device),
        modality=torch.tensor([0, 1] * (n // 2), device=device),
        camids=torch.ones(n, dtype=torch.int64, device=device),
    )
    values.update(overrides)
    return Batch(**values)


def test_valid_batch_and_move(device):
    batch = _batch(device)
    assert len(batch) == 4
    moved = batch.to("cpu")
    assert moved.images.device.type == "cpu" and torch.equal(moved.labels.cpu(), batch.labels.cpu())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"images": torch.zeros(4, 1, 8, 4)}, "images: expected 3 channels in dimension 1"),
        ({"images": torch.zeros(3, 8, 4)}, "images: expected a (B, 3, H, W) tensor"),
        ({"labels": torch.arange(3)}, "labels: expected shape (4,), got (3,)"),
        ({"labels": torch.zeros(4)}, "labels: expected an integer tensor"),
        ({"labels": torch.tensor([0, -1, 2, 3])}, "labels: expected identity labels >= 0"),
        ({"camids": torch.ones(5, dtype=torch.int64)}, "camids: expected shape (4,), got (5,)"),
        ({"modality": torch.tensor([0, 1, 9, 1])}, "modality: unknown modality tag(s) [9]"),
    ],
)
def test_bad_batches_name_the_field(override, message):
    with pytest.raises(VireidError) as info:
        _batch("cpu", **override)
    assert str(info.value).startswith(message)
