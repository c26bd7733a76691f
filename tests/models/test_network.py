"""The network: modality routing, row order and independence, input checks."""

from __future__ import annotations

import pytest
import torch

from reference.errors import VireidError
from reference.models.backbone import MultiStreamResNet
from reference.models.heads import MultiGranularityHead
from reference.models.network import DERIVED_ROUTINGS, TWO_MODALITIES, ReidNetwork


def seeded(fn):
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        return fn()


@pytest.fixture(scope="module")
def parts():
    """One backbone and one small head (global + 1 coarse + 2 fine stripes), shared by the
    networks below, which differ only in their routing table."""
    backbone = seeded(lambda: MultiStreamResNet(share_from=2))
    head = seeded(lambda: MultiGranularityHead(num_classes=3, coarse_stripes=1, fine_stripes=2))
    return backbone, head


@pytest.fixture
def two(parts, device):
    return ReidNetwork(*parts, routing=TWO_MODALITIES).to(device).eval()


def images(n, h=32, w=16, seed=0):
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def tags(*values, device):
    return torch.tensor(values, dtype=torch.int64, device=device)


def test_eval_mode_is_deterministic(device, two):
    x = images(4).to(device)
    m = tags(0, 1, 1, 0, device=device)
    with torch.no_grad():
        a, b = two(x, m), two(x, m)
    assert torch.equal(a.embedding, b.embedding)
    assert all(torch.equal(a.features[k], b.features[k]) for k in a.features)


def test_a_row_does_not_depend_on_the_batch_or_its_position(device, two):
    x = images(5, seed=1).to(device)
    m = tags(0, 1, 1, 0, 1, device=device)
    perm = torch.tensor([3, 0, 4, 2, 1], device=device)
    with torch.no_grad():
        full = two(x, m)
        permuted = two(x[perm], m[perm])
        alone = [two(x[i : i + 1], m[i : i + 1]) for i in range(5)]
        other = two(torch.cat([x[:2], images(3, seed=9).to(device)]), m)
    tol = {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(permuted.embedding, full.embedding[perm], **tol)
    torch.testing.assert_close(torch.cat([o.embedding for o in alone]), full.embedding, **tol)
    torch.testing.assert_close(other.embedding[:2], full.embedding[:2], **tol)
    assert torch.equal(permuted.modality, m[perm])
    for name in full.features:
        torch.testing.assert_close(permuted.features[name], full.features[name][perm], **tol)


@pytest.mark.parametrize(("h", "w"), [(32, 16), (64, 32), (64, 16)])
def test_output_shapes(device, parts, h, w):
    net = ReidNetwork(*parts).to(device).train()
    out = net(images(4, h, w, seed=2).to(device), tags(0, 1, 0, 1, device=device))
    assert list(out.features) == ["global", "coarse.0", "fine.0", "fine.1"]
    assert all(v.shape == (4, 256) for v in out.features.values())
    assert all(v.shape == (4, 256) for v in out.neck_features.values())
    assert all(v.shape == (4, 3) for v in out.logits.values())
    assert out.embedding.shape == (4, 4 * 256)
    net.eval()
    with torch.no_grad():
        assert net(images(1, h, w).to(device), tags(1, device=device)).logits == {}


def test_gradients_reach_both_stems(device, parts):
    net = ReidNetwork(*parts).to(device).train()
    net.zero_grad(set_to_none=True)
    out = net(images(4, seed=3).to(device), tags(0, 1, 1, 0, device=device))
    sum(v.square().sum() for v in (*out.logits.values(), *out.features.values())).backward()
    for stream in (0, 1):
        grad = net.backbone.stage("stem", stream).conv1.weight.grad
        assert grad is not None and bool(grad.abs().sum() > 0)
    net.zero_grad(set_to_none=True)


@pytest.mark.parametrize(("routing", "same_as"), [("base", {2: 0, 3: 1}), ("cross", {2: 1, 3: 0})])
def test_derived_modalities_take_the_stream_the_routing_says(device, parts, routing, same_as):
    net = ReidNetwork(*parts, routing=DERIVED_ROUTINGS[routing]).to(device).eval()
    x = images(1, seed=4).to(device).expand(4, -1, -1, -1).contiguous()
    with torch.no_grad():
        out = net(x, tags(0, 1, 2, 3, device=device))
    assert torch.equal(out.modality, tags(0, 1, 2, 3, device=device))
    tol = {"rtol": 1e-4, "atol": 1e-5}
    for derived, base in same_as.items():
        torch.testing.assert_close(out.embedding[derived], out.embedding[base], **tol)
    # the two streams differ, so the comparison above is not vacuous
    assert not torch.allclose(out.embedding[0], out.embedding[1], rtol=1e-3, atol=1e-4)


def test_two_modality_models_refuse_derived_tags(device, two):
    with pytest.raises(VireidError) as info:
        two(images(3).to(device), tags(0, 2, 3, device=device))
    assert str(info.value) == (
        "modality: tag(s) 2 (DV), 3 (DI) not accepted by this model, which routes V, I"
    )
    with pytest.raises(VireidError) as info:
        two(images(2).to(device), tags(0, 5, device=device))
    assert str(info.value).startswith("modality: unknown modality tag(s) [5]")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: torch.zeros(3, 32, 16, device=d), "images: expected a (B, 3, H, W) tensor"),
        (lambda d: torch.zeros(2, 1, 32, 16, device=d), "images: expected a (B, 3, H, W) tensor"),
        (
            lambda d: torch.zeros(2, 3, 32, 16, dtype=torch.uint8, device=d),
            "images: expected a floating-point tensor, got torch.uint8",
        ),
        (
            lambda d: torch.full((2, 3, 32, 16), float("nan"), device=d),
            "images: contains NaN or infinite values",
        ),
        (
            lambda d: torch.zeros(0, 3, 32, 16, device=d),
            "images: expected at least one row, got an empty batch",
        ),
        (
            lambda d: torch.zeros(2, 3, 48, 16, device=d),
            "images: height 48 gives a feature map of 3 rows, not divisible by the stripe "
            "count(s) (lcm 2); use a height that is a multiple of 32",
        ),
    ],
)
def test_bad_images(device, two, make, message):
    x = make(device)
    m = torch.zeros(x.shape[0] if x.dim() == 4 else 3, dtype=torch.int64, device=device)
    with pytest.raises(VireidError) as info:
        two(x, m)
    assert str(info.value).startswith(message)


