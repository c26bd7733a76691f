"""Fixtures of the loss tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def float64_vi_batch(device):
    """Ten float64 rows requiring grad, three identities each with V (tag 0) and I (tag 1) rows
    in uneven numbers: a small batch for gradient checks. Returns (features, labels, modality)."""
    gen = torch.Generator().manual_seed(8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 2], device=device)
    modality = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1], device=device)
    x = torch.randn(10, 4, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    return x, labels, modality
