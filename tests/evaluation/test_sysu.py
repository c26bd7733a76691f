"""The SYSU-MM01 protocol (spec/evaluation/sysu.md).

- the official draw against the dataset authors' split in ../shared (skipped when absent);
- the agw draw against an independent re-implementation of the common Python code that walks a
  real folder tree with os.listdir / sorted / random.seed / random.choice;
- whole-protocol figures against a float64 plain-loop oracle written from the spec;
- bad input with exact messages.
"""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.example import sysu_example, sysu_example_from_split
from reference.evaluation.features import FeatureSet
from reference.evaluation.sysu import (
    agw_gallery,
    evaluate_sysu,
    folders_of,
    load_official_split,
    official_gallery,
    query_rows,
)

OFFICIAL = Path(__file__).resolve().parents[3] / "shared" / "sysu-mm01-official"
SPLIT = OFFICIAL / "rand_perm_cam.mat"
needs_official = pytest.mark.skipif(
    not SPLIT.is_file(), reason=f"official SYSU-MM01 split not found at {SPLIT}"
)
RGB = {"all": ["cam1", "cam2", "cam4", "cam5"], "indoor": ["cam1", "cam2"]}


# ---------------------------------------------------------------------------------------------
# helpers: a real folder tree, its features file, the common code's draw, the oracle
# ---------------------------------------------------------------------------------------------


def make_tree(root: Path, counts: dict[tuple[int, int], int], rng: np.random.Generator) -> None:
    """cam<c>/<pid:04d>/<name>.jpg with gapped, unordered-on-disk file names."""
    for (cam, pid), n in counts.items():
        folder = root / f"cam{cam}" / f"{pid:04d}"
        folder.mkdir(parents=True)
        names = sorted(rng.choice(9999, n, replace=False).tolist())
        for k in rng.permutation(n).tolist():  # creation order differs from sorted order
            (folder / f"{names[k]:04d}.jpg").write_bytes(b"")


def features_from_tree(root: Path, rng: np.random.Generator, dim: int = 4) -> tuple:
    """The features file of every image in the tree (rows shuffled) and each row's path."""
    paths = []
    for cam_dir in sorted(root.iterdir()):
        for pid_dir in sorted(cam_dir.iterdir()):
            for k, name in enumerate(sorted(os.listdir(pid_dir))):
                paths.append((int(cam_dir.name[3:]), int(pid_dir.name), k, str(pid_dir / name)))
    order = rng.permutation(len(paths))
    paths = [paths[i] for i in order]
    fs = FeatureSet.create(
        features=rng.standard_normal((len(paths), dim)),
        pids=np.array([p[1] for p in paths]),
        camids=np.array([p[0] for p in paths]),
        frames=np.array([p[2] for p in paths]),
        dataset="sysu",
    )
    return fs, [p[3] for p in paths]


def common_code_gallery(root: Path, test_ids: list[int], mode: str, trial: int) -> list[str]:
    """The common Python code's single-shot draw, re-implemented from the spec text."""
    state = random.getstate()
    try:
        random.seed(trial)
        files = []
        for pid in sorted(f"{i:04d}" for i in test_ids):
            for cam in RGB[mode]:
                img_dir = os.path.join(str(root), cam, pid)
                if os.path.isdir(img_dir):
                    new_files = sorted([img_dir + "/" + i for i in os.listdir(img_dir)])
                    files.append(random.choice(new_files))
        return files
    finally:
        random.setstate(state)


