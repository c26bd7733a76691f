"""ModelConfig validation and defaults; build_model for every kind."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.resnet import Bottleneck

from reference.errors import VireidError
from reference.models.build import KIND_DEFAULTS, ModelConfig, build_model, predecessor_config
from reference.models.network import ReidNetwork
from reference.models.output import ModelOutput


def test_kind_defaults_fill_the_unset_fields():
    a = ModelConfig(kind="method_a", num_classes=395)
    assert (a.coarse_stripes, a.fine_stripes, a.reduce_global, a.embedding) == (3, 6, True, "all")
    assert (a.share_from, a.last_stride, a.gem_p, a.reduction_dim) == (2, 1, 3.0, 256)
    assert a.derived_routing is None and a.routing == (0, 1, None, None) and a.num_streams == 2
    base = ModelConfig(kind="baseline", num_classes=395)
    assert (base.coarse_stripes, base.fine_stripes, base.reduce_global) == (0, 0, False)
    assert base.embedding == "global" and base.bn_neck
    b = ModelConfig(kind="method_b", num_classes=395)
    assert b.derived_routing == "base" and b.routing == (0, 1, 0, 1) and b.num_streams == 2
    assert ModelConfig(kind="method_b", num_classes=2, derived_routing="own").num_streams == 4
    # explicit values win over the kind's defaults
    assert ModelConfig(kind="method_a", num_classes=2, coarse_stripes=2).coarse_stripes == 2
    assert set(KIND_DEFAULTS) == {"method_a", "method_b", "baseline"}


def test_configs_are_frozen_values():
    config = ModelConfig(kind="baseline", num_classes=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_classes = 4
    assert config == ModelConfig(kind="baseline", num_classes=3)
    assert ModelConfig(kind="baseline", num_classes=3, pretrained="w.pth").pretrained == Path(
        "w.pth"
    )


def test_predecessor_preset():
    p = predecessor_config(206, gem_p=10.0)
    assert (p.global_branch, p.coarse_stripes, p.fine_stripes, p.bn_neck) == (False, 0, 6, False)
    assert (p.embedding, p.embedding_norm, p.gem_p, p.share_from) == ("fine", "concat", 10.0, 2)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"kind": "method_c"},
            "model.kind: expected one of ('method_a', 'method_b', 'baseline'), got 'method_c'",
        ),
        ({"num_classes": 0}, "model.num_classes: expected an integer >= 1, got 0"),
        ({"num_classes": 2.0}, "model.num_classes: expected an integer >= 1, got 2.0"),
        ({"share_from": 6}, "model.share_from: expected an integer in 0..5, got 6"),
        ({"share_from": -1}, "model.share_from: expected an integer in 0..5, got -1"),
        ({"last_stride": 3}, "model.last_stride: expected 1 or 2, got 3"),
        ({"gem_p": 0.5}, "model.gem_p: expected a finite number >= 1, got 0.5"),
        ({"gem_p": float("inf")}, "model.gem_p: expected a finite number >= 1, got inf"),
        ({"bn_neck": 1}, "model.bn_neck: expected true or false, got 1"),
        (
            {"zero_init_residual": "yes"},
            "model.zero_init_residual: expected true or false, got 'yes'",
        ),
        ({"fine_stripes": -1}, "model.fine_stripes: expected an integer >= 0, got -1"),
        ({"coarse_stripes": True}, "model.coarse_stripes: expected an integer >= 0, got True"),
        ({"reduction_dim": 0}, "model.reduction_dim: expected an integer >= 1, got 0"),
        ({"init_seed": -1}, "model.init_seed: expected an integer >= 0, got -1"),
        (
            {"embedding": "parts"},
            "model.embedding: expected one of ('all', 'global', 'fine', 'coarse'), got 'parts'",
        ),
        (
            {"embedding_norm": "l1"},
            "model.embedding_norm: expected one of ('concat', 'branch'), got 'l1'",
        ),
        ({"pretrained": 3}, "model.pretrained: expected a path or None, got int"),
        ({"depth": 101}, "model.depth: expected 18, 34 or 50, got 101"),
        ({"depth": "18"}, "model.depth: expected 18, 34 or 50, got '18'"),
        (
            {"global_branch": False, "coarse_stripes": 0, "fine_stripes": 0},
            "model: at least one branch is needed (global_branch, coarse_stripes or fine_stripes)",
        ),
        ({"fine_stripes": 0, "embedding": "fine"}, "model.embedding: 'fine' needs the fine branch"),
        ({"bn_neck": False, "embedding_neck": True}, "model.embedding_neck: needs bn_neck=true"),
        (
            {"derived_routing": "base"},
            "model.derived_routing: only method_b takes derived modalities; got 'base' for kind "
            "'method_a'",
        ),
    ],
)
def test_bad_values_name_the_field(changes, message):
    values = {"kind": "method_a", "num_classes": 3, **changes}
    with pytest.raises(VireidError) as info:
        ModelConfig(**values)
    assert str(info.value) == message


def test_kind_specific_rules():
    with pytest.raises(VireidError) as info:
        ModelConfig(kind="baseline", num_classes=3, fine_stripes=6)
    assert str(info.value) == (
        "model: the baseline has the global branch only; got global_branch=True, "
        "coarse_stripes=0, fine_stripes=6"
    )
    with pytest.raises(VireidError) as info:
        ModelConfig(kind="method_b", num_classes=3, derived_routing="sideways")
    assert str(info.value) == (
        "model.derived_routing: expected one of ('base', 'cross', 'own'), got 'sideways'"
    )
    with pytest.raises(VireidError) as info:  # not a dictionary key: not a TypeError either
        ModelConfig(kind="method_b", num_classes=3, derived_routing=["own"])
    assert str(info.value) == (
        "model.derived_routing: expected one of ('base', 'cross', 'own'), got ['own']"
    )


def test_from_dict():
    config = ModelConfig.from_dict({"kind": "method_b", "num_classes": 5, "gem_p": 10.0})
    assert config == ModelConfig(kind="method_b", num_classes=5, gem_p=10.0)
    with pytest.raises(VireidError) as info:
        ModelConfig.from_dict({"kind": "method_a", "num_classes": 5, "stripes": 6})
    assert str(info.value).startswith("model: unknown field(s) ['stripes']; expected some of [")
    with pytest.raises(VireidError) as info:
        ModelConfig.from_dict({"kind": "method_a"})
    assert str(info.value) == "model: missing field(s) ['num_classes']"


def test_build_model_refuses_other_values():
    with pytest.raises(VireidError) as info:
        build_model({"kind": "method_a", "num_classes": 3})
    assert str(info.value) == "config: expected a ModelConfig, got dict"


def test_initialisation_comes_from_init_seed_only():
    config = ModelConfig(kind="baseline", num_classes=3, share_from=0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_model(config).state_dict()
    assert torch.equal(torch.get_rng_state(), before)  # the caller's global state is untouched
    b = build_model(config).state_dict()
    c = build_model(dataclasses.replace(config, init_seed=1)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(
        a["backbone.shared.stem.conv1.weight"], c["backbone.shared.stem.conv1.weight"]
    )


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(kind="method_b", num_classes=3, share_from=1, depth=18),
        ModelConfig(kind="method_a", num_classes=3, share_from=0, depth=18, last_stride=2),
        ModelConfig(kind="baseline", num_classes=3, share_from=5, depth=34),
        predecessor_config(3, depth=18),
    ],
    ids=["method_b", "method_a", "baseline", "predecessor"],
)
def test_uninitialised_build_takes_a_state_dict_to_the_same_network(config, device):
    built = build_model(config)
    with torch.no_grad():  # weights no initialisation gives, so that nothing matches by chance
        for tensor in built.state_dict().values():
            tensor.mul_(0.5).add_(0.01) if tensor.is_floating_point() else tensor.fill_(7)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    empty = build_model(config, initialise=False)
    assert torch.equal(torch.get_rng_state(), before)
    assert [(k, v.shape, v.dtype) for k, v in empty.state_dict().items()] == [
        (k, v.shape, v.dtype) for k, v in built.state_dict().items()
    ]
    assert all(t.device.type == "cpu" for t in [*empty.parameters(), *empty.buffers()])
    empty.load_state_dict(built.state_dict(), strict=True)
    a, b = built.state_dict(), empty.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(p.is_contiguous() for p in empty.parameters())
    assert torch.equal(empty._route, built._route)  # the routing table is in no state dict
    built, empty = built.to(device).eval(), empty.to(device).eval()
    images = torch.randn(4, 3, 192, 32, device=device)  # a map of 6 or 12 rows: any stripes
    tags = [0, 1, 2, 3] if config.kind == "method_b" else [0, 1, 0, 1]
    modality = torch.tensor(tags, device=device)
    with torch.no_grad():
        got, expected = empty(images, modality), built(images, modality)
    assert all(bool(torch.isfinite(v).all()) for v in expected.features.values())
    assert all(torch.equal(got.features[k], expected.features[k]) for k in expected.features)


def test_uninitialised_build_reads_no_pretrained_file(tmp_path):
    config = ModelConfig(kind="baseline", num_classes=3, depth=18, pretrained=tmp_path / "no.pt")
    with pytest.raises(VireidError, match=r"no\.pt"):
        build_model(config)
    build_model(config, initialise=False)  # the caller loads every weight itself
    with pytest.raises(VireidError) as info:
        build_model(config, initialise=1)
    assert str(info.value) == "initialise: expected True or False, got 1"


@pytest.mark.parametrize(
    ("config", "h", "tags", "branches", "dim"),
    [
        (ModelConfig(kind="method_a", num_classes=3), 96, (0, 1), 10, 2560),
        (ModelConfig(kind="method_b", num_classes=3), 32, (0, 1, 2, 3), 1, 2048),
        (ModelConfig(kind="baseline", num_classes=3, share_from=0), 32, (1, 0), 1, 2048),
    ],
    ids=["method_a", "method_b", "baseline"],
)
def test_every_kind_returns_a_model_output(device, config, h, tags, branches, dim):
    model = build_model(config).to(device).eval()
    assert isinstance(model, ReidNetwork)
    x = torch.randn(len(tags), 3, h, h // 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x.to(device), torch.tensor(tags, device=device))
    assert isinstance(out, ModelOutput)
    assert len(out.features) == branches and out.embedding.shape == (len(tags), dim)
    assert out.logits == {}


@pytest.mark.parametrize("kind", ["method_a", "method_b", "baseline"])
def test_depth_18_feeds_its_512_channels_to_the_heads(kind):
    config = ModelConfig(kind=kind, num_classes=5, depth=18, coarse_stripes=None)
    model = build_model(config).train()
    assert model.backbone.depth == 18 and model.backbone.out_channels == 512
    tags = (0, 1, 2, 3) if kind == "method_b" else (0, 1)
    x = torch.randn(2 * len(tags), 3, 96, 48, generator=torch.Generator().manual_seed(0))
    out = model(x, torch.tensor(tags * 2))
    dims = {name: f.shape[1] for name, f in out.features.items()}
    # reduced branches keep reduction_dim; an unreduced global branch is the map's 512 channels
    assert dims["global"] == (256 if kind == "method_a" else 512)
    assert all(d == 256 for name, d in dims.items() if name != "global")
    assert all(logits.shape == (2 * len(tags), 5) for logits in out.logits.values())


def test_pretrained_path_is_loaded(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(5)
        state = resnet50(weights=None).state_dict()
    torch.save(state, tmp_path / "r50.pth")
    config = ModelConfig(kind="method_b", num_classes=3, derived_routing="own", share_from=1)
    model = build_model(dataclasses.replace(config, pretrained=tmp_path / "r50.pth"))
    assert model.backbone.num_streams == 4
    for stream in range(4):
        assert torch.equal(model.backbone.stage("stem", stream).conv1.weight, state["conv1.weight"])
    assert torch.equal(
        model.backbone.shared["layer4"][0].conv2.weight, state["layer4.0.conv2.weight"]
    )
    with pytest.raises(VireidError) as info:
        build_model(dataclasses.replace(config, pretrained=tmp_path / "none.pth"))
    assert str(info.value) == f"{tmp_path / 'none.pth'}: pretrained weights file not found"


def test_loads_and_dumps_through_the_generic_config_loader():
    from reference.config import from_mapping, to_dict

    for kind in KIND_DEFAULTS:
        config = ModelConfig(kind=kind, num_classes=7, pretrained="w.pth")
        data = to_dict(config)
        assert data["pretrained"] == "w.pth" and data["kind"] == kind
        assert from_mapping(ModelConfig, data) == config == ModelConfig.from_dict(data)
    with pytest.raises(VireidError) as info:
        ModelConfig.from_dict({"kind": "method_a", "num_classes": 3, "gem_p": 0.5})
    assert str(info.value) == "model.gem_p: expected a finite number >= 1, got 0.5"


def last_bn_scales(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``bn3.weight`` of every residual block of ``model``, by name."""
    return {
        f"{name}.bn3.weight": block.bn3.weight
        for name, block in model.named_modules()
        if isinstance(block, Bottleneck)
    }


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(kind="baseline", num_classes=3),
        ModelConfig(kind="method_b", num_classes=3, derived_routing="own", share_from=3),
    ],
    ids=["two_streams", "four_streams"],
)
def test_zero_init_residual_zeroes_exactly_the_last_bn_scales(config):
    default = build_model(config)
    zeroed = build_model(dataclasses.replace(config, zero_init_residual=True))
    a, b = default.state_dict(), zeroed.state_dict()
    changed = sorted(k for k in a if not torch.equal(a[k], b[k]))
    scales = last_bn_scales(zeroed)
    # ResNet-50 has 3 + 4 + 6 + 3 blocks; each stream has its own copy of its specific stages
    specific = sum((3, 4, 6, 3)[: config.share_from - 1])
    assert len(scales) == 16 + (config.num_streams - 1) * specific
    assert changed == sorted(scales)  # nothing else moves: the switch draws no random numbers
    assert all(not bool(w.any()) for w in scales.values())
    # a residual block then starts as its shortcut: an identity block returns its (>= 0) input
    block = zeroed.backbone.shared["layer3"][1].train()
    x = torch.rand(2, 1024, 4, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(block(x), x)


def test_zero_init_residual_is_off_by_default():
    config = ModelConfig(kind="method_a", num_classes=3)
    assert config.zero_init_residual is False
    # torchvision's default initialisation: every BatchNorm scale starts at 1
    assert all(bool((w == 1).all()) for w in last_bn_scales(build_model(config)).values())


def test_pretrained_weights_overwrite_zero_init_residual(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(5)
        state = resnet50(weights=None).state_dict()
    gen = torch.Generator().manual_seed(6)
    for key in state:
        if key.endswith("bn3.weight"):
            state[key] = torch.rand(state[key].shape, generator=gen) + 0.5
    torch.save(state, tmp_path / "r50.pth")
    config = ModelConfig(kind="baseline", num_classes=3, pretrained=tmp_path / "r50.pth")
    loaded = build_model(config).state_dict()
    zeroed = build_model(dataclasses.replace(config, zero_init_residual=True)).state_dict()
    assert all(torch.equal(loaded[k], zeroed[k]) for k in loaded)  # the same network
    assert torch.equal(zeroed["backbone.shared.layer4.2.bn3.weight"], state["layer4.2.bn3.weight"])
    assert torch.equal(
        zeroed["backbone.specific.1.layer1.0.bn3.weight"], state["layer1.0.bn3.weight"]
    )
