from __future__ import annotations

import pytest
import torch

from reference.data.modality import Modality, check_modality_tags
from reference.errors import VireidError


def test_values_and_names():
    assert [int(m) for m in Modality] == [0, 1, 2, 3]
    assert [m.short for m in Modality] == ["V", "I", "DV", "DI"]
    assert [m.base for m in Modality] == [Modality.VISIBLE, Modality.INFRARED] * 2
    assert [m.is_derived for m in Modality] == [False, False, True, True]


def test_check_accepts_valid_tags(device):
    check_modality_tags(torch.tensor([0, 1, 2, 3], device=device), 4)
    check_modality_tags(torch.zeros(0, dtype=torch.int64, device=device), 0)


@pytest.mark.parametrize(
    ("tags", "n", "message"),
    [
        (torch.tensor([0.0, 1.0]), 2, "modality: expected an integer tensor, got dtype"),
        (torch.tensor([0, 1]), 3, "modality: expected shape (3,), got (2,)"),
        (torch.tensor([0, 5, -1]), 3, "modality: unknown modality tag(s) [-1, 5]"),
        ([0, 1], 2, "modality: expected a torch.Tensor of modality tags"),
    ],
)
def test_check_rejects_bad_tags(tags, n, message):
    with pytest.raises(VireidError) as info:
        check_modality_tags(tags, n)
    assert str(info.value).startswith(message)