def oracle(dist, qp, gp, qc, gc, *, exclusion, cmc_kind, max_rank=20):
    """Plain-loop float64 rank metrics from spec/evaluation/metrics.md."""
    hits = [0] * max_rank
    aps, inps, valid = [], [], 0
    for i in range(len(qp)):
        order = sorted(range(len(gp)), key=lambda j: (dist[i][j], j))
        kept = [j for j in order if not (exclusion == "sysu" and qc[i] == 3 and gc[j] == 2)]
        pos = [k + 1 for k, j in enumerate(kept) if gp[j] == qp[i]]
        if not pos:
            continue
        valid += 1
        aps.append(sum((m + 1) / k for m, k in enumerate(pos)) / len(pos))
        inps.append(len(pos) / pos[-1])
        if cmc_kind == "identity":
            seen: list[int] = []
            for j in kept:
                if gp[j] not in seen:
                    seen.append(gp[j])
            rank = seen.index(qp[i]) + 1
        else:
            rank = pos[0]
        for r in range(rank - 1, max_rank):
            hits[r] += 1
    return [h / valid for h in hits], sum(aps) / valid, sum(inps) / valid, valid


def triples(fs: FeatureSet, rows: np.ndarray) -> list[tuple[int, int, int]]:
    """(camera, identity, frame) of each row."""
    cols = (fs.camids[rows].tolist(), fs.pids[rows].tolist(), fs.frames[rows].tolist())
    return list(zip(*cols, strict=True))


def euclid(a, b):
    return [[sum((x - y) ** 2 for x, y in zip(u, v, strict=True)) ** 0.5 for v in b] for u in a]


def cosine(a, b):
    def dot(u, v):
        return sum(x * y for x, y in zip(u, v, strict=True))

    return [[1.0 - dot(u, v) / (dot(u, u) * dot(v, v)) ** 0.5 for v in b] for u in a]


def small_counts(rng: np.random.Generator) -> dict[tuple[int, int], int]:
    ids = [3, 7, 12, 40, 101, 250, 5000, 12345]  # 12345 sorts before 5000 as a string
    counts = {}
    for pid in ids:
        counts[(6, pid)] = int(rng.integers(1, 4))  # every id has IR images
        if rng.random() < 0.7:
            counts[(3, pid)] = int(rng.integers(1, 4))
        for cam in (1, 2, 4, 5):
            if rng.random() < 0.6:
                counts[(cam, pid)] = int(rng.integers(1, 14))
    counts.setdefault((1, ids[0]), 2)
    counts.setdefault((2, ids[1]), 12)
    return counts


# ---------------------------------------------------------------------------------------------
# the official split
# ---------------------------------------------------------------------------------------------


@needs_official
def test_official_split_gives_the_published_set_sizes_in_every_trial():
    split = load_official_split(SPLIT)
    assert split.test_ids is not None and len(split.test_ids) == 96
    fs = sysu_example_from_split(split, dim=4)
    folders = folders_of(fs)
    assert query_rows(folders).size == 3803
    expected = {("all", 1): 301, ("all", 10): 3010, ("indoor", 1): 112, ("indoor", 10): 1120}
    for (mode, shots), size in expected.items():
        for trial in range(10):
            rows = official_gallery(folders, split, mode=mode, shots=shots, trial=trial)
            assert rows.size == size, (mode, shots, trial)
            assert np.unique(rows).size == size  # no image twice
            assert set(fs.camids[rows].tolist()) <= {1, 2, 4, 5}


@needs_official
def test_official_draw_takes_the_first_entries_of_row_trial():
    # read the file directly, independently of the loader under test
    raw = scipy.io.loadmat(SPLIT)["rand_perm_cam"]
    test_ids = [int(i) for i in scipy.io.loadmat(OFFICIAL / "test_id.mat")["id"].ravel()]
    split = load_official_split(SPLIT)
    fs = sysu_example_from_split(split, dim=4)
    folders = folders_of(fs)
    for trial in (0, 1, 9):
        rows = official_gallery(folders, split, mode="all", shots=10, trial=trial)
        drawn = triples(fs, rows)
        expected = []
        for pid in sorted(test_ids):
            for cam in (1, 2, 4, 5):
                perm = raw[cam - 1, 0][pid - 1, 0]
                expected += [(cam, pid, int(v) - 1) for v in perm[trial, :10]]
        assert drawn == expected
    # one entry spelled out: camera 1, identity 6, trial 0 starts with image 5 (1-based)
    assert int(raw[0, 0][5, 0][0, 0]) == 5
    rows = official_gallery(folders, split, mode="indoor", shots=1, trial=0)
    first = rows[0]
    assert (fs.camids[first], fs.pids[first], fs.frames[first]) == (1, 6, 4)


