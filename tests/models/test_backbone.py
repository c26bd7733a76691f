"""The multi-stream ResNet: sharing per share_from, routing, last stride, depth, gradients."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.resnet import BasicBlock, Bottleneck

from reference.errors import VireidError
from reference.models.backbone import (
    STAGES,
    MultiStreamResNet,
    feature_map_rows,
    out_channels,
    resnet_stages,
)
from tests.models.conftest import TORCHVISION_RESNETS

# parameter counts of torchvision's ResNet-50 stages (fc excluded), from the model itself
STAGE_PARAMS = {n: sum(p.numel() for p in m.parameters()) for n, m in resnet_stages().items()}


def build(**kwargs) -> MultiStreamResNet:
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        return MultiStreamResNet(**kwargs)


def images(n: int, h: int = 32, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("k", range(6))
def test_shared_stages_are_the_same_objects_and_specific_ones_are_not(k):
    net = build(share_from=k)
    for index, name in enumerate(STAGES):
        a, b = net.stage(name, 0), net.stage(name, 1)
        assert net.is_shared(name) == (index >= k)
        pa, pb = list(a.parameters()), list(b.parameters())
        assert len(pa) == len(pb) > 0
        if index >= k:
            assert a is b
            assert all(x is y for x, y in zip(pa, pb, strict=True))
        else:
            assert a is not b
            assert not {id(x) for x in pa} & {id(y) for y in pb}
            # the buffers (BN running statistics) are separate too
            assert not {id(x) for x in a.buffers()} & {id(y) for y in b.buffers()}
    # no parameter is counted twice; specific stages are counted once per stream
    total = sum(p.numel() for p in net.parameters())
    specific = sum(STAGE_PARAMS[n] for n in STAGES[:k])
    assert total == sum(STAGE_PARAMS.values()) + specific


def test_stages_are_torchvision_modules_with_last_stride_one():
    stages = resnet_stages(last_stride=1)
    assert list(stages) == list(STAGES)
    assert all(isinstance(block, Bottleneck) for block in stages["layer4"])
    first = stages["layer4"][0]
    assert first.conv2.stride == (1, 1) and first.downsample[0].stride == (1, 1)
    assert resnet_stages(last_stride=2)["layer4"][0].conv2.stride == (2, 2)
    assert list(stages["stem"]._modules) == ["conv1", "bn1", "relu", "maxpool"]


@pytest.mark.parametrize(("depth", "channels"), [(18, 512), (34, 512)])
def test_basic_block_depths(depth, channels):
    stages = resnet_stages(last_stride=1, depth=depth)
    assert all(isinstance(block, BasicBlock) for block in stages["layer4"])
    first = stages["layer4"][0]
    # a basic block carries its stride on conv1
    assert first.conv1.stride == (1, 1) and first.downsample[0].stride == (1, 1)
    assert resnet_stages(last_stride=2, depth=depth)["layer4"][0].conv1.stride == (2, 2)
    assert out_channels(depth) == channels
    # the stages hold exactly torchvision's modules of that depth, fc excluded
    whole = TORCHVISION_RESNETS[depth](weights=None)
    assert sum(p.numel() for m in stages.values() for p in m.parameters()) == sum(
        p.numel() for n, p in whole.named_parameters() if not n.startswith("fc.")
    )


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_depths_draw_torchvisions_weights_and_zero_the_last_bn(depth):
    make = TORCHVISION_RESNETS[depth]
    net = build(share_from=0, depth=depth, zero_init_residual=True)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        reference = make(weights=None, zero_init_residual=True).state_dict()
    ours = {}
    for name in STAGES:
        for key, value in net.stage(name, 0).state_dict().items():
            ours[key if name == "stem" else f"{name}.{key}"] = value
    assert set(ours) == set(reference) - {"fc.weight", "fc.bias"}
    assert all(torch.equal(ours[k], reference[k]) for k in ours)
    last = "bn3" if depth == 50 else "bn2"
    assert all(not block.get_submodule(last).weight.any() for block in net.stage("layer3", 0))
    assert net.depth == depth and net.out_channels == (2048 if depth == 50 else 512)


def test_depth_18_routes_and_maps_like_depth_50():
    net = build(share_from=2, depth=18).eval()
    x = images(3, 64, 32)
    with torch.no_grad():
        mixed = net(x, torch.tensor([1, 0, 1]))
        alone = net(x[1:2], torch.tensor([0]))
    assert mixed.shape == (3, 512, feature_map_rows(64, 1), 2)
    assert torch.allclose(mixed[1:2], alone, rtol=1e-4, atol=1e-5 * float(alone.abs().max()))


@pytest.fixture(scope="module")
def net_k2():
    return build(share_from=2).eval()


@pytest.mark.parametrize(("h", "w"), [(32, 16), (64, 32), (48, 24), (40, 20)])
def test_output_shapes(device, net_k2, h, w):
    net = net_k2.to(device)
    with torch.no_grad():
        out = net(images(2, h, w).to(device), torch.tensor([0, 1], device=device))
    assert out.shape == (2, 2048, feature_map_rows(h, 1), feature_map_rows(w, 1))
    assert out.shape[2:] == (-(-h // 16), -(-w // 16))


def test_last_stride_two_halves_the_map(device):
    net = build(share_from=0, last_stride=2).eval().to(device)
    with torch.no_grad():
        out = net(images(1, 64, 32).to(device), torch.tensor([0], device=device))
    assert out.shape == (1, 2048, 2, 1) and feature_map_rows(64, 2) == 2


def test_feature_map_rows_of_the_published_input():
    assert (feature_map_rows(288, 1), feature_map_rows(144, 1)) == (18, 9)
    assert (feature_map_rows(288, 2), feature_map_rows(144, 2)) == (9, 5)


def test_rows_take_their_own_stream_and_come_back_in_input_order(device, net_k2):
    net = net_k2.to(device)
    x = images(5, seed=1).to(device)
    streams = torch.tensor([1, 0, 1, 1, 0], device=device)
    with torch.no_grad():
        got = net(x, streams)
        # reference: each row alone, through its stream's stages, then the shared stages
        for row in range(5):
            y = x[row : row + 1]
            for name in STAGES:
                y = net.stage(name, int(streams[row]))(y)
            torch.testing.assert_close(got[row : row + 1], y, rtol=1e-4, atol=1e-5)
        # a row's stream matters: the other stream gives another map
        other = net(x[:1], torch.tensor([0], device=device))
    assert not torch.allclose(other, got[:1], rtol=1e-3, atol=1e-4)


def test_gradients_reach_both_stems(device):
    net = build(share_from=2).train().to(device)
    x = images(4, seed=2).to(device)
    net(x, torch.tensor([0, 1, 0, 1], device=device)).square().mean().backward()
    for s in (0, 1):
        for stage in ("stem", "layer1"):
            grads = [p.grad for p in net.stage(stage, s).parameters()]
            assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
            assert any(bool(g.abs().sum() > 0) for g in grads)
    # a batch of one stream leaves the other stream untouched
    net.zero_grad(set_to_none=True)
    net(x[:2], torch.tensor([0, 0], device=device)).mean().backward()
    assert all(p.grad is None for p in net.stage("stem", 1).parameters())
    assert all(p.grad is not None for p in net.stage("stem", 0).parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"share_from": 6}, "share_from: expected an integer in 0..5, got 6"),
        ({"share_from": -1}, "share_from: expected an integer in 0..5, got -1"),
        ({"share_from": True}, "share_from: expected an integer in 0..5, got True"),
        ({"num_streams": 0}, "num_streams: expected an integer >= 1, got 0"),
        ({"last_stride": 3}, "last_stride: expected 1 or 2, got 3"),
        ({"depth": 101}, "depth: expected 18, 34 or 50, got 101"),
        ({"depth": True}, "depth: expected 18, 34 or 50, got True"),
        ({"depth": "50"}, "depth: expected 18, 34 or 50, got '50'"),
        ({"depth": 50.0}, "depth: expected 18, 34 or 50, got 50.0"),
    ],
)
def test_bad_construction(kwargs, message):
    with pytest.raises(VireidError) as info:
        MultiStreamResNet(**kwargs)
    assert str(info.value) == message


def test_bad_streams(device, net_k2):
    net = net_k2.to(device)
    x = images(2).to(device)
    with pytest.raises(VireidError) as info:
        net(x, torch.tensor([0, 1, 0], device=device))
    assert str(info.value) == "streams: expected shape (2,), got (3,)"
    with pytest.raises(VireidError) as info:
        net(x, torch.tensor([0, 2], device=device))
    assert str(info.value) == "streams: expected stream indices in 0..1"
    with pytest.raises(VireidError) as info:
        net.stage("layer5", 0)
    assert str(info.value).startswith("stage: expected one of stem, layer1")
