"""LLCM reader (spec/data/llcm.md): a hand-made folder, an oracle of its rows, broken copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reference.data.check import check_llcm
from reference.data.commands import check_command
from reference.data.llcm import read_llcm_test, read_llcm_train
from reference.errors import VireidError

VIS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
NIR = (1, 2, 4, 5, 6, 7, 8, 9)


def tiny_llcm(root: Path, *, seed: int = 0, size: tuple[int, int] = (8, 4)) -> Path:
    """A small LLCM-layout folder: 4 training labels, test ids 3, 12, 105 (JPEG images)."""
    rng = np.random.default_rng(seed)

    def image(path: Path, gray: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = size if gray else (*size, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path, "JPEG")

    (root / "idx").mkdir(parents=True)
    for name, gray in (("vis", False), ("nir", True)):
        lines = []
        for label in (0, 1, 2, 3):
            for j in range(2):
                rel = f"{name}/cam{1 + label}/{label:04d}/{name}_{label}_{j}.jpg"
                image(root / rel, gray)
                lines.append(f"{rel} {label}")
        (root / "idx" / f"train_{name}.txt").write_text("\n".join(lines) + "\n")
    (root / "idx" / "test_id.txt").write_text("105,3,12\n")
    for folder, cams in (("test_vis", VIS), ("test_nir", NIR)):  # every camera, as the dataset
        for cam in cams:
            (root / folder / f"cam{cam}").mkdir(parents=True)
    for pid in (3, 12, 105):
        for folder, cams, gray in (("test_vis", VIS, False), ("test_nir", NIR, True)):
            for cam in rng.choice(cams, 2, replace=False).tolist():
                for j in range(int(rng.integers(1, 4))):
                    image(root / folder / f"cam{cam}" / f"{pid:04d}" / f"z{9 - j}.jpg", gray)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_llcm(tmp_path_factory.mktemp("llcm") / "LLCM")


@pytest.fixture
def broken(tiny, tmp_path) -> Path:
    return Path(shutil.copytree(tiny, tmp_path / "copy"))


def oracle_test_rows(root: Path):
    """(path, pid, camid, modality, frame) from the spec, with plain loops over the folders."""
    rows = []
    for pid in sorted((3, 12, 105), key=lambda p: f"{p:04d}"):
        for modality, folder, cams in ((0, "test_vis", VIS), (1, "test_nir", NIR)):
            for cam in cams:
                d = root / folder / f"cam{cam}" / f"{pid:04d}"
                if d.is_dir():
                    for frame, name in enumerate(sorted(p.name for p in d.iterdir())):
                        rows.append((str(d / name), pid, cam, modality, frame))
    return rows


def test_test_rows_match_the_oracle(tiny):
    rec = read_llcm_test(tiny)
    got = [
        (str(p), int(pid), int(c), int(m), int(f))
        for p, pid, c, m, f in zip(
            rec.paths, rec.pids, rec.camids, rec.modality, rec.frames, strict=True
        )
    ]
    assert got == oracle_test_rows(tiny)
    assert rec.labels.tolist() == [[3, 12, 105].index(p) for p in rec.pids.tolist()]


def test_train_rows(tiny):
    rec = read_llcm_train(tiny)
    assert len(rec) == 16 and rec.modality.tolist() == [0] * 8 + [1] * 8
    assert rec.labels.tolist() == rec.pids.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] * 2
    assert rec.camids.tolist() == [1, 1, 2, 2, 3, 3, 4, 4] * 2
    assert rec.frames.tolist() == list(range(8)) * 2


def test_root_not_a_folder(tmp_path):
    with pytest.raises(VireidError) as info:
        read_llcm_test(tmp_path / "nope")
    assert str(info.value) == (
        f"{tmp_path / 'nope'}: not a directory; expected an LLCM folder (idx/, test_vis/, "
        "test_nir/)"
    )


def test_infrared_camera_3_is_a_problem(broken):
    (broken / "test_nir" / "cam3" / "0003").mkdir(parents=True)
    with pytest.raises(VireidError) as info:
        read_llcm_test(broken)
    assert str(info.value) == (
        f"{broken / 'test_nir' / 'cam3'}: unexpected entry; expected camera folders cam1, cam2, "
        "cam4, cam5, cam6, cam7, cam8, cam9"
    )


def test_test_id_without_infrared_images(broken):
    shutil.rmtree(broken / "test_nir")
    for cam in NIR:
        (broken / "test_nir" / f"cam{cam}").mkdir(parents=True)
    with pytest.raises(VireidError) as info:
        read_llcm_test(broken)
    assert str(info.value) == (
        f"identity 105 listed in {broken / 'idx' / 'test_id.txt'} has no image in "
        f"{broken / 'test_nir'}/cam*/0105; expected images in both test_vis and test_nir"
    )


def test_a_missing_test_camera_folder_is_a_problem(broken):
    # the public code skips a folder that is not there: a camera lost in a copy would shrink
    # the test set without a word
    shutil.rmtree(broken / "test_vis" / "cam7")
    with pytest.raises(VireidError) as info:
        read_llcm_test(broken)
    assert str(info.value) == (
        f"{broken / 'test_vis' / 'cam7'}: missing camera folder; expected cam1, cam2, cam3, "
        f"cam4, cam5, cam6, cam7, cam8, cam9 in {broken / 'test_vis'}"
    )


def test_training_line_naming_a_missing_image(broken):
    path = broken / "idx" / "train_nir.txt"
    path.write_text(path.read_text() + "nir/cam1/0000/gone.jpg 0\n")
    with pytest.raises(VireidError) as info:
        read_llcm_train(broken)
    assert str(info.value) == (
        f"{path}: line 9: names {broken / 'nir/cam1/0000/gone.jpg'}, which is not there; "
        "expected an image file"
    )


def test_training_label_in_one_modality_only(broken):
    path = broken / "idx" / "train_nir.txt"
    lines = [ln for ln in path.read_text().splitlines() if not ln.endswith(" 3")]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(VireidError) as info:
        read_llcm_train(broken)
    assert str(info.value) == (
        f"{broken / 'idx' / 'train_vis.txt'}: labels [3] have no image in "
        f"{path}; expected every identity in both modalities"
    )


def test_check_counts_and_problems(tiny, broken, capsys):
    report = check_llcm(tiny)
    assert report.ok, report.problems
    counts = {what: found for what, found, _ in report.counts}
    assert counts["ids train"] == 4 and counts["ids test"] == 3
    assert counts["images"] == 16 + len(oracle_test_rows(tiny))
    (broken / "test_vis" / "cam1" / "0003").mkdir(parents=True, exist_ok=True)
    (broken / "test_vis" / "cam1" / "0003" / "bad.jpg").write_bytes(b"not an image")
    (broken / "idx" / "train_vis.txt").write_text("onefield\n")
    assert check_command(root=broken, dataset="llcm") == 1
    out = capsys.readouterr().out
    assert "bad.jpg" in out and "1 fields in 'onefield'" in out


@pytest.mark.parametrize("root", [None, 3, ["x"]])
def test_a_root_that_is_not_a_path_is_named(root):
    for read in (read_llcm_test, read_llcm_train):
        with pytest.raises(VireidError) as info:
            read(root)
        expected = f"root: expected a non-empty path (str or os.PathLike), got {root!r}"
        assert str(info.value) == expected
