"""The ranking picture on a small SynthVI dataset in the SYSU-MM01 layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reference.cli import main
from reference.data.regdb import read_regdb
from reference.data.synthvi import write_regdb, write_synthvi, write_sysu
from reference.data.sysu import read_sysu_test
from reference.errors import VireidError
from reference.evaluation.features import FeatureSet, save_features
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
from reference.training.extract import test_records


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
    with pytest.raises(VireidError) as info:
        image_paths(other, root)
    assert str(info.value) == (
        f"features row 0: camera {fs.camids[0]}, identity {fs.pids[0]}, frame 999 is not an "
        f"image of {root}'s test pool: the features file does not belong to this dataset"
    )


def features_of(records, dataset: str, seed: int = 0) -> FeatureSet:
    """Identity centres plus noise for every record, with the fields the protocol reads."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((int(records.pids.max()) + 1, 16))
    feats = centres[records.pids] + 0.9 * rng.standard_normal((len(records.paths), 16))
    modalities = records.modality if dataset == "llcm" else None
    return FeatureSet.create(
        feats.astype(np.float32), records.pids, records.camids, records.frames,
        dataset=dataset, modalities=modalities,
    )  # fmt: skip


@pytest.mark.parametrize("direction", ["i2v", "v2i"])
def test_llcm_picture_in_each_direction(tmp_path, direction):
    root = write_synthvi(tmp_path / "llcm", "llcm", ids=12, image_size=(32, 16)).root
    records = test_records(root, "llcm")
    fs = features_of(records, "llcm")
    assert image_paths(fs, root, "llcm") == list(records.paths)
    out, ranked = write_ranks(
        fs, root, tmp_path / "r.png", n_queries=3, dataset="llcm", direction=direction
    )
    q_mod = 1 if direction == "i2v" else 0  # infrared queries against the visible gallery
    for r in ranked:
        assert fs.modalities[r.query] == q_mod
        assert all(fs.modalities[g] == 1 - q_mod for g in r.gallery)
        # the rule: the query's identity is never shown from the query's own camera
        assert not any(
            fs.pids[g] == fs.pids[r.query] and fs.camids[g] == fs.camids[r.query] for g in r.gallery
        )
    with Image.open(out) as image:
        assert image.size == (
            round((TOP + 1) * CELL_INCHES[0] * DPI),
            round(3 * CELL_INCHES[1] * DPI),
        )


def test_regdb_picture_of_one_trial_and_the_command(tmp_path, capsys):
    root = write_regdb(tmp_path / "regdb", ids=6, image_size=(32, 16))
    records = read_regdb(root, trial=2, split="test")
    fs = features_of(records, "regdb")
    assert image_paths(fs, root, "regdb", trial=2) == list(records.paths)
    ranked = rank_queries(fs, n_queries=2, dataset="regdb", direction="t2v")
    assert all(fs.camids[r.query] == 2 for r in ranked)
    assert all(fs.camids[g] == 1 for r in ranked for g in r.gallery)
    path = save_features(tmp_path / "f.npz", fs)
    argv = ["results", "ranks", str(path), "--data-root", str(root), "--out"]
    assert main([*argv, str(tmp_path / "a.png"), "--trial", "2", "--direction", "t2v"]) == 0
    assert (tmp_path / "a.png").is_file()
    assert main([*argv, str(tmp_path / "b.png")]) == 2
    assert capsys.readouterr().err.endswith(
        "error: --trial: RegDB features hold one trial's test split: give that trial (1..10)\n"
    )
    assert main([*argv, str(tmp_path / "b.png"), "--trial", "2", "--direction", "i2v"]) == 2
    assert capsys.readouterr().err.endswith(
        "error: direction: expected 'v2t' or 't2v' for regdb, got 'i2v'\n"
    )


def test_a_trial_for_sysu_is_refused(dataset, tmp_path, capsys):
    root, fs, _ = dataset
    path = save_features(tmp_path / "f.npz", fs)
    status = main(["results", "ranks", str(path), "--data-root", str(root), "--trial", "1",
                   "--out", str(tmp_path / "x.png")])  # fmt: skip
    assert status == 2 and capsys.readouterr().err.endswith(
        "error: --trial: only for RegDB (a sysu features file holds the whole test pool)\n"
    )
    assert not (tmp_path / "x.png").exists()
