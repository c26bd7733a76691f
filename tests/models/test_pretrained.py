"""The local weight loader: every torchvision key mapped into every stream; bad files rejected."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18, resnet50

from reference.errors import VireidError
from reference.models.backbone import STAGES, MultiStreamResNet
from reference.models.pretrained import (
    load_pretrained,
    read_state_dict,
    stage_of,
    torchvision_key,
)


def seeded(fn, seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return fn()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A torchvision ResNet-50 state dict with random (not default) values, saved to a file."""
    state = seeded(lambda: resnet50(weights=None), 7).state_dict()
    gen = torch.Generator().manual_seed(8)
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var", "bn1.bias", "bn2.bias", "bn3.bias")):
            # non-default BN values, so a buffer that is not copied is noticed
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("k", [0, 2, 5])
def test_every_key_is_copied_into_every_stream(device, weights, k):
    path, state = weights
    net = seeded(lambda: MultiStreamResNet(share_from=k), 0).to(device)
    written = load_pretrained(net, path)
    assert sorted(written) == sorted(net.state_dict())  # every model entry written once
    used = set()
    for stream in range(net.num_streams):
        for name in STAGES:
            for key, value in net.stage(name, stream).state_dict().items():
                tv = torchvision_key(name, key)
                used.add(tv)
                assert value.device.type == device.type
                assert torch.equal(value.cpu(), state[tv]), (stream, tv)
    assert used == {key for key in state if not key.startswith("fc.")}  # every key mapped
    if k > 0:
        # streams hold copies, not aliases of one tensor
        a = net.stage("stem", 0).conv1.weight
        b = net.stage("stem", 1).conv1.weight
        assert a is not b and a.data_ptr() != b.data_ptr()
        with torch.no_grad():
            a.add_(1.0)
        assert torch.equal(b.cpu(), state["conv1.weight"])


def test_key_mapping():
    assert torchvision_key("stem", "bn1.running_var") == "bn1.running_var"
    assert torchvision_key("layer3", "0.downsample.1.weight") == "layer3.0.downsample.1.weight"
    assert stage_of("conv1.weight") == "stem" and stage_of("layer4.2.conv3.weight") == "layer4"
    assert stage_of("fc.weight") is None


def test_fc_is_optional_and_ignored(weights, tmp_path):
    state = weights[1]
    no_fc = {k: v for k, v in state.items() if not k.startswith("fc.")}
    torch.save(no_fc, tmp_path / "nofc.pth")
    net = seeded(lambda: MultiStreamResNet(share_from=4), 0)
    load_pretrained(net, tmp_path / "nofc.pth")
    assert torch.equal(net.stage("layer4", 0)[2].conv3.weight, state["layer4.2.conv3.weight"])


@pytest.fixture(scope="module")
def target():
    return seeded(lambda: MultiStreamResNet(share_from=2), 0)


def expect_error(net, path, message: str, *, exact: bool = False) -> None:
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(VireidError) as info:
        load_pretrained(net, path)
    text = str(info.value)
    assert text == message if exact else text.startswith(message), text
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # model unchanged


def test_missing_file(target, tmp_path):
    path = tmp_path / "absent.pth"
    expect_error(target, path, f"{path}: pretrained weights file not found", exact=True)
    expect_error(
        target, tmp_path, f"{tmp_path}: is a folder; expected a weights file (a torch state dict)",
        exact=True,
    )  # fmt: skip


def test_truncated_file(target, weights, tmp_path):
    data = weights[0].read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    expect_error(target, path, f"{path}: cannot read a torch state dict (")


def test_not_a_torch_file(target, tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not weights")
    expect_error(target, path, f"{path}: cannot read a torch state dict (")


def test_not_a_state_dict(target, tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    expect_error(
        target,
        path,
        f"{path}: expected a state dict (a mapping of parameter names to tensors), got list",
        exact=True,
    )
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, path)
    expect_error(target, path, f"{path}: expected a state dict", exact=False)


def test_resnet18_dict_is_rejected_with_its_first_keys(target, tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(seeded(lambda: resnet18(weights=None), 0).state_dict(), path)
    expect_error(
        target,
        path,
        f"{path}: not a torchvision ResNet-50 state dict: missing key(s) "
        "layer1.0.bn3.bias, layer1.0.bn3.num_batches_tracked, layer1.0.bn3.running_mean, "
        "layer1.0.bn3.running_var, layer1.0.bn3.weight (and ",
    )


def test_depth_18_backbone_takes_a_resnet18_dict_and_names_its_depth(tmp_path):
    state = seeded(lambda: resnet18(weights=None), 3).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    net = seeded(lambda: MultiStreamResNet(share_from=2, depth=18), 0)
    load_pretrained(net, path)
    assert torch.equal(net.stage("stem", 1).conv1.weight, state["conv1.weight"])
    assert torch.equal(net.stage("layer4", 0)[1].conv2.weight, state["layer4.1.conv2.weight"])
    wrong = tmp_path / "resnet50.pth"
    torch.save(seeded(lambda: resnet50(weights=None), 0).state_dict(), wrong)
    with pytest.raises(VireidError) as info:
        load_pretrained(seeded(lambda: MultiStreamResNet(depth=18), 0), wrong)
    assert str(info.value).startswith(
        f"{wrong}: not a torchvision ResNet-18 state dict: unexpected key(s) layer1.0.bn3."
    )


def test_prefixed_keys_are_rejected(target, weights, tmp_path):
    path = tmp_path / "module.pth"
    torch.save({f"module.{k}": v for k, v in weights[1].items()}, path)
    with pytest.raises(VireidError) as info:
        load_pretrained(target, path)
    assert "unexpected key(s) module.bn1.bias, module.bn1.num_batches_tracked" in str(info.value)


def test_wrong_shape_is_rejected(target, weights, tmp_path):
    state = dict(weights[1])
    state["layer2.0.conv1.weight"] = torch.zeros(3, 3)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    expect_error(
        target,
        path,
        f"{path}: not a torchvision ResNet-50 state dict: wrong shape(s) "
        "layer2.0.conv1.weight (3, 3) (expected (128, 256, 1, 1))",
        exact=True,
    )


def test_non_finite_values_are_rejected(target, weights, tmp_path):
    state = dict(weights[1])
    state["layer3.1.bn2.weight"] = state["layer3.1.bn2.weight"].clone()
    state["layer3.1.bn2.weight"][0] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    expect_error(target, path, f"{path}: non-finite values in layer3.1.bn2.weight", exact=True)


def test_not_a_backbone(tmp_path):
    with pytest.raises(VireidError) as info:
        load_pretrained(torch.nn.Linear(2, 2), tmp_path / "x.pth")
    assert str(info.value) == (
        "model: expected a MultiStreamResNet or a model with one as .backbone, got Linear"
    )


def test_a_path_that_is_not_one_is_named():
    with pytest.raises(VireidError) as info:
        read_state_dict(None)
    assert str(info.value) == "path: expected a non-empty path (str or os.PathLike), got None"
