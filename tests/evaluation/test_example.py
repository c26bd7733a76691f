"""The generated example sets (src/reference/evaluation/example.py): shapes, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reference.errors import VireidError
from reference.evaluation.example import (
    llcm_example,
    regdb_example,
    sysu_example,
    sysu_example_counts,
    sysu_example_from_split,
)
from reference.evaluation.sysu import OfficialSplit, folders_of, load_official_split

SPLIT = Path(__file__).resolve().parents[3] / "shared" / "sysu-mm01-official" / "rand_perm_cam.mat"


def test_sysu_counts_are_seeded_and_shaped_like_the_test_set():
    counts = sysu_example_counts(0)
    assert counts == sysu_example_counts(0)
    assert counts != sysu_example_counts(1)
    assert {pid for _, pid in counts} == set(range(1, 97))
    indoor_1 = {p for c, p in counts if c == 1}
    indoor_2 = {p for c, p in counts if c == 2}
    assert indoor_1 == indoor_2  # cameras 1 and 2 see the same people
    assert all(n >= 10 for n in counts.values())  # multi-shot always finds 10 images
    ir = sum(n for (c, _), n in counts.items() if c in (3, 6))
    assert 3650 <= ir <= 3950


def test_sysu_example_is_deterministic_and_valid():
    a, b = sysu_example(3, dim=8), sysu_example(3, dim=8)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.features.dtype == np.float32 and a.dim == 8 and a.dataset == "sysu"
    assert not np.array_equal(a.features, sysu_example(4, dim=8).features)


def test_regdb_example_shapes():
    sets = regdb_example(trials=3, dim=4)
    assert len(sets) == 3
    for fs in sets:
        assert len(fs) == 2 * 2060 and fs.dataset == "regdb" and fs.frames is None
        assert (fs.camids == 1).sum() == 2060 and (fs.camids == 2).sum() == 2060
        assert np.unique(fs.pids).size == 206
        for cam in (1, 2):
            _, per_id = np.unique(fs.pids[fs.camids == cam], return_counts=True)
            assert set(per_id.tolist()) == {10}
    assert not np.array_equal(sets[0].pids, sets[1].pids)  # each trial its own split
    again = regdb_example(trials=3, dim=4)
    np.testing.assert_array_equal(again[2].features, sets[2].features)


def test_example_from_a_split_without_test_ids(tmp_path):
    split = OfficialSplit(path=tmp_path / "rand_perm_cam.mat", perms={}, test_ids=None)
    with pytest.raises(VireidError) as info:
        sysu_example_from_split(split)
    assert str(info.value) == (
        f"{tmp_path / 'rand_perm_cam.mat'}: the example for the official draw needs "
        "test_id.mat beside the split file, to know the test identities"
    )


@pytest.mark.skipif(not SPLIT.is_file(), reason=f"official SYSU-MM01 split not found at {SPLIT}")
def test_example_from_the_official_split_has_its_folder_sizes():
    split = load_official_split(SPLIT)
    fs = sysu_example_from_split(split, dim=2)
    assert int(np.isin(fs.camids, (3, 6)).sum()) == 3803
    assert np.unique(fs.pids).size == 96
    folders = folders_of(fs)
    for pid in split.test_ids:
        for cam in range(1, 7):
            assert folders.count(cam, pid) == split.count(cam, pid)
    # seed 0 by default, as the example of the agw draw
    counts = {(c, p): split.count(c, p) for p in split.test_ids for c in range(1, 7)}
    np.testing.assert_array_equal(fs.features, sysu_example(0, counts=counts, dim=2).features)


def test_default_examples_are_pinned_data_sets():
    # The example files are fixed data sets (seeded, "folder sizes drawn per camera", 64-d,
    # noise and gaps as in the module docstring): seed 0 must give these very files on every
    # version, so figures printed from `--example` stay reproducible (the defaults are seed 0:
    # called without arguments, as the commands do). Per camera: (folders, images, smallest,
    # largest folder).
    counts = sysu_example_counts()
    per_camera = {}
    for cam in range(1, 7):
        sizes = [n for (c, _), n in counts.items() if c == cam]
        per_camera[cam] = (len(sizes), sum(sizes), min(sizes), max(sizes))
    assert per_camera == {
        1: (48, 1168, 10, 40),
        2: (48, 1395, 14, 42),
        3: (89, 1774, 19, 21),
        4: (92, 1887, 19, 22),
        5: (95, 1906, 19, 21),
        6: (96, 1920, 20, 20),
    }
    fs = sysu_example()
    assert fs.features.shape == (10050, 64)
    assert float(fs.features.astype(np.float64).sum()) == pytest.approx(17400.29636899443)
    assert float(np.abs(fs.features).astype(np.float64).sum()) == pytest.approx(909265.0914044273)
    sets = regdb_example(trials=2)
    assert [float(s.features.astype(np.float64).sum()) for s in sets] == pytest.approx(
        [17987.764085401705, 20896.127584507645]
    )
    assert [s.pids[:3].tolist() for s in sets] == [[1, 1, 1], [0, 0, 0]]
    llcm = llcm_example()  # 351 identities, folders of 1 to 8 images per modality and camera
    assert llcm.features.shape == (17438, 64) and np.unique(llcm.pids).size == 351
    assert [int((llcm.modalities == m).sum()) for m in (0, 1)] == [9055, 8383]
    assert (int(llcm.frames.min()), int(llcm.frames.max())) == (0, 7)
    assert float(llcm.features.astype(np.float64).sum()) == pytest.approx(-92441.66097239703)