@needs_official
def test_official_indoor_valid_queries_and_trial_count():
    split = load_official_split(SPLIT)
    fs = sysu_example_from_split(split, dim=8)
    scores = evaluate_sysu(fs, mode="indoor", shots=1, sampling="official", split=split, trials=2)
    assert [t.metrics.num_query for t in scores.trials] == [3803, 3803]
    assert [t.metrics.num_valid for t in scores.trials] == [2208, 2208]
    assert [t.num_gallery for t in scores.trials] == [112, 112]
    with pytest.raises(VireidError) as info:
        evaluate_sysu(fs, sampling="official", split=split, trials=11)
    assert str(info.value) == "trials: the official split has 10 trials, got trials=11"


@needs_official
def test_split_that_does_not_match_the_features(tmp_path):
    split = load_official_split(SPLIT)
    fs = sysu_example_from_split(split, dim=4)
    # drop the last image of camera 4, identity 10 (frames stay 0..n-2: a consistent file)
    folder = folders_of(fs).rows[(4, 10)]
    keep = np.setdiff1d(np.arange(len(fs)), folder[-1:])
    short = fs.subset(keep)
    with pytest.raises(VireidError) as info:
        evaluate_sysu(short, sampling="official", split=split, source="mine.npz")
    n = folder.size
    assert str(info.value) == (
        f"split file does not match features: camera 4, identity 10: {SPLIT} has {n} images, "
        f"mine.npz has {n - 1}"
    )
    # a features file with fewer identities than test_id.mat beside the split
    fewer = fs.subset(np.flatnonzero(fs.pids != 6))
    with pytest.raises(VireidError) as info:
        evaluate_sysu(fewer, sampling="official", split=split, source="mine.npz")
    assert str(info.value) == (
        f"split file does not match features: mine.npz holds 95 identities, "
        f"{OFFICIAL / 'test_id.mat'} lists 96 (not in the test ids: []; missing from the "
        "features: [6])"
    )


def _save_split(path: Path, cells: np.ndarray) -> Path:
    scipy.io.savemat(path, {"rand_perm_cam": cells})
    return path


def _cells(entries: dict[tuple[int, int], np.ndarray], n_ids: int = 3) -> np.ndarray:
    cells = np.empty((6, 1), dtype=object)
    for cam in range(1, 7):
        per_id = np.empty((n_ids, 1), dtype=object)
        for pid in range(1, n_ids + 1):
            per_id[pid - 1, 0] = entries.get((cam, pid), np.zeros((10, 0), dtype=np.uint8))
        cells[cam - 1, 0] = per_id
    return cells


