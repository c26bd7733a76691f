"""SynthVI generation speed (``nox -s bench``; figures on a shared machine are indicative only).

- rendering 128 images of 64x32 in one vectorised call, against the same-run baseline of one
  call per image (what a per-image generator would do);
- writing the default dataset (SYSU-MM01 layout, 40 identities, 64x32), end to end.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reference.data import synthvi_render
from reference.data.synthvi import write_regdb, write_sysu

N = 128
SIZE = (64, 32)


@pytest.fixture(scope="module")
def scene():
    ident = synthvi_render.identities(range(1, 33), 0)
    rows = np.arange(32).repeat(N // 32)
    cam = synthvi_render.camera(0, 1, infrared=False)
    poses = synthvi_render.poses(np.random.default_rng(0), N)
    return ident, rows, cam, poses


def test_render_batched(benchmark, scene):
    ident, rows, cam, poses = scene
    out = benchmark(synthvi_render.render, ident, rows, cam, poses, SIZE)
    assert out.shape == (N, *SIZE, 3)


def test_render_one_image_per_call_baseline(benchmark, scene):
    ident, rows, cam, poses = scene

    def run():
        return [
            synthvi_render.render(
                ident, rows[i : i + 1], cam, synthvi_render.subset(poses, slice(i, i + 1)), SIZE
            )
            for i in range(N)
        ]

    out = benchmark(run)
    assert len(out) == N


@pytest.mark.parametrize("writer", [write_sysu, write_regdb])
def test_write_default_dataset(benchmark, tmp_path, writer):
    counter = itertools.count()

    def setup():
        return (tmp_path / f"run{next(counter)}",), {}

    root = benchmark.pedantic(writer, setup=setup, rounds=3, iterations=1)
    assert root.is_dir()
