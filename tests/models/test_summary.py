"""The model summary (spec/models/summary.md): shapes, counts, config precedence, errors."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models import resnet50

from reference.errors import VireidError
from reference.models.build import ModelConfig, build_model
from reference.models.summary import parse_size, summarize
from tests.models.conftest import TORCHVISION_RESNETS


def _conv(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _oracle_shapes(h: int, w: int, last_stride: int, depth: int = 50) -> list[tuple[int, int, int]]:
    """The ResNet's stage outputs from its layer geometry: conv1 7x7/2 pad 3, max-pool 3x3/2
    pad 1, a 3x3 pad 1 conv of stride 2 opening layer2 and layer3 and of ``last_stride``
    opening layer4; a bottleneck (depth 50) widens its stage's channels 4 times."""
    widen = 4 if depth == 50 else 1
    shapes = []
    h, w = _conv(h, 7, 2, 3), _conv(w, 7, 2, 3)
    h, w = _conv(h, 3, 2, 1), _conv(w, 3, 2, 1)
    shapes += [(64, h, w), (64 * widen, h, w)]
    for channels, stride in ((128 * widen, 2), (256 * widen, 2), (512 * widen, last_stride)):
        h, w = _conv(h, 3, stride, 1), _conv(w, 3, stride, 1)
        shapes.append((channels, h, w))
    return shapes


@pytest.mark.slow  # five networks built and run at up to 160 x 96: ~12 s
@settings(max_examples=5, deadline=None)
@given(
    height=st.integers(33, 160),
    width=st.integers(33, 96),
    last_stride=st.sampled_from([1, 2]),
    share_from=st.integers(0, 5),
    depth=st.sampled_from([18, 50]),
)
def test_stage_rows_match_resnet_geometry_and_torchvision_counts(
    device, height, width, last_stride, share_from, depth
):
    config = ModelConfig(
        kind="baseline", num_classes=11, last_stride=last_stride, share_from=share_from,
        depth=depth,
    )  # fmt: skip
    model = build_model(config).to(device)
    summary = summarize(model, height, width)
    assert [r.name for r in summary.stages] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert [r.output for r in summary.stages] == _oracle_shapes(height, width, last_stride, depth)
    assert [r.parameters for r in summary.stages] == torchvision_counts(depth)
    assert [r.copies for r in summary.stages] == [2 if i < share_from else 1 for i in range(5)]
    assert summary.parameters == sum(p.numel() for p in model.parameters())
    channels = 2048 if depth == 50 else 512
    assert summary.branches == {"global": channels} and summary.embedding_dim == channels


@cache
def torchvision_counts(depth: int) -> list[int]:
    """Parameters of torchvision's stem (conv1, bn1) and layer1..layer4 at ``depth``."""
    tv = TORCHVISION_RESNETS[depth]()
    stems = sum(p.numel() for m in (tv.conv1, tv.bn1) for p in m.parameters())
    return [stems] + [
        sum(p.numel() for p in getattr(tv, f"layer{i}").parameters()) for i in range(1, 5)
    ]


def test_summary_leaves_the_model_as_it_was(device):
    model = build_model(ModelConfig(kind="method_a", num_classes=5)).to(device).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model, 96, 48)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("text", ["288", "0x144", "288x0", "288X144", "x144", "-288x144", " 1x1"])
def test_bad_sizes_are_named(text):
    with pytest.raises(VireidError) as info:
        parse_size(text)
    assert str(info.value) == (f"size: expected HEIGHTxWIDTH in pixels, e.g. 288x144, got {text!r}")


def test_summarize_needs_a_built_network():
    with pytest.raises(VireidError, match=r"^model: expected a ReidNetwork \(build_model\), got "):
        summarize(resnet50(), 96, 48)