def test_a_hand_made_split_is_read_and_applied(tmp_path):
    rng = np.random.default_rng(0)
    counts = {(1, 1): 4, (2, 1): 3, (3, 1): 2, (6, 2): 2, (4, 2): 5, (3, 2): 1}
    entries = {
        key: np.stack([rng.permutation(n) + 1 for _ in range(10)]).astype(np.uint8)
        for key, n in counts.items()
    }
    path = _save_split(tmp_path / "rand_perm_cam.mat", _cells(entries))
    split = load_official_split(path)
    assert split.test_ids is None  # no test_id.mat beside it
    assert split.count(4, 2) == 5 and split.count(5, 2) == 0
    fs = sysu_example(counts=counts, dim=4)
    folders = folders_of(fs)
    rows = official_gallery(folders, split, mode="all", shots=10, trial=3)
    got = triples(fs, rows)
    want = [(1, 1, int(v) - 1) for v in entries[(1, 1)][3]]
    want += [(2, 1, int(v) - 1) for v in entries[(2, 1)][3]]
    want += [(4, 2, int(v) - 1) for v in entries[(4, 2)][3]]
    assert got == want


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"other": np.zeros(3)}, "missing variable 'rand_perm_cam' (expected the official split)"),
        (
            {"rand_perm_cam": np.zeros((6, 1))},
            "variable 'rand_perm_cam': expected a 6 x 1 cell array, got (6, 1) of float64",
        ),
        (
            {"rand_perm_cam": _cells({(2, 3): np.array([[1, 1, 2]] * 10)})},
            "rand_perm_cam{2}{3}: every row must be a permutation of 1..3",
        ),
        (
            {"rand_perm_cam": _cells({(5, 1): np.array([[1, 2]] * 9)})},
            "rand_perm_cam{5}{1}: expected a numeric 10 x n matrix, got (9, 2) of int64",
        ),
    ],
)
def test_bad_split_files(tmp_path, variables, message):
    path = tmp_path / "rand_perm_cam.mat"
    scipy.io.savemat(path, variables)
    with pytest.raises(VireidError) as info:
        load_official_split(path)
    assert str(info.value) == f"{path}: {message}"


def test_a_camera_cell_of_the_wrong_shape(tmp_path):
    cells = _cells({})
    cells[3, 0] = cells[3, 0].reshape(1, -1)  # camera 4: 1 x n_ids instead of n_ids x 1
    path = _save_split(tmp_path / "rand_perm_cam.mat", cells)
    with pytest.raises(VireidError) as info:
        load_official_split(path)
    assert str(info.value) == (
        f"{path}: rand_perm_cam{{4}}: expected an n_ids x 1 cell array, got (1, 3) of object"
    )


def test_an_unreadable_test_id_file_beside_the_split(tmp_path):
    path = _save_split(tmp_path / "rand_perm_cam.mat", _cells({}))
    (tmp_path / "test_id.mat").write_bytes(b"not a mat file")
    with pytest.raises(VireidError) as info:
        load_official_split(path)
    assert str(info.value).startswith(
        f"{tmp_path / 'test_id.mat'}: cannot read variable 'id' (test identities): "
    )


def test_unreadable_and_missing_split(tmp_path):
    missing = tmp_path / "none.mat"
    with pytest.raises(VireidError) as info:
        load_official_split(missing)
    assert str(info.value) == f"{missing}: split file not found (expected rand_perm_cam.mat)"
    with pytest.raises(VireidError) as info:
        load_official_split(tmp_path)  # the folder that holds it, given for the file
    assert str(info.value) == f"{tmp_path}: is a folder; expected the file rand_perm_cam.mat"
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"MATLAB? no")
    with pytest.raises(VireidError) as info:
        load_official_split(bad)
    assert str(info.value).startswith(f"{bad}: cannot read split file (expected a MATLAB .mat): ")


# ---------------------------------------------------------------------------------------------
# the agw draw against the common code walking a real folder tree
# ---------------------------------------------------------------------------------------------


@given(seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["all", "indoor"]))
def test_agw_draw_equals_the_common_code_on_a_folder_tree(tmp_path_factory, seed, mode):
    rng = np.random.default_rng(seed)
    root = tmp_path_factory.mktemp("sysu")
    counts = small_counts(rng)
    make_tree(root, counts, rng)
    fs, paths = features_from_tree(root, rng)
    folders = folders_of(fs)
    test_ids = sorted({pid for _, pid in counts})
    for trial in (0, 1, 7):
        rows = agw_gallery(folders, mode=mode, shots=1, trial=trial)
        assert [paths[r] for r in rows] == common_code_gallery(root, test_ids, mode, trial)


