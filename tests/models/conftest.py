"""Fixtures of the models tests.

On a GPU, cuDNN may run float32 convolutions in TF32 (10-bit mantissa) and pick different
algorithms for different batch sizes, which would blur the comparisons of these tests (a row
alone against the same row in a batch, float32 against the float64 oracle). Every models test
runs with TF32 off and deterministic cuDNN algorithms; on a CPU this changes nothing.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18, resnet34, resnet50

#: torchvision's constructor of each depth: the models tests' independent reference (the code
#: under test keeps its own table, ``reference.models.backbone.DEPTHS``)
TORCHVISION_RESNETS = {18: resnet18, 34: resnet34, 50: resnet50}


@pytest.fixture(autouse=True)
def exact_fp32_convolutions():
    with torch.backends.cudnn.flags(enabled=True, deterministic=True, allow_tf32=False):
        yield
