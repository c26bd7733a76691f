"""Decoded cache: build (decode + resize to 288 x 144 + write) and load, against a plain decode.

Run: ``nox -s bench`` (or ``pytest tests/bench/bench_cache.py -o python_files=bench_*.py
--benchmark-only``). Images: a SynthVI SYSU-MM01 folder with 128 x 64 source JPEGs. Baseline in
the same run: decoding and resizing every image with PIL in a plain loop (what every epoch costs
without the cache). Figures are images per second = N / time (N = 304 here).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reference.data.cache import decode_image, load_decoded
from reference.data.synthvi import write_sysu
from reference.data.sysu import read_sysu_train

SIZE = (288, 144)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = write_sysu(
        tmp_path_factory.mktemp("bench") / "sysu", ids=20, seed=0, image_size=(128, 64)
    )
    return read_sysu_train(root)


def test_plain_pil_decode_baseline(benchmark, records):
    def run():
        for p in records.paths:
            decode_image(p, SIZE)

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["images"] = len(records)


@pytest.mark.parametrize("workers", [0, 2])
def test_cache_build(benchmark, records, tmp_path, workers):
    state = {"n": 0}

    def setup():
        state["n"] += 1
        return (), {"cache_dir": tmp_path / f"c{state['n']}"}

    def run(cache_dir: Path):
        load_decoded(records, size=SIZE, cache_dir=cache_dir, workers=workers)
        shutil.rmtree(cache_dir)

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    benchmark.extra_info["images"] = len(records)


def test_cache_load(benchmark, records, tmp_path):
    load_decoded(records, size=SIZE, cache_dir=tmp_path)
    out = benchmark.pedantic(
        lambda: load_decoded(records, size=SIZE, cache_dir=tmp_path), rounds=5, iterations=1
    )
    assert out.shape == (len(records), 3, *SIZE)
    benchmark.extra_info["images"] = len(records)