def test_agw_draw_leaves_the_global_random_state_alone():
    fs = sysu_example(counts={(1, 1): 5, (3, 1): 2}, dim=2)
    random.seed(123)
    before = random.getstate()
    agw_gallery(folders_of(fs), mode="all", shots=1, trial=4)
    assert random.getstate() == before


def test_agw_multi_shot_is_the_documented_reconstruction():
    rng = np.random.default_rng(5)
    counts = small_counts(rng)
    fs = sysu_example(counts=counts, dim=2)
    folders = folders_of(fs)
    for trial in (0, 3):
        rows = agw_gallery(folders, mode="all", shots=10, trial=trial)
        got = triples(fs, rows)
        r = random.Random(trial)
        want = []
        for pid in sorted({p for _, p in counts}, key=lambda p: f"{p:04d}"):
            for cam in (1, 2, 4, 5):
                if (cam, pid) in counts:
                    n = counts[(cam, pid)]
                    want += [(cam, pid, k) for k in r.sample(range(n), min(10, n))]
        assert got == want


# ---------------------------------------------------------------------------------------------
# the whole protocol against the oracle
# ---------------------------------------------------------------------------------------------


@given(
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["all", "indoor"]),
    shots=st.sampled_from([1, 10]),
    metric=st.sampled_from(["euclidean", "cosine"]),
)
def test_protocol_equals_the_oracle_on_small_sets(device, seed, mode, shots, metric):
    # the camera-3 queries' distances to camera-2 images are not computed (the camera rule
    # skips them): the figures are those of every distance computed
    rng = np.random.default_rng(seed)
    counts = small_counts(rng)
    fs = sysu_example(counts=counts, seed=seed % 1000, dim=3, noise=1.0)
    fs = fs.subset(rng.permutation(len(fs)))  # row order must not matter
    if metric == "cosine":
        # in float64: float32 cosines of 3-d features tie often enough that one near-tie in a
        # thousand examples ranks the other way than the oracle's float64 (the float32 ranking
        # itself is tested on its own distances: test_ranking.py, test_pooled.py)
        fs = replace(fs, features=fs.features.astype(np.float64))
    feats = fs.features.astype(np.float64).tolist()
    key = {
        (c, p, f): i
        for i, (c, p, f) in enumerate(
            zip(fs.camids.tolist(), fs.pids.tolist(), fs.frames.tolist(), strict=True)
        )
    }
    ids = sorted({p for _, p in counts}, key=lambda p: f"{p:04d}")
    queries = [key[(c, p, f)] for p in ids for c in (3, 6) for f in range(counts.get((c, p), 0))]
    trials = 3
    scores = evaluate_sysu(fs, mode=mode, shots=shots, trials=trials, metric=metric, device=device)
    per_trial = []
    for t in range(trials):
        r = random.Random(t)
        gallery = []
        for p in ids:
            for c in (1, 2, 4, 5) if mode == "all" else (1, 2):
                n = counts.get((c, p), 0)
                if n:
                    picks = [r.choice(range(n))] if shots == 1 else r.sample(range(n), min(10, n))
                    gallery += [key[(c, p, k)] for k in picks]
        distance = euclid if metric == "euclidean" else cosine
        dist = distance([feats[i] for i in queries], [feats[j] for j in gallery])
        want = oracle(
            dist,
            [int(fs.pids[i]) for i in queries],
            [int(fs.pids[j]) for j in gallery],
            [int(fs.camids[i]) for i in queries],
            [int(fs.camids[j]) for j in gallery],
            exclusion="sysu",
            cmc_kind="identity",
        )
        per_trial.append(want)
        got = scores.trials[t]
        assert got.num_gallery == len(gallery)
        assert got.metrics.num_query == len(queries) and got.metrics.num_valid == want[3]
        np.testing.assert_allclose(got.metrics.cmc, want[0], rtol=0, atol=1e-12)
        assert got.metrics.mAP == pytest.approx(want[1], abs=1e-12)
        assert got.metrics.mINP == pytest.approx(want[2], abs=1e-12)
    r1 = [w[0][0] for w in per_trial]
    assert scores.mean("R1") == pytest.approx(sum(r1) / trials, abs=1e-12)
    assert scores.mean("mAP") == pytest.approx(sum(w[1] for w in per_trial) / trials, abs=1e-12)
    assert scores.std("R1") == pytest.approx(float(np.std(r1)), abs=1e-12)


