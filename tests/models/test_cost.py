"""Operation counts of a training step (spec/models/cost.md).

The oracle is the closed form of each layer's multiply-adds, written from the layer shapes:
a convolution does ``Cout Cin kh kw Ho Wo`` per image, a linear layer ``in out``; the backward
pass computes a weight gradient (the same count) and, when the layer's input needs one, an input
gradient (the same count again).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models import resnet50

from reference.errors import VireidError
from reference.models.backbone import out_channels
from reference.models.build import ModelConfig, build_model
from reference.models.cost import StepFlops, head_step_flops, step_flops
from tests.models.conftest import TORCHVISION_RESNETS


def test_conv_then_linear_matches_the_closed_form(device):
    batch, cin, cout, k, h, w, classes = 3, 4, 5, 3, 7, 6, 11
    model = nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(cout * h * w, classes),
    ).to(device)
    cost = step_flops(model, torch.randn(batch, cin, h, w, device=device))
    conv = 2 * batch * cout * cin * k * k * h * w
    linear = 2 * batch * cout * h * w * classes
    assert cost.forward == conv + linear
    # the images need no gradient: the first conv computes only its weight gradient
    assert cost.backward == conv + 2 * linear
    assert cost.total == cost.forward + cost.backward


def test_frozen_parameters_need_no_weight_gradient(device):
    model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 4)).to(device)
    model[1].weight.requires_grad_(False)
    model[1].bias.requires_grad_(False)
    cost = step_flops(model, torch.randn(5, 8, device=device))
    first, second = 2 * 5 * 8 * 6, 2 * 5 * 6 * 4
    assert cost == StepFlops(forward=first + second, backward=first + second)


def test_resnet50_matches_torchvision_documented_count(device):
    cost = step_flops(resnet50().to(device), torch.zeros(1, 3, 224, 224, device=device))
    assert round(cost.forward / 2e9, 3) == 4.089


@pytest.mark.parametrize("mode", ["eval", "mixed"])
def test_the_callers_model_is_left_as_it_was(device, mode):
    # depth 18: what is restored (modes, flags, buffers) does not depend on the depth
    model = build_model(ModelConfig(kind="baseline", num_classes=7, depth=18)).to(device).eval()
    if mode == "mixed":  # a frozen head in a training network: each module's own mode comes back
        model.train()
        model.head.eval()
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(2, 3, 64, 32, device=device)
    tags = torch.tensor([0, 1], device=device)
    step_flops(model, images, tags)
    head_step_flops(model, images, tags)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    if mode == "mixed":  # the counts do not depend on the mode the caller left the model in
        assert step_flops(model, images, tags) == step_flops(model.train(), images, tags)


def test_the_model_is_restored_after_a_failing_step(device):
    class Fails(nn.Module):
        def forward(self, x):
            raise RuntimeError("late failure")

    # the BatchNorm has moved its running statistics when the step fails after it
    model = nn.Sequential(nn.BatchNorm2d(3), Fails()).to(device).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="late failure"):
        step_flops(model, torch.randn(2, 3, 4, 4, device=device) + 5)
    assert not any(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize(("share_from", "depth"), [(0, 18), (2, 18), (5, 50)])
def test_streams_add_no_arithmetic(device, share_from, depth):
    """The baseline (global GeM, BN neck, bias-free classifier) does exactly the operations of
    torchvision's ResNet of its depth with last stride 1 and a C -> K classifier, for any split
    point (two split points at depth 18, the cheap one, and one at the methods' 50)."""
    images = torch.randn(4, 3, 64, 32, device=device)
    tags = torch.tensor([0, 1, 1, 0], device=device)
    config = ModelConfig(kind="baseline", num_classes=9, share_from=share_from, depth=depth)
    model = build_model(config)
    plain = TORCHVISION_RESNETS[depth](num_classes=9)
    block = plain.layer4[0]  # last stride 1: on conv2 of a bottleneck, conv1 of a basic block
    (block.conv2 if depth == 50 else block.conv1).stride = block.downsample[0].stride = (1, 1)
    assert step_flops(model.to(device), images, tags) == step_flops(plain.to(device), images)


def _head_oracle(config: ModelConfig, batch: int) -> int:
    """Forward operations of the heads of ``config`` for ``batch`` images (heads.md)."""
    c, d, k = out_channels(config.depth), config.reduction_dim, config.num_classes
    total = 0
    branches = [(1, config.reduce_global)] if config.global_branch else []
    branches += [(n, True) for n in (config.coarse_stripes, config.fine_stripes) if n]
    for stripes, reduced in branches:
        width = d if reduced else c
        total += stripes * batch * (2 * c * d * reduced + 2 * width * k)
    return total


@settings(max_examples=6, deadline=None)
@given(
    global_branch=st.booleans(),
    reduce_global=st.booleans(),
    coarse=st.sampled_from([0, 1, 2, 3]),
    fine=st.sampled_from([0, 2, 4, 6]),
    # from 2: torch runs a contraction of length 1 as an element-wise multiply, which the
    # counter does not count (spec, "What is counted"); test_length_one_contraction_counts_zero
    reduction_dim=st.integers(2, 64),
    num_classes=st.integers(1, 50),
    bn_neck=st.booleans(),
    depth=st.sampled_from([18, 50]),  # the heads' input: 512 or 2048 channels
)
def test_head_count_matches_the_closed_form(
    device, global_branch, reduce_global, coarse, fine, reduction_dim, num_classes, bn_neck, depth
):
    if not (global_branch or coarse or fine):
        global_branch = True
    config = ModelConfig(
        kind="method_a",
        num_classes=num_classes,
        global_branch=global_branch,
        reduce_global=reduce_global,
        coarse_stripes=coarse,
        fine_stripes=fine,
        reduction_dim=reduction_dim,
        bn_neck=bn_neck,
        embedding="all",
        depth=depth,
    )
    rows = math.lcm(coarse or 1, fine or 1)
    images = torch.randn(2, 3, 16 * rows, 32, device=device)
    model = build_model(config).to(device)
    forward = _head_oracle(config, 2)
    assert head_step_flops(model, images, torch.tensor([1, 0], device=device)) == StepFlops(
        forward=forward, backward=2 * forward
    )


def test_length_one_contraction_counts_zero(device):
    # reduction_dim = 1: the global branch's 1x1 reduction is counted, its classifier (one
    # weight per class) is not: the spec's stated exception to the closed form
    config = ModelConfig(
        kind="method_a", num_classes=3, coarse_stripes=0, fine_stripes=0, reduction_dim=1,
        bn_neck=False, embedding="all", depth=18,
    )  # fmt: skip
    model = build_model(config).to(device)
    images = torch.randn(2, 3, 16, 32, device=device)
    forward = head_step_flops(model, images, torch.tensor([1, 0], device=device)).forward
    classifier = 2 * 2 * 1 * 3  # batch x 2 x reduction_dim x classes
    assert forward == _head_oracle(config, 2) - classifier == 2 * 2 * 512 * 1


def test_bad_inputs_name_what_was_expected(device):
    with pytest.raises(VireidError, match=r"^images: expected a floating-point tensor$"):
        step_flops(nn.Linear(2, 2), torch.ones(1, 2, dtype=torch.int64))

    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(
        VireidError, match=r"^model output: expected a ModelOutput or a tensor, got tuple$"
    ):
        step_flops(Pair(), torch.ones(1, 2))
    with pytest.raises(
        VireidError,
        match=r"^model: expected a network with a backbone and a head \(build_model\)$",
    ):
        head_step_flops(resnet50(), torch.zeros(2, 3, 64, 32), torch.tensor([0, 1]))
    model = build_model(ModelConfig(kind="baseline", num_classes=3))
    with pytest.raises(VireidError, match=r"^modality: "):
        head_step_flops(model, torch.zeros(2, 3, 64, 32), torch.tensor([0, 7]))
