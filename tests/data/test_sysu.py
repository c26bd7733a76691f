"""SYSU-MM01 reader (spec/data/sysu.md): hand-made and SynthVI folders, broken copies."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from reference.data.records import Problems
from reference.data.sysu import read_sysu_test, read_sysu_train, scan_sysu
from reference.errors import VireidError

RGB, IR = (1, 2, 4, 5), (3, 6)

# pid -> {camera: frame numbers used in the file names}; names are not 1..n on purpose, so the
# frame index (position in the sorted folder) differs from the number in the name.
TINY_LAYOUT: dict[int, dict[int, tuple[int, ...]]] = {
    1: {1: (2, 5), 3: (1,)},
    2: {2: (1,), 4: (3, 4), 6: (7, 9)},
    3: {1: (1,), 5: (2,), 3: (4, 6)},
    4: {2: (1, 2), 6: (1,)},
    5: {1: (1,), 2: (3,), 3: (1, 2), 6: (5,)},
    6: {4: (1, 2), 5: (1,), 3: (8,)},
}
TINY_SPLITS = {"train": [3, 1, 2], "val": [4], "test": [6, 5], "available": [1, 2, 3, 4, 5, 6]}


def pixels(cam: int, pid: int, frame: int, size: tuple[int, int] = (8, 4)) -> np.ndarray:
    """The (H, W, 3) content of one hand-made image (IR cameras: grey, replicated)."""
    rng = np.random.default_rng([cam, pid, frame])
    if cam in IR:
        grey = rng.integers(0, 256, (*size, 1), dtype=np.uint8)
        return np.repeat(grey, 3, axis=2)
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def tiny_sysu(
    root: Path,
    layout: dict[int, dict[int, tuple[int, ...]]] | None = None,
    splits: dict[str, list[int]] | None = None,
    size: tuple[int, int] = (8, 4),
) -> Path:
    """Write a small SYSU-MM01-layout folder of 3-channel JPEGs; return ``root``."""
    layout = TINY_LAYOUT if layout is None else layout
    splits = TINY_SPLITS if splits is None else splits
    for cam in (*RGB, *IR):
        (root / f"cam{cam}").mkdir(parents=True, exist_ok=True)
    for pid, cams in layout.items():
        for cam, frames in cams.items():
            folder = root / f"cam{cam}" / f"{pid:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for f in frames:
                Image.fromarray(pixels(cam, pid, f, size)).save(folder / f"{f:04d}.jpg", "JPEG")
    (root / "exp").mkdir(exist_ok=True)
    for name, ids in splits.items():
        (root / "exp" / f"{name}_id.txt").write_text(",".join(map(str, ids)) + "\n")
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_sysu(tmp_path_factory.mktemp("sysu") / "SYSU-MM01")


@pytest.fixture
def broken(tiny, tmp_path) -> Path:
    """A fresh copy of the tiny folder to break."""
    return Path(shutil.copytree(tiny, tmp_path / "copy"))


def oracle_rows(root: Path, ids: list[int]) -> list[tuple[str, int, int, int, int, int]]:
    """Rows (path, label, pid, camid, modality, frame) written from the spec with plain loops."""
    rows = []
    for label, pid in enumerate(sorted(ids)):
        for cam in range(1, 7):
            folder = os.path.join(root, f"cam{cam}", f"{pid:04d}")
            if not os.path.isdir(folder):
                continue
            for frame, name in enumerate(sorted(os.listdir(folder))):
                modality = 1 if cam in (3, 6) else 0
                rows.append((os.path.join(folder, name), label, pid, cam, modality, frame))
    return rows


def rows_of(rec) -> list[tuple[str, int, int, int, int, int]]:
    return [
        (str(p), int(lab), int(pid), int(cam), int(m), int(f))
        for p, lab, pid, cam, m, f in zip(
            rec.paths, rec.labels, rec.pids, rec.camids, rec.modality, rec.frames, strict=True
        )
    ]


def test_train_plus_val_matches_oracle(tiny):
    rec = read_sysu_train(tiny)
    assert rows_of(rec) == oracle_rows(tiny, [1, 2, 3, 4])
    assert rec.num_classes == 4 and rec.root == tiny
    # pid 1 has files 0002.jpg, 0005.jpg in cam1: frames are positions, not the names' numbers
    assert rows_of(rec)[:2] == [
        (str(tiny / "cam1/0001/0002.jpg"), 0, 1, 1, 0, 0),
        (str(tiny / "cam1/0001/0005.jpg"), 0, 1, 1, 0, 1),
    ]


def test_train_only_option(tiny):
    rec = read_sysu_train(tiny, ids="train")
    assert rows_of(rec) == oracle_rows(tiny, [1, 2, 3])
    assert sorted(set(rec.pids.tolist())) == [1, 2, 3]


def test_same_label_in_both_modalities(tiny):
    rec = read_sysu_train(tiny)
    for label in range(rec.num_classes):
        assert set(rec.modality[rec.labels == label].tolist()) == {0, 1}
        assert len(set(rec.pids[rec.labels == label].tolist())) == 1


def test_test_pools_match_oracle_and_features_fields(tiny):
    rec = read_sysu_test(tiny)
    assert rows_of(rec) == oracle_rows(tiny, [5, 6])
    query = rec.subset(np.isin(rec.camids, IR))
    gallery = rec.subset(np.isin(rec.camids, RGB))
    assert len(query) == 2 + 1 + 1 and len(gallery) == 2 + 2 + 1
    assert set(query.modality.tolist()) == {1} and set(gallery.modality.tolist()) == {0}


def test_bad_ids_argument(tiny):
    with pytest.raises(VireidError, match=r"^ids: expected 'train\+val' or 'train', got 'val'$"):
        read_sysu_train(tiny, ids="val")


@st.composite
def layouts(draw):
    """Random identities over random cameras, both modalities guaranteed; random split."""
    n = draw(st.integers(3, 6))
    layout = {}
    for pid in draw(st.lists(st.integers(1, 40), min_size=n, max_size=n, unique=True)):
        cams = {draw(st.sampled_from(RGB)), draw(st.sampled_from(IR))}
        cams |= set(draw(st.lists(st.sampled_from(RGB + IR), max_size=2)))
        layout[pid] = {
            cam: tuple(draw(st.lists(st.integers(1, 30), min_size=1, max_size=3, unique=True)))
            for cam in sorted(cams)
        }
    pids = list(layout)
    cut1 = draw(st.integers(1, len(pids) - 2))
    cut2 = draw(st.integers(cut1 + 1, len(pids) - 1))
    splits = {"train": pids[:cut1], "val": pids[cut1:cut2], "test": pids[cut2:]}
    return layout, splits


@given(layouts())
def test_random_layouts_match_oracle(case):
    layout, splits = case
    with tempfile.TemporaryDirectory() as tmp:
        root = tiny_sysu(Path(tmp), layout, splits, size=(4, 2))
        train = read_sysu_train(root)
        assert rows_of(train) == oracle_rows(root, splits["train"] + splits["val"])
        assert rows_of(read_sysu_train(root, ids="train")) == oracle_rows(root, splits["train"])
        assert rows_of(read_sysu_test(root)) == oracle_rows(root, splits["test"])
        assert train.labels.tolist() == sorted(train.labels.tolist())


def test_synthvi_folder_reads(tmp_path):
    from reference.data.synthvi import write_sysu

    root = write_sysu(tmp_path / "synth", ids=10, seed=3)
    splits = {
        name: [int(v) for v in (root / f"exp/{name}_id.txt").read_text().strip().split(",")]
        for name in ("train", "val", "test")
    }
    train = read_sysu_train(root)
    assert rows_of(train) == oracle_rows(root, splits["train"] + splits["val"])
    assert train.num_classes == len(splits["train"]) + len(splits["val"])
    test = read_sysu_test(root)
    assert rows_of(test) == oracle_rows(root, splits["test"])


# -- broken copies: each problem raises a VireidError naming the path -------------------------


def test_root_not_a_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(VireidError) as info:
        read_sysu_train(missing)
    assert str(info.value) == (
        f"{missing}: not a directory; expected a SYSU-MM01 folder (cam1..cam6, exp/)"
    )


def test_missing_camera_folder(broken):
    shutil.rmtree(broken / "cam3")
    with pytest.raises(VireidError) as info:
        read_sysu_train(broken)
    assert str(info.value) == (
        f"{broken / 'cam3'}: missing camera folder; expected cam1..cam6 in {broken}"
    )


def test_unknown_camera_folder(broken):
    (broken / "cam7" / "0001").mkdir(parents=True)
    with pytest.raises(VireidError) as info:
        read_sysu_test(broken)
    assert str(info.value) == (
        f"{broken / 'cam7'}: unknown camera folder; SYSU-MM01 has cam1..cam6 only"
    )


@pytest.mark.parametrize("name", ["train", "val", "test"])
def test_missing_split_file(broken, name):
    path = broken / "exp" / f"{name}_id.txt"
    path.unlink()
    with pytest.raises(VireidError) as info:
        read_sysu_train(broken)
    assert str(info.value) == (
        f"{path}: missing split file; expected one line of comma-separated identity ids"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1,2,x\n", "entry 3 is 'x', not a positive integer; "),
        ("1,,2\n", "entry 2 is '', not a positive integer; "),
        ("1,0\n", "entry 2 is '0', not a positive integer; "),
        ("1,-2\n", "entry 2 is '-2', not a positive integer; "),
        ("1,\u00b2\n", "entry 2 is '\u00b2', not a positive integer; "),
        ("", "found 0 non-empty lines; "),
        ("1,2\n3\n", "found 2 non-empty lines; "),
    ],
)
def test_malformed_split_file(broken, text, problem):
    path = broken / "exp" / "train_id.txt"
    path.write_text(text)
    with pytest.raises(VireidError) as info:
        read_sysu_train(broken)
    assert str(info.value) == (
        f"{path}: {problem}expected one line of comma-separated identity ids"
    )


def test_duplicate_ids_in_split_file(broken):
    path = broken / "exp" / "train_id.txt"
    path.write_text("1,2,3,2,1\n")
    with pytest.raises(VireidError) as info:
        read_sysu_train(broken)
    assert str(info.value) == (
        f"{path}: ids [1, 2] are listed more than once; "
        "expected one line of comma-separated identity ids, each once"
    )


def test_overlapping_splits(broken):
    (broken / "exp" / "test_id.txt").write_text("5,6,2\n")
    with pytest.raises(VireidError) as info:
        read_sysu_test(broken)
    assert str(info.value) == (
        f"{broken / 'exp/test_id.txt'}: ids [2] are also in exp/train_id.txt; "
        "expected disjoint train/val/test splits"
    )


def test_split_id_without_any_folder(broken):
    (broken / "exp" / "val_id.txt").write_text("4,17\n")
    with pytest.raises(VireidError) as info:
        read_sysu_train(broken)
    assert str(info.value) == (
        f"identity 17 listed in {broken / 'exp/val_id.txt'} has no image folder 0017 in any "
        "of cam1..cam6"
    )


def test_identity_without_infrared_images(broken):
    # pid 2 has IR images in cam6 only
    shutil.rmtree(broken / "cam6" / "0002")
    with pytest.raises(VireidError) as info:
        read_sysu_train(broken)
    assert str(info.value) == (
        f"identity 2 listed in {broken / 'exp/train_id.txt'} has visible images only; "
        "expected infrared images in cam3/0002 or cam6/0002 too"
    )


def test_identity_without_visible_images(broken):
    shutil.rmtree(broken / "cam1" / "0005")
    shutil.rmtree(broken / "cam2" / "0005")
    with pytest.raises(VireidError) as info:
        read_sysu_test(broken)
    assert str(info.value) == (
        f"identity 5 listed in {broken / 'exp/test_id.txt'} has infrared images only; "
        "expected visible images in cam1, cam2, cam4 or cam5/0005 too"
    )


def test_unexpected_entries(broken):
    (broken / "cam1" / "notes.txt").write_text("x")
    with pytest.raises(VireidError) as info:
        read_sysu_train(broken)
    assert str(info.value) == (
        f"{broken / 'cam1/notes.txt'}: unexpected entry; expected identity folders named <pid:04d>"
    )
    (broken / "cam1" / "notes.txt").unlink()
    (broken / "cam1" / "0001" / "Thumbs.db").write_bytes(b"x")
    with pytest.raises(VireidError) as info:
        read_sysu_train(broken)
    assert str(info.value) == (
        f"{broken / 'cam1/0001/Thumbs.db'}: unexpected entry; expected only .jpg image files "
        "in an identity folder"
    )


def test_empty_identity_folder(broken):
    (broken / "cam5" / "0009").mkdir()
    with pytest.raises(VireidError) as info:
        read_sysu_train(broken)
    assert str(info.value) == (
        f"{broken / 'cam5/0009'}: empty identity folder; expected at least one image"
    )


def test_corrupt_image_is_not_an_open_error(broken):
    # Opening lists files only; decoding (cache build, data check) finds corrupt images.
    corrupt = broken / "cam1" / "0001" / "0002.jpg"
    corrupt.write_bytes(b"not a jpeg")
    assert corrupt in read_sysu_train(broken).paths


def test_collecting_mode_reports_every_problem(broken):
    shutil.rmtree(broken / "cam6" / "0002")
    (broken / "cam7").mkdir()
    (broken / "exp" / "val_id.txt").unlink()
    problems = Problems(collect=True)
    layout = scan_sysu(broken, problems)
    assert [p.split(";")[0] for p in problems.items] == [
        f"{broken / 'cam7'}: unknown camera folder",
        f"{broken / 'exp/val_id.txt'}: missing split file",
        f"identity 2 listed in {broken / 'exp/train_id.txt'} has visible images only",
    ]
    assert "val" not in layout.splits and layout.splits["train"] == (3, 1, 2)


def test_each_modality_in_the_predecessors_list_order(tiny):
    # The predecessor builds one list per modality: ids sorted, its cameras in order, files sorted.
    rec = read_sysu_train(tiny)
    for modality, cams in ((0, RGB), (1, IR)):
        expected = [
            str(tiny / f"cam{cam}" / f"{pid:04d}" / name)
            for pid in sorted([1, 2, 3, 4])
            for cam in cams
            if (tiny / f"cam{cam}" / f"{pid:04d}").is_dir()
            for name in sorted(os.listdir(tiny / f"cam{cam}" / f"{pid:04d}"))
        ]
        assert [str(p) for p in rec.subset(rec.modality == modality).paths] == expected


@pytest.mark.parametrize("root", [None, 3, ["x"]])
def test_a_root_that_is_not_a_path_is_named(root):
    for read in (read_sysu_test, read_sysu_train, scan_sysu):
        with pytest.raises(VireidError) as info:
            read(root)
        expected = f"root: expected a non-empty path (str or os.PathLike), got {root!r}"
        assert str(info.value) == expected
