"""Method B's derivative modalities against spec/data/derivatives.md (exact rational oracles)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.data.batch import Batch
from reference.data.derivatives import (
    DerivativeConfig,
    derive_infrared,
    derive_visible,
    equalize,
    four_modality,
    grayscale,
    invert,
    luma,
)
from reference.errors import VireidError
from tests.strategies import uint8_images


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _oracle_luma(images):
    """BT.601 luma per pixel, exact rational arithmetic, rounded half up."""
    out = []
    for img in images.cpu().tolist():
        r, g, b = img
        out.append(
            [
                [
                    _round_half_up(Fraction(299 * rv + 587 * gv + 114 * bv, 1000))
                    for rv, gv, bv in zip(rr, gr, br, strict=True)
                ]
                for rr, gr, br in zip(r, g, b, strict=True)
            ]
        )
    return torch.tensor(out, dtype=torch.uint8)


def _oracle_equalize(y):
    """Per-image equalisation of a (B, H, W) intensity image with plain loops."""
    out = []
    for img in y.cpu().tolist():
        values = [v for row in img for v in row]
        n = len(values)
        cdf = {v: sum(1 for u in values if u <= v) for v in set(values)}
        cdf_min = cdf[min(values)]
        if n == cdf_min:
            out.append(img)
            continue
        lut = {v: _round_half_up(Fraction(255 * (cdf[v] - cdf_min), n - cdf_min)) for v in cdf}
        out.append([[lut[v] for v in row] for row in img])
    return torch.tensor(out, dtype=torch.uint8)


def _three(y):
    return y[:, None].expand(-1, 3, -1, -1)


@st.composite
def gray_images(draw, max_value=255):
    """(B, 3, H, W) uint8 images whose three channels are equal."""
    images = draw(uint8_images(max_batch=3, heights=(1, 12)))
    y = images[:, 0] if max_value == 255 else images[:, 0] % (max_value + 1)
    return _three(y).contiguous()


@given(uint8_images(max_batch=3, heights=(1, 12)))
def test_luma_and_grayscale_match_exact_oracle(device, images):
    images = images.to(device)
    expected = _oracle_luma(images)
    assert torch.equal(luma(images).cpu(), expected)
    gray = grayscale(images)
    assert gray.dtype == torch.uint8 and gray.device == images.device
    assert torch.equal(gray.cpu(), _three(expected))
    assert torch.equal(derive_visible(images).cpu(), _three(expected))


@given(gray_images())
def test_grayscale_of_a_gray_image_is_itself(device, images):
    images = images.to(device)
    assert torch.equal(grayscale(images), images)
    assert torch.equal(derive_infrared(images, "gray"), images)


@given(uint8_images(max_batch=3, heights=(1, 12)))
def test_equalize_matches_loop_oracle(device, images):
    images = images.to(device)
    out = equalize(images)
    assert out.dtype == torch.uint8 and out.device == images.device
    assert torch.equal(out.cpu(), _three(_oracle_equalize(_oracle_luma(images))))
    assert torch.equal(derive_infrared(images), out)  # the default


@given(gray_images())
def test_equalize_range_and_monotonicity(device, images):
    images = images.to(device)
    y, e = images[:, 0].cpu(), equalize(images)[:, 0].cpu()
    for b in range(y.shape[0]):
        yb, eb = y[b].flatten(), e[b].flatten()
        if int(yb.min()) == int(yb.max()):
            assert torch.equal(eb, yb)  # a constant image is unchanged
            continue
        assert int(eb.min()) == 0 and int(eb.max()) == 255
        order = torch.argsort(yb, stable=True)
        assert bool((eb[order].diff() >= 0).all()), "equalisation must keep intensity order"


@given(gray_images(max_value=127), st.integers(1, 2), st.integers(0, 1))
def test_equalize_ignores_a_strictly_increasing_camera_response(device, images, gain, offset):
    images = images.to(device)
    response = images * gain + offset  # strictly increasing, stays within 0..255
    flat = images[:, 0].flatten(1)
    varied = flat.amin(1) != flat.amax(1)  # a constant image is kept as it is, not remapped
    assert torch.equal(equalize(response)[varied], equalize(images)[varied])
    assert torch.equal(equalize(response)[~varied], response[~varied])


@given(gray_images())
def test_invert_is_an_involution_on_gray_images(device, images):
    images = images.to(device)
    once = invert(images)
    assert torch.equal(once, 255 - images)
    assert torch.equal(invert(once), images)


@given(uint8_images(max_batch=3), st.sampled_from(["equalize", "invert", "gray"]))
def test_derivatives_are_deterministic_with_equal_channels(device, images, kind):
    images = images.to(device)
    a, b = derive_infrared(images, kind), derive_infrared(images, kind)
    assert torch.equal(a, b) and a.shape == images.shape
    assert torch.equal(a[:, 0], a[:, 1]) and torch.equal(a[:, 1], a[:, 2])


def test_empty_batch(device):
    empty = torch.zeros(0, 3, 4, 2, dtype=torch.uint8, device=device)
    for fn in (grayscale, equalize, invert):
        assert fn(empty).shape == (0, 3, 4, 2)


@given(st.lists(st.sampled_from([0, 1]), min_size=1, max_size=8), st.integers(0, 2**31))
def test_four_modality_rows_tags_labels_cameras(device, tags, seed):
    n = len(tags)
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 6, 3), generator=g, dtype=torch.uint8).to(device)
    batch = Batch(
        images=images,
        labels=torch.randint(0, 5, (n,), generator=g).to(device),
        modality=torch.tensor(tags, device=device),
        camids=torch.randint(1, 7, (n,), generator=g).to(device),
    )
    for config in (DerivativeConfig(), DerivativeConfig(infrared="invert")):
        four = four_modality(batch, config)
        v = [i for i, t in enumerate(tags) if t == 0]
        ir = [i for i, t in enumerate(tags) if t == 1]
        assert len(four) == n + len(v) + len(ir) == 2 * n
        assert four.modality.tolist() == tags + [2] * len(v) + [3] * len(ir)
        order = list(range(n)) + v + ir
        assert four.labels.tolist() == [int(batch.labels[i]) for i in order]
        assert four.camids.tolist() == [int(batch.camids[i]) for i in order]
        assert torch.equal(four.images[:n], images)
        for row, src in enumerate(v, start=n):
            assert torch.equal(four.images[row], grayscale(images[src : src + 1])[0])
        for row, src in enumerate(ir, start=n + len(v)):
            expected = derive_infrared(images[src : src + 1], config.infrared)[0]
            assert torch.equal(four.images[row], expected)


def _batch(images, modality):
    n = images.shape[0]
    return Batch(
        images=images,
        labels=torch.zeros(n, dtype=torch.int64),
        modality=torch.tensor(modality),
        camids=torch.ones(n, dtype=torch.int64),
    )


def test_four_modality_bad_input():
    with pytest.raises(VireidError) as info:
        four_modality(_batch(torch.zeros(2, 3, 4, 2), [0, 1]))
    assert str(info.value) == "images: expected dtype torch.uint8, got torch.float32"
    with pytest.raises(VireidError) as info:
        four_modality(_batch(torch.zeros(3, 3, 4, 2, dtype=torch.uint8), [0, 1, 2]))
    assert str(info.value) == (
        "modality: four_modality expects only V (0) and I (1) rows, got tag(s) [2]"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"visible": "equalize"}, "visible: expected one of ['gray'], got 'equalize'"),
        ({"infrared": "x"}, "infrared: expected one of ['equalize', 'invert', 'gray'], got 'x'"),
        # not a dictionary key: the same error, not a TypeError
        (
            {"infrared": ["x"]},
            "infrared: expected one of ['equalize', 'invert', 'gray'], got ['x']",
        ),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(VireidError) as info:
        DerivativeConfig(**kwargs)
    assert str(info.value) == message


def test_bad_images_name_the_field():
    with pytest.raises(VireidError, match=r"^images: expected a \(B, 3, H, W\) tensor"):
        grayscale(torch.zeros(3, 4, 2, dtype=torch.uint8))
    with pytest.raises(VireidError, match=r"^images: expected dtype torch.uint8"):
        equalize(torch.from_numpy(np.zeros((1, 3, 2, 2), dtype=np.int16)))
