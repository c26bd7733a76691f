"""Train and test transforms against spec/data/transforms.md.

The oracles are written from the spec with plain loops (geometry) or float64 arithmetic
(normalisation, channel augmentation, erasing), replaying the spec's draw order on a fresh
generator with the same seed.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchvision.transforms.v2 import functional as TF

from reference.data import transforms as T
from reference.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Geometry,
    TestTransform,
    TrainTransform,
    TransformConfig,
    apply_geometry,
    draw_geometry,
)
from reference.errors import VireidError
from tests.strategies import uint8_images

F32_ATOL = 1e-5  # float32 normalised values are at most ~2.7 in magnitude


def _oracle_geometry(images, top, left, flip, pad):
    """out[b, c, r, q] = padded[c, r + t, l + q'] with q' = W - 1 - q when flipped (loops)."""
    b, ch, h, w = images.shape
    src = images.cpu().tolist()
    out = [[[[0] * w for _ in range(h)] for _ in range(ch)] for _ in range(b)]
    for i in range(b):
        for c in range(ch):
            for r in range(h):
                for q in range(w):
                    qq = (w - 1 - q) if flip[i] else q
                    y, x = r + top[i] - pad, qq + left[i] - pad
                    if 0 <= y < h and 0 <= x < w:
                        out[i][c][r][q] = src[i][c][y][x]
    return torch.tensor(out, dtype=torch.uint8)


@given(uint8_images(max_batch=3, heights=(2, 12)), st.integers(0, 4), st.integers(0, 2**31))
def test_geometry_matches_loop_oracle_and_torchvision(device, images, pad, seed):
    images = images.to(device)
    config = TransformConfig(size=tuple(images.shape[-2:]), pad=pad)
    geometry = draw_geometry(images.shape[0], config, torch.Generator().manual_seed(seed))
    top, left, flip = geometry.top.tolist(), geometry.left.tolist(), geometry.flip.tolist()
    assert all(0 <= v <= 2 * pad for v in top + left)
    expected = _oracle_geometry(images, top, left, flip, pad)
    out = apply_geometry(images, geometry, pad)
    assert out.device == images.device and out.dtype == torch.uint8
    assert torch.equal(out.cpu(), expected)
    # both implementations (CPU slice copies, vectorised gather) agree with the oracle
    assert torch.equal(T._geometry_loop(images.cpu(), geometry, pad), expected)
    assert torch.equal(T._geometry_gather(images.cpu(), geometry, pad), expected)
    h, w = images.shape[-2:]
    for b in range(images.shape[0]):
        one = TF.crop(TF.pad(images[b], [pad]), top[b], left[b], h, w)
        one = TF.horizontal_flip(one) if flip[b] else one
        assert torch.equal(out[b], one)


@given(uint8_images(max_batch=3))
def test_flip_is_its_own_inverse(device, images):
    images = images.to(device)
    n = images.shape[0]
    flip_all = Geometry(torch.zeros(n, dtype=torch.int64), torch.zeros(n, dtype=torch.int64),
                        torch.ones(n, dtype=torch.bool))  # fmt: skip
    once = apply_geometry(images, flip_all, 0)
    assert torch.equal(once, images.flip(-1))
    assert torch.equal(apply_geometry(once, flip_all, 0), images)


@given(uint8_images(max_batch=3, heights=(4, 16)))
def test_zero_offset_crop_without_flip_is_identity(device, images):
    images = images.to(device)
    n, pad = images.shape[0], 3
    centre = Geometry(
        torch.full((n,), pad), torch.full((n,), pad), torch.zeros(n, dtype=torch.bool)
    )
    assert torch.equal(apply_geometry(images, centre, pad), images)


def test_geometry_is_drawn_per_sample(device):
    # 16 copies of one image: a batch-shared crop/flip would give 16 equal outputs
    image = torch.randint(0, 256, (1, 3, 24, 12), generator=torch.Generator().manual_seed(0))
    images = image.to(torch.uint8).expand(16, -1, -1, -1).contiguous().to(device)
    train = TrainTransform(TransformConfig(size=(24, 12), pad=4))
    out = train.geometric(images, torch.Generator().manual_seed(3))
    distinct = {tuple(out[i].flatten().tolist()) for i in range(16)}
    assert len(distinct) > 8
    geometry = draw_geometry(1000, TransformConfig(), torch.Generator().manual_seed(4))
    assert set(geometry.top.tolist()) == set(range(21)) == set(geometry.left.tolist())
    assert 400 < int(geometry.flip.sum()) < 600  # p = 0.5 over 1000 samples: ~ 6 sd margin


def _oracle_normalise(images, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    x = images.cpu().to(torch.float64) / 255.0
    m = torch.tensor(mean, dtype=torch.float64)[:, None, None]
    s = torch.tensor(std, dtype=torch.float64)[:, None, None]
    return (x - m) / s


@given(uint8_images(max_batch=3))
def test_normalisation_matches_float64_oracle(device, images):
    images = images.to(device)
    config = TransformConfig(size=tuple(images.shape[-2:]))
    expected = _oracle_normalise(images)
    fused = T.fused_normalise(images, config)
    assert fused.dtype == torch.float32 and fused.device == images.device
    torch.testing.assert_close(fused.cpu().double(), expected, atol=F32_ATOL, rtol=0)
    torch.testing.assert_close(
        T.normalise(images, config).cpu().double(), expected, atol=F32_ATOL, rtol=0
    )
    # with no option on, the photometric half is exactly the fused normalisation
    plain = TrainTransform(config).photometric(images, torch.Generator().manual_seed(0))
    assert torch.equal(plain, fused)


@given(uint8_images(max_batch=4), st.integers(0, 2**31))
def test_train_output_shape_range_and_replay(device, images, seed):
    images = images.to(device)
    config = TransformConfig(size=(16, 8), pad=3, erase_p=0.5, channel_aug=True)
    modality = torch.arange(images.shape[0], device=device) % 2
    train = TrainTransform(config)
    a = train(images, torch.Generator().manual_seed(seed), modality)
    b = train(images, torch.Generator().manual_seed(seed), modality)
    assert a.shape == (images.shape[0], 3, 16, 8) and a.dtype == torch.float32
    assert a.device == images.device and torch.equal(a, b)
    lo = [(0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    hi = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    for c in range(3):
        assert float(a[:, c].min()) >= lo[c] - 1e-5 and float(a[:, c].max()) <= hi[c] + 1e-5


@given(uint8_images(max_batch=3, heights=(4, 20)), st.integers(0, 2**31))
def test_same_generator_state_same_batch_on_cpu_and_device(device, images, seed):
    config = TransformConfig(size=(12, 6), pad=2, erase_p=0.7, channel_aug=True)
    modality = torch.zeros(images.shape[0], dtype=torch.int64)
    train = TrainTransform(config)
    on_cpu = train(images, torch.Generator().manual_seed(seed), modality)
    on_dev = train(images.to(device), torch.Generator().manual_seed(seed), modality.to(device))
    torch.testing.assert_close(on_dev.cpu(), on_cpu, atol=F32_ATOL, rtol=0)


@given(uint8_images(max_batch=3))
def test_test_transform_is_deterministic_per_image_v2(device, images):
    images = images.to(device)
    config = TransformConfig(size=(20, 10))
    test = TestTransform(config)
    out = test(images)
    assert torch.equal(out, test(images)) and out.shape == (images.shape[0], 3, 20, 10)
    for b in range(images.shape[0]):
        one = TF.resize(images[b], [20, 10], antialias=True)
        one = TF.normalize(TF.to_dtype(one, torch.float32, scale=True), config.mean, config.std)
        torch.testing.assert_close(out[b], one, atol=F32_ATOL, rtol=0)


def test_config_from_lists_is_the_same_config():
    from_lists = TransformConfig(size=[16, 8], mean=[0.5, 0.5, 0.5], erase_area=[0.1, 0.2])
    assert from_lists == TransformConfig(size=(16, 8), mean=(0.5, 0.5, 0.5), erase_area=(0.1, 0.2))
    assert isinstance(from_lists.size, tuple)


def test_resize_is_a_no_op_at_the_target_size(device):
    images = torch.randint(0, 256, (2, 3, 8, 4), dtype=torch.uint8, device=device)
    assert T.resize(images, (8, 4)) is images
    assert T.resize(images, (16, 8)).shape == (2, 3, 16, 8)


def _replay_channel(images, modality, config, seed):
    g = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    choice = torch.randint(0, 4, (n,), generator=g).tolist()
    coin = (torch.rand(n, generator=g) < config.channel_gray_p).tolist()
    x = images.cpu().to(torch.float64)
    out = x.clone()
    for b in range(n):
        if int(modality[b]) != 0:
            continue
        if choice[b] < 3:
            for c in range(3):
                out[b, c] = x[b, choice[b]]
        elif coin[b]:
            gray = 0.2989 * x[b, 0] + 0.5870 * x[b, 1] + 0.1140 * x[b, 2]
            for c in range(3):
                out[b, c] = gray
    return out


@given(uint8_images(max_batch=4), st.integers(0, 2**31), st.floats(0, 1))
def test_channel_augmentation_matches_oracle(device, images, seed, gray_p):
    config = TransformConfig(channel_aug=True, channel_gray_p=gray_p)
    n = images.shape[0]
    modality = torch.tensor([0, 1, 2, 0][:n], device=device)
    x = images.to(device).to(torch.float32)
    out = T.channel_augment(x, modality == 0, config, torch.Generator().manual_seed(seed))
    expected = _replay_channel(images, modality.cpu(), config, seed)
    torch.testing.assert_close(out.cpu().double(), expected, atol=1e-3, rtol=0)  # 0..255 scale


def test_channel_augmentation_hits_every_case_and_leaves_infrared_alone(device):
    images = torch.randint(0, 256, (64, 3, 4, 2), generator=torch.Generator().manual_seed(1))
    images = images.to(torch.uint8).to(device)
    x = images.to(torch.float32)
    rows = torch.arange(64, device=device) < 48
    out = T.channel_augment(x, rows, TransformConfig(), torch.Generator().manual_seed(2))
    assert torch.equal(out[48:], x[48:])
    kinds = set()
    for b in range(48):
        if torch.equal(out[b], x[b]):
            kinds.add("same")
        else:
            assert torch.equal(out[b, 0], out[b, 1]) and torch.equal(out[b, 1], out[b, 2])
            hit = [c for c in range(3) if torch.equal(out[b, 0], x[b, c])]
            kinds.add(f"channel{hit[0]}" if hit else "gray")
    assert kinds == {"same", "gray", "channel0", "channel1", "channel2"}


def _replay_erase(images, config, seed):
    """The spec's erasing, with the spec's draw order, in float64 loops."""
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    coin = (torch.rand(n, generator=g) < config.erase_p).tolist()
    area_u = torch.rand(n, 10, generator=g, dtype=torch.float64).tolist()
    aspect_u = torch.rand(n, 10, generator=g, dtype=torch.float64).tolist()
    top_u = torch.rand(n, generator=g, dtype=torch.float64).tolist()
    left_u = torch.rand(n, generator=g, dtype=torch.float64).tolist()
    lo, hi = config.erase_area
    r = config.erase_aspect
    out = images.cpu().clone()
    rects = []
    for b in range(n):
        rect = None
        for t in range(10):
            area = (lo + (hi - lo) * area_u[b][t]) * h * w
            aspect = r + (1 / r - r) * aspect_u[b][t]
            eh, ew = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if eh < h and ew < w:
                rect = (eh, ew)
                break
        if coin[b] and rect is not None:
            eh, ew = rect
            y0 = math.floor(top_u[b] * (h - eh + 1))
            x0 = math.floor(left_u[b] * (w - ew + 1))
            for c in range(3):
                out[b, c, y0 : y0 + eh, x0 : x0 + ew] = config.erase_value[c]
            rects.append((y0, x0, eh, ew))
        else:
            rects.append(None)
    return out, rects


@given(uint8_images(max_batch=4, heights=(6, 30)), st.integers(0, 2**31))
def test_random_erasing_matches_oracle(device, images, seed):
    config = TransformConfig(erase_p=0.6, erase_value=(-1.0, 0.5, 2.0))
    x = T.fused_normalise(images.to(device), config)
    out = T.random_erase(x, config, torch.Generator().manual_seed(seed))
    expected, _ = _replay_erase(x.cpu(), config, seed)
    assert torch.equal(out.cpu(), expected)


def test_random_erasing_erases_about_erase_p_of_the_samples(device):
    config = TransformConfig(erase_p=0.5)
    x = torch.full((400, 3, 24, 12), 7.0, device=device)
    out = T.random_erase(x, config, torch.Generator().manual_seed(0))
    erased = (out != 7.0).flatten(1).any(1)
    _, rects = _replay_erase(x.cpu(), config, 0)
    assert erased.cpu().tolist() == [rect is not None and rect[2] * rect[3] > 0 for rect in rects]
    assert 150 < int(erased.sum()) < 250  # p = 0.5 over 400 samples: ~ 5 sd margin


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": (0, 4)}, "size: expected two positive integers (H, W), got (0, 4)"),
        ({"pad": -1}, "pad: expected a non-negative integer, got -1"),
        ({"flip_p": 1.5}, "flip_p: expected a probability in [0, 1], got 1.5"),
        ({"erase_p": -0.1}, "erase_p: expected a probability in [0, 1], got -0.1"),
        ({"erase_area": (0.5, 0.2)}, "erase_area: expected 0 < min <= max < 1"),
        ({"erase_aspect": 2.0}, "erase_aspect: expected a ratio in (0, 1], got 2.0"),
        ({"std": (0.2, 0.0, 0.2)}, "std: expected positive values, got (0.2, 0.0, 0.2)"),
        ({"mean": (0.5, 0.5)}, "mean: expected 3 values (R, G, B), got (0.5, 0.5)"),
        ({"size": 288}, "size: expected 2 values (H, W), got 288"),
        ({"size": (288.0, 144)}, "size: expected two positive integers (H, W), got (288.0, 144)"),
        ({"std": (0.2, "a", 0.2)}, "std: expected 3 numbers (R, G, B), got (0.2, 'a', 0.2)"),
        ({"flip_p": "0.5"}, "flip_p: expected a probability in [0, 1], got '0.5'"),
        ({"flip_p": float("nan")}, "flip_p: expected a probability in [0, 1], got nan"),
        ({"channel_aug": 1}, "channel_aug: expected True or False, got 1"),
        ({"mean": (0.5, float("inf"), 0.5)}, "mean, std, erase_value: expected finite numbers"),
    ],
)
def test_bad_config_names_the_field(kwargs, message):
    with pytest.raises(VireidError) as info:
        TransformConfig(**kwargs)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.zeros(2, 3, 8, 4), "images: expected dtype torch.uint8, got torch.float32"),
        (torch.zeros(2, 1, 8, 4, dtype=torch.uint8), "images: expected a (B, 3, H, W) tensor"),
        (torch.zeros(3, 8, 4, dtype=torch.uint8), "images: expected a (B, 3, H, W) tensor"),
        ([[0]], "images: expected a torch.Tensor"),
    ],
)
def test_bad_images_name_the_field(images, message):
    g = torch.Generator().manual_seed(0)
    for call in (
        lambda: TrainTransform()(images, g),
        lambda: TestTransform()(images),
        lambda: TrainTransform().photometric(images, g),
    ):
        with pytest.raises(VireidError) as info:
            call()
        assert str(info.value).startswith(message)


def test_channel_augmentation_needs_modality(device):
    train = TrainTransform(TransformConfig(size=(8, 4), channel_aug=True))
    images = torch.zeros(2, 3, 8, 4, dtype=torch.uint8, device=device)
    with pytest.raises(VireidError) as info:
        train(images, torch.Generator().manual_seed(0))
    assert str(info.value) == (
        "modality: required when channel_aug is on (it applies to visible rows only)"
    )
    with pytest.raises(VireidError, match=r"^modality: expected shape \(2,\), got \(3,\)$"):
        train(images, torch.Generator().manual_seed(0), torch.zeros(3, dtype=torch.int64))
