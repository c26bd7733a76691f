"""The ranking picture on a small SynthVI dataset in the SYSU-MM01 layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reference.data.synthvi import write_sysu
from reference.data.sysu import read_sysu_test
from reference.errors import VireidError
from reference.evaluation.features import FeatureSet
from reference.results.ranks import (
    CELL_INCHES,
    DPI,
    FALSE_COLOUR,
    IMAGE_PIXELS,
    TOP,
    TOP_BAND,
    TRUE_COLOUR,
    image_paths,
    rank_queries,
    write_ranks,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_sysu(tmp_path_factory.mktemp("synthvi") / "sysu", ids=20, seed=0)
    records = read_sysu_test(root)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((int(records.pids.max()) + 1, 16))
    feats = centres[records.pids] + 0.9 * rng.standard_normal((len(records.paths), 16))
    fs = FeatureSet.create(
        feats.astype(np.float32), records.pids, records.camids, records.frames, dataset="sysu"
    )
    return root, fs, records


def test_image_paths_are_the_records_paths(dataset):
    root, fs, records = dataset
    assert image_paths(fs, root) == list(records.paths)


def test_rank_queries_picks_worst_best_random_and_ranks_by_distance(dataset):
    _, fs, _ = dataset
    ranked = rank_queries(fs, n_queries=7, seed=0)
    assert [r.kind for r in ranked] == ["worst"] * 3 + ["best"] * 2 + ["random"] * 2
    aps = [r.ap for r in ranked]
    assert max(aps[:3]) <= min(aps[5:]) <= max(aps[5:]) <= min(aps[3:5])
    assert len({r.query for r in ranked}) == 7
    for r in ranked:
        assert len(r.gallery) == min(TOP, len(r.gallery)) and list(r.distances) == sorted(
            r.distances
        )
        q = r.query
        assert fs.camids[q] in (3, 6)
        assert all(fs.camids[g] in (1, 2, 4, 5) for g in r.gallery)
        if fs.camids[q] == 3:  # the camera rule
            assert all(fs.camids[g] != 2 for g in r.gallery)
        assert r.matches == tuple(bool(fs.pids[g] == fs.pids[q]) for g in r.gallery)
        d = np.linalg.norm(fs.features[list(r.gallery)] - fs.features[q], axis=1)
        np.testing.assert_allclose(r.distances, d, rtol=1e-4)
    assert rank_queries(fs, n_queries=7, seed=0) == ranked


def test_write_ranks_png(dataset, tmp_path):
    root, fs, _ = dataset
    out, ranked = write_ranks(fs, root, tmp_path / "ranks.png", n_queries=3)
    with Image.open(out) as image:
        image.load()
        assert image.format == "PNG"
        assert image.size == (
            round((TOP + 1) * CELL_INCHES[0] * DPI),
            round(3 * CELL_INCHES[1] * DPI),
        )
    assert len(ranked) == 3
    with pytest.raises(VireidError, match="file exists"):
        write_ranks(fs, root, out)


def _rgb(colour: str) -> list[int]:
    return [int(colour[i : i + 2], 16) for i in (1, 3, 5)]


def test_frames_say_which_gallery_images_are_true_matches(dataset, tmp_path):
    # across the middle of each cell's image area, the first pixel that is not the white
    # background is the frame: black around the query, green around a true match, red around a
    # false one (the picture is drawn at the figure's own pixels, not resampled)
    root, fs, _ = dataset
    out, ranked = write_ranks(fs, root, tmp_path / "ranks.png", n_queries=4)
    with Image.open(out) as image:
        pixels = np.asarray(image.convert("RGB"))
    cell_w, cell_h = round(CELL_INCHES[0] * DPI), round(CELL_INCHES[1] * DPI)
    colours = set()
    for r, row in enumerate(ranked):
        expected = [[0, 0, 0]] + [_rgb(TRUE_COLOUR if m else FALSE_COLOUR) for m in row.matches]
        y = r * cell_h + TOP_BAND + IMAGE_PIXELS[1] // 2
        for c, want in enumerate(expected):
            line = pixels[y, c * cell_w : (c + 1) * cell_w]
            first = np.flatnonzero((line != 255).any(axis=1))[0]
            assert line[first].tolist() == want, (r, c)
            colours.add(tuple(want))
    assert len(colours) == 3  # the query's, a true match's and a false one's


def test_bad_input(dataset, tmp_path):
    root, fs, _ = dataset
    with pytest.raises(VireidError, match="--queries: expected a positive integer, got 0"):
        rank_queries(fs, n_queries=0)
    frames = fs.frames.copy()
    frames[0] = 999
    other = FeatureSet.create(fs.features, fs.pids, fs.camids, frames, dataset="sysu")
    with pytest.raises(VireidError, match="features row 0: frame 999 of cam"):
        image_paths(other, root)
