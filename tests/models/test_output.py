from __future__ import annotations

import pytest
import torch

from reference.errors import VireidError
from reference.models.output import ModelOutput


def _output(device, **overrides):
    n = 4
    values = dict(
        features={
            "global": torch.zeros(n, 8, device=device),
            "fine.10": torch.zeros(n, 2, device=device),
            "fine.2": torch.zeros(n, 2, device=device),
            "coarse.0": torch.zeros(n, 2, device=device),
        },
        logits={"global": torch.zeros(n, 5, device=device)},
        modality=torch.tensor([0, 1, 0, 1], device=device),
        embedding=torch.zeros(n, 16, device=device),
    )
    values.update(overrides)
    return ModelOutput(**values)


def test_branches_are_selected_by_name_in_stripe_order(device):
    out = _output(device)
    assert out.branches("global") == ["global"]
    assert out.branches("fine") == ["fine.2", "fine.10"]
    assert out.branches("coarse") == ["coarse.0"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"features": {"part0": torch.zeros(4, 2)}}, "features['part0']: branch names are"),
        ({"logits": {"global": torch.zeros(3, 5)}}, "logits['global']: expected shape (4, d)"),
        ({"embedding": torch.zeros(4)}, "embedding: expected a (B, D) tensor"),
        ({"modality": torch.tensor([0, 1, 0])}, "modality: expected shape (4,)"),
    ],
)
def test_bad_outputs_name_the_field(override, message):
    with pytest.raises(VireidError) as info:
        _output("cpu", **override)
    assert str(info.value).startswith(message)


def test_unknown_granularity():
    with pytest.raises(VireidError, match="granularity: expected 'global', 'coarse' or 'fine'"):
        _output("cpu").branches("medium")
