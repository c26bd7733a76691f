"""Fixtures of the models tests.

On a GPU, cuDNN may run float32 convolutions in TF32 (10-bit mantissa) and pick different
algorithms for different batch sizes, which would blur the comparisons of these tests (a row
alone against the same row in a batch, float32 against the float64 oracle). Every models test
runs with TF32 off and deterministic cuDNN algorithms; on a CPU this changes nothing.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def exact_fp32_convolutions():
    with torch.backends.cudnn.flags(enabled=True, deterministic=True, allow_tf32=False):
        yield