def test_bad_routing(parts):
    with pytest.raises(VireidError) as info:
        ReidNetwork(*parts, routing=DERIVED_ROUTINGS["own"])
    assert str(info.value) == "routing: stream indices must be in 0..1, got (0, 1, 2, 3)"
    with pytest.raises(VireidError) as info:
        ReidNetwork(*parts, routing=(0, 1))
    assert str(info.value) == "routing: expected one entry per modality (4), got 2"


def test_parameter_groups_cover_every_trainable_parameter_once(parts):
    net = ReidNetwork(*parts)
    groups = net.parameter_groups()
    ids = [id(p) for group in groups.values() for p in group]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in net.parameters() if p.requires_grad}
    assert {id(p) for p in groups["backbone"]} == {id(p) for p in net.backbone.parameters()}
    # the frozen neck shifts are in no group
    assert sum(p.numel() for p in groups["head"]) == sum(
        p.numel() for n, p in net.head.named_parameters() if not n.endswith("neck.bias")
    )


def test_bf16_autocast_with_channels_last(device, parts):
    """The GPU benchmark's mixed-precision path: finite outputs and gradients, and an eval
    embedding close in direction to the float32 one."""
    net = ReidNetwork(*parts).to(device).to(memory_format=torch.channels_last)
    x = images(4, seed=5).to(device).contiguous(memory_format=torch.channels_last)
    m = tags(0, 1, 0, 1, device=device)
    net.train().zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = net(x, m)
    loss = sum(v.float().square().mean() for v in (*out.logits.values(), *out.features.values()))
    loss.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in net.parameters() if p.grad is not None)
    net.eval().zero_grad(set_to_none=True)
    with torch.no_grad():
        full = net(x, m).embedding
        with torch.autocast(device.type, dtype=torch.bfloat16):
            low = net(x, m).embedding
    assert low.dtype == torch.bfloat16
    cosine = torch.nn.functional.cosine_similarity(full, low.float())
    assert bool((cosine > 0.99).all()), cosine
    net.to(memory_format=torch.contiguous_format)