@given(seed=st.integers(0, 2**32 - 1), shots=st.sampled_from([1, 10]))
def test_row_order_of_the_features_file_does_not_matter(device, seed, shots):
    rng = np.random.default_rng(seed)
    fs = sysu_example(counts=small_counts(rng), seed=seed % 1000, dim=3)
    shuffled = fs.subset(rng.permutation(len(fs)))
    a = evaluate_sysu(fs, shots=shots, trials=2, device=device)
    b = evaluate_sysu(shuffled, shots=shots, trials=2, device=device)
    for x, y in zip(a.trials, b.trials, strict=True):
        np.testing.assert_array_equal(x.metrics.cmc, y.metrics.cmc)
        assert (x.metrics.mAP, x.metrics.mINP, x.num_gallery) == (
            y.metrics.mAP,
            y.metrics.mINP,
            y.num_gallery,
        )


def test_sysu_settings_are_recorded():
    fs = sysu_example(counts=small_counts(np.random.default_rng(1)), dim=3)
    scores = evaluate_sysu(fs, mode="indoor", shots=10, trials=2, metric="cosine", source="f.npz")
    assert scores.protocol == "sysu"
    assert dict(scores.settings) == {
        "dataset": "sysu",
        "mode": "indoor",
        "shots": 10,
        "sampling": "agw",
        "trials": 2,
        "metric": "cosine",
        "exclusion": "sysu",
        "cmc_kind": "identity",
        "max_rank": 20,
        "features": "f.npz",
        "split": None,
        "num_ids": 8,
        "rerank": None,
    }
    assert [t.trial for t in scores.trials] == [0, 1]
    assert scores.title == (
        "SYSU-MM01 indoor-search, multi-shot (10), agw draw, 2 trials, cosine distance"
    )


def test_example_resembles_the_real_set_sizes():
    fs = sysu_example(0)
    folders = folders_of(fs)
    assert 3650 <= query_rows(folders).size <= 3950
    assert len(folders.test_ids) == 96
    all_ss = agw_gallery(folders, mode="all", shots=1, trial=0).size
    indoor_ss = agw_gallery(folders, mode="indoor", shots=1, trial=0).size
    assert 280 <= all_ss <= 330 and 90 <= indoor_ss <= 130
    again = sysu_example(0)
    np.testing.assert_array_equal(again.features, fs.features)  # seeded, deterministic


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_a_folder_with_a_missing_frame():
    fs = sysu_example(counts={(1, 6): 4, (3, 6): 2}, dim=2)
    gap = fs.subset(np.flatnonzero(~((fs.camids == 1) & (fs.frames == 1))))
    with pytest.raises(VireidError) as info:
        evaluate_sysu(gap, source="f.npz")
    assert str(info.value) == (
        "f.npz: folder cam1/0006 has 3 rows with frames up to 3; expected frames exactly 0..2 "
        "(missing frame(s) 1): the features file must hold every image of the test folders"
    )


def test_missing_frames_are_listed_up_to_five():
    fs = sysu_example(counts={(1, 6): 12, (3, 6): 2}, dim=2)
    # the frame just below the highest one missing (its folder then ends at frame 4)
    top = fs.subset(np.flatnonzero(~((fs.camids == 1) & (fs.frames == 3)) & (fs.frames < 5)))
    with pytest.raises(VireidError) as info:
        folders_of(top, source="f.npz")
    assert "has 4 rows with frames up to 4; expected frames exactly 0..3 (missing frame(s) 3)" in (
        str(info.value)
    )
    # six frames missing: the first five are named
    many = fs.subset(np.flatnonzero(~((fs.camids == 1) & (fs.frames >= 1) & (fs.frames <= 6))))
    with pytest.raises(VireidError) as info:
        folders_of(many, source="f.npz")
    assert "(missing frame(s) 1, 2, 3, 4, 5):" in str(info.value)


def test_empty_gallery_and_no_query():
    outdoor_only = sysu_example(counts={(4, 6): 4, (3, 6): 2}, dim=2)
    with pytest.raises(VireidError) as info:
        evaluate_sysu(outdoor_only, mode="indoor", source="f.npz")
    assert str(info.value) == (
        "f.npz: empty gallery: no test identity has an image in cameras 1, 2 (indoor search)"
    )
    rgb_only = sysu_example(counts={(1, 6): 4, (2, 7): 2}, dim=2)
    with pytest.raises(VireidError) as info:
        evaluate_sysu(rgb_only, source="f.npz")
    assert str(info.value) == "f.npz: no query: the features hold no IR image (camera 3 or 6)"


def test_no_valid_query_names_the_trial():
    # the only query is camera 3 and the only gallery camera 2: the camera rule removes it all
    fs = sysu_example(counts={(2, 6): 4, (3, 6): 2}, dim=2)
    with pytest.raises(VireidError) as info:
        evaluate_sysu(fs, trials=1, source="f.npz")
    assert str(info.value).startswith("f.npz: SYSU-MM01 trial 0: q_pids: no valid query")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "outdoor"}, "mode: expected 'all' or 'indoor', got 'outdoor'"),
        ({"shots": 5}, "shots: expected 1 (single-shot) or 10 (multi-shot), got 5"),
        ({"sampling": "random"}, "sampling: expected 'official' or 'agw', got 'random'"),
        ({"trials": 0}, "trials: expected an integer >= 1, got 0"),
        (
            {"sampling": "official"},
            "split: sampling 'official' needs the dataset authors' rand_perm_cam.mat "
            "(CLI: --split)",
        ),
        ({"metric": "l1"}, "metric: unknown metric 'l1'; expected one of 'euclidean', 'cosine'"),
        ({"split": "rand_perm_cam.mat"}, "split: only used with sampling 'official'"),
    ],
)
def test_bad_settings(kwargs, message):
    fs = sysu_example(counts={(1, 6): 4, (3, 6): 2}, dim=2)
    with pytest.raises(VireidError) as info:
        evaluate_sysu(fs, **kwargs)
    assert str(info.value) == message


def test_a_regdb_file_is_not_a_sysu_file():
    fs = FeatureSet.create(np.ones((2, 2)), np.array([1, 1]), np.array([1, 2]), dataset="regdb")
    with pytest.raises(VireidError) as info:
        evaluate_sysu(fs, source="r.npz")
    assert str(info.value) == "r.npz: expected a SYSU-MM01 features file (dataset 'sysu')"


def test_a_regdb_file_with_frames_is_not_a_sysu_file():
    fs = FeatureSet.create(
        np.ones((2, 2)), np.array([1, 1]), np.array([1, 2]), frames=np.array([0, 0]),
        dataset="regdb",
    )  # fmt: skip
    with pytest.raises(VireidError) as info:
        folders_of(fs, source="r.npz")
    assert str(info.value) == "r.npz: expected a SYSU-MM01 features file (dataset 'sysu')"


def test_folders_and_official_split_are_frozen(tmp_path):
    import dataclasses

    folders = folders_of(sysu_example(counts={(1, 6): 2, (3, 6): 2}, dim=2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        folders.test_ids = ()  # type: ignore[misc]
    split = load_official_split(
        _save_split(tmp_path / "rand_perm_cam.mat", _cells({(1, 1): np.ones((10, 1), np.uint8)}))
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        split.test_ids = ()  # type: ignore[misc]


def test_agw_draw_of_two_shots_takes_two_per_folder():
    # agw_gallery draws min(shots, n) images per folder for any shots, not only 1 and 10
    fs = sysu_example(counts={(1, 6): 4, (2, 6): 1, (4, 7): 3, (3, 6): 2}, dim=2)
    rows = agw_gallery(folders_of(fs), mode="all", shots=2, trial=0)
    cams = fs.camids[rows].tolist()
    assert sorted(cams) == [1, 1, 2, 4, 4]


def test_folders_of_groups_every_folder_in_frame_order():
    # spec: rows[(cam, pid)][k] is the row of the image at position k of the folder
    counts = {(1, 1): 2, (1, 2): 3, (3, 1): 1, (6, 2): 2}
    fs = sysu_example(counts=counts, dim=2)
    order = np.random.default_rng(0).permutation(len(fs))
    shuffled = fs.subset(order)
    folders = folders_of(shuffled)
    assert sorted(folders.rows) == sorted(counts)
    for (cam, pid), rows in folders.rows.items():
        assert folders.count(cam, pid) == counts[(cam, pid)]
        assert shuffled.camids[rows].tolist() == [cam] * counts[(cam, pid)]
        assert shuffled.pids[rows].tolist() == [pid] * counts[(cam, pid)]
        assert shuffled.frames[rows].tolist() == list(range(counts[(cam, pid)]))
    assert folders.test_ids == (1, 2)


def test_identity_mismatch_lists_at_most_five_of_each(tmp_path):
    from reference.evaluation.sysu import OfficialSplit, check_split_matches

    fs = sysu_example(counts={(1, pid): 1 for pid in range(1, 9)}, dim=2)
    split = OfficialSplit(
        path=tmp_path / "rand_perm_cam.mat", perms={}, test_ids=tuple(range(8, 16))
    )
    with pytest.raises(VireidError) as info:
        check_split_matches(split, folders_of(fs), "mine.npz")
    assert str(info.value) == (
        f"split file does not match features: mine.npz holds 8 identities, "
        f"{tmp_path / 'test_id.mat'} lists 8 (not in the test ids: [1, 2, 3, 4, 5]; missing "
        "from the features: [9, 10, 11, 12, 13])"
    )


@pytest.mark.parametrize("trials", [np.int64(2), True])
def test_trials_must_be_a_python_int(trials):
    # _check_settings takes trials as a plain int (numpy=False): a NumPy integer or a bool is
    # refused with the field's message
    fs = sysu_example(counts={(1, 6): 4, (3, 6): 2}, dim=2)
    with pytest.raises(VireidError) as info:
        evaluate_sysu(fs, trials=trials)
    assert str(info.value) == f"trials: expected an integer >= 1, got {trials!r}"


def test_official_single_shot_takes_one_image_per_folder(tmp_path):
    # spec: the official gallery of trial t is P[cam, pid][t, :shots] - 1; single-shot: one each
    rng = np.random.default_rng(1)
    counts = {(1, 1): 4, (2, 1): 3, (4, 2): 5, (3, 1): 2, (6, 2): 2}
    entries = {
        key: np.stack([rng.permutation(n) + 1 for _ in range(10)]).astype(np.uint8)
        for key, n in counts.items()
    }
    split = load_official_split(_save_split(tmp_path / "rand_perm_cam.mat", _cells(entries)))
    fs = sysu_example(counts=counts, dim=4)
    folders = folders_of(fs)
    rows = official_gallery(folders, split, mode="all", shots=1, trial=2)
    want = [(cam, pid, int(entries[(cam, pid)][2, 0]) - 1) for cam, pid in ((1, 1), (2, 1), (4, 2))]
    assert triples(fs, rows) == want


def test_load_official_split_names_a_path_that_is_not_one():
    with pytest.raises(VireidError) as info:
        load_official_split(None)
    assert str(info.value) == "path: expected a non-empty path (str or os.PathLike), got None"
