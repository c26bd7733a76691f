"""Tests of SynthVI (spec: ``spec/data/synthvi.md``).

The expected layouts, split sizes and labels are written out from the spec, not read from the
generator. Two small datasets per layout are generated once per module; the determinism tests
generate their own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reference.cli import main
from reference.data import synthvi_render
from reference.data.synthvi import (
    write_regdb,
    write_sysu,
)
from reference.errors import VireidError
from reference.evaluation.metrics import rank_metrics_from_features

RGB_CAMS = (1, 2, 4, 5)
IR_CAMS = (3, 6)
SMALL = (32, 16)  # (height, width): small images keep the suite fast


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def read_ids(path: Path) -> list[int]:
    text = path.read_text()
    lines = text.splitlines()
    assert len(lines) == 1, f"{path} must hold one line"
    return [int(v) for v in lines[0].split(",")]


def decode(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB", path
        return np.asarray(im)


@pytest.fixture(scope="module")
def sysu(tmp_path_factory) -> Path:
    return write_sysu(
        tmp_path_factory.mktemp("sysu") / "SYSU-MM01", ids=14, seed=3, image_size=SMALL
    )


@pytest.fixture(scope="module")
def regdb(tmp_path_factory) -> Path:
    return write_regdb(tmp_path_factory.mktemp("regdb") / "RegDB", ids=9, seed=5, image_size=SMALL)


# ---------------------------------------------------------------------------------------------
# SYSU-MM01 layout
# ---------------------------------------------------------------------------------------------


def test_sysu_top_level_and_file_names(sysu):
    assert sorted(p.name for p in sysu.iterdir()) == [
        "cam1", "cam2", "cam3", "cam4", "cam5", "cam6", "exp",
    ]  # fmt: skip
    assert sorted(p.name for p in (sysu / "exp").iterdir()) == [
        "available_id.txt", "test_id.txt", "train_id.txt", "val_id.txt",
    ]  # fmt: skip
    pattern = re.compile(r"cam[1-6]/\d{4}/\d{4}\.jpg")
    for rel in files_of(sysu):
        if not rel.startswith("exp/"):
            assert pattern.fullmatch(rel), rel


def test_sysu_frames_are_numbered_from_one_and_counts_vary(sysu):
    counts = []
    for cam in range(1, 7):
        for folder in (sysu / f"cam{cam}").iterdir():
            frames = sorted(int(p.stem) for p in folder.iterdir())
            assert frames == list(range(1, len(frames) + 1)), folder
            assert 2 <= len(frames) <= 6, folder
            counts.append(len(frames))
    assert len(set(counts)) > 1


def test_sysu_splits_disjoint_covering_and_proportional(sysu):
    exp = sysu / "exp"
    train, val, test = (read_ids(exp / f"{s}_id.txt") for s in ("train", "val", "test"))
    available = read_ids(exp / "available_id.txt")
    assert available == list(range(1, 15))
    for ids in (train, val, test):
        assert ids == sorted(ids)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert sorted(train + val + test) == available
    # 14 ids: test max(2, round(14 * 96 / 491)) = 3, val max(1, round(14 * 99 / 491)) = 3.
    assert (len(train), len(val), len(test)) == (8, 3, 3)
    # The split is a random one, not the first ids in order.
    assert train != list(range(1, 9))


def test_sysu_every_identity_has_both_modalities_and_some_folders_are_absent(sysu):
    present = {cam: {int(p.name) for p in (sysu / f"cam{cam}").iterdir()} for cam in range(1, 7)}
    for pid in range(1, 15):
        assert any(pid in present[c] for c in RGB_CAMS), pid
        assert any(pid in present[c] for c in IR_CAMS), pid
    absent = sum(pid not in present[c] for c in range(1, 7) for pid in range(1, 15))
    assert absent > 0


def test_sysu_images_size_and_channels(sysu):
    for cam in range(1, 7):
        paths = sorted((sysu / f"cam{cam}").glob("*/*.jpg"))
        assert paths
        imgs = np.stack([decode(p) for p in paths]).astype(np.int64)
        assert imgs.shape[1:] == (32, 16, 3)
        spread = np.abs(imgs - imgs[..., :1]).max()
        if cam in IR_CAMS:
            # IR images are 3-channel JPEGs with equal channels, like the real ones.
            assert spread == 0, cam
        else:
            assert spread > 30, cam


# ---------------------------------------------------------------------------------------------
# RegDB layout
# ---------------------------------------------------------------------------------------------

REGDB_NAME = re.compile(
    r"(Visible|Thermal)/(\d+)/(female|male)_(front|back)_([vt])_(\d{5})_(\d+)\.bmp"
)


def test_regdb_files_names_and_pairs(regdb):
    assert sorted(p.name for p in regdb.iterdir()) == ["Thermal", "Visible", "idx"]
    images = [rel for rel in files_of(regdb) if not rel.startswith("idx/")]
    assert len(images) == 2 * 9 * 10
    frames = {"Visible": set(), "Thermal": set()}
    for rel in images:
        m = REGDB_NAME.fullmatch(rel)
        assert m, rel
        folder, pid, _, _, letter, frame, pid_again = m.groups()
        assert pid == pid_again and letter == {"Visible": "v", "Thermal": "t"}[folder]
        frames[folder].add(int(frame))
        # Every visible image has its thermal twin: same name but for the modality letter.
        if folder == "Visible":
            twin = rel.replace("Visible/", "Thermal/").replace("_v_", "_t_")
            assert (regdb / twin).is_file(), twin
    assert frames["Visible"] == frames["Thermal"] == set(range(1, 91))
    for pid in range(1, 10):
        for folder in ("Visible", "Thermal"):
            assert len(list((regdb / folder / str(pid)).iterdir())) == 10


def test_regdb_thermal_has_equal_channels(regdb):
    thermal = np.stack([decode(p) for p in sorted((regdb / "Thermal").rglob("*.bmp"))])
    visible = np.stack([decode(p) for p in sorted((regdb / "Visible").rglob("*.bmp"))])
    assert thermal.shape == visible.shape == (90, 32, 16, 3)
    assert (thermal == thermal[..., :1]).all()
    assert np.abs(visible.astype(int) - visible[..., :1]).max() > 30


def parse_idx(path: Path) -> list[tuple[str, int]]:
    out = []
    for line in path.read_text().splitlines():
        rel, label = line.split(" ")
        out.append((rel, int(label)))
    return out


def test_regdb_idx_files_reference_existing_files_with_consistent_labels(regdb):
    names = sorted(p.name for p in (regdb / "idx").iterdir())
    assert names == sorted(
        f"{s}_{m}_{t}.txt" for s in ("train", "test") for m in ("visible", "thermal")
        for t in range(1, 11)
    )  # fmt: skip
    splits = set()
    for t in range(1, 11):
        pids_of = {}
        for s in ("train", "test"):
            per_modality = {}
            for m, folder in (("visible", "Visible"), ("thermal", "Thermal")):
                entries = parse_idx(regdb / "idx" / f"{s}_{m}_{t}.txt")
                for rel, _ in entries:
                    assert rel.startswith(folder + "/") and (regdb / rel).is_file(), rel
                label_of = {}
                for rel, label in entries:
                    pid = int(rel.split("/")[1])
                    assert label_of.setdefault(pid, label) == label, rel
                # ten images per id, every image of that id listed once
                assert len(entries) == 10 * len(label_of)
                assert len({rel for rel, _ in entries}) == len(entries)
                per_modality[m] = label_of
            assert per_modality["visible"] == per_modality["thermal"]
            label_of = per_modality["visible"]
            # labels 0..n-1 in increasing pid order within each split file
            assert [label_of[p] for p in sorted(label_of)] == list(range(len(label_of)))
            pids_of[s] = set(label_of)
        assert not pids_of["train"] & pids_of["test"]
        assert pids_of["train"] | pids_of["test"] == set(range(1, 10))
        assert (len(pids_of["train"]), len(pids_of["test"])) == (4, 5)
        splits.add(frozenset(pids_of["train"]))
    assert len(splits) > 1  # trials draw their own splits


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", [write_sysu, write_regdb])
def test_same_seed_gives_byte_identical_folders(tmp_path, writer):
    a = files_of(writer(tmp_path / "a", ids=6, seed=11, image_size=SMALL))
    b = files_of(writer(tmp_path / "b", ids=6, seed=11, image_size=SMALL))
    assert a.keys() == b.keys() and len(a) > 20
    for rel in a:
        assert a[rel] == b[rel], rel
    c = files_of(writer(tmp_path / "c", ids=6, seed=12, image_size=SMALL))
    shared = [rel for rel in a.keys() & c.keys() if not rel.endswith(".txt")]
    assert shared and all(a[rel] != c[rel] for rel in shared)


# ---------------------------------------------------------------------------------------------
# split sizes and RegDB splits: properties
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# the modality gap (spec section "The modality gap")
# ---------------------------------------------------------------------------------------------


def load_cameras(root: Path, cams, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    imgs, pids, camids = [], [], []
    for cam in cams:
        for path in sorted((root / f"cam{cam}").glob("*/*.jpg")):
            imgs.append(decode(path))
            pids.append(int(path.parent.name))
            camids.append(cam)
    return (
        torch.from_numpy(np.stack(imgs)).to(device),
        torch.tensor(pids, device=device),
        torch.tensor(camids, device=device),
    )


def joint_histogram(images: torch.Tensor, bins: int = 4) -> torch.Tensor:
    """Square-rooted joint RGB histogram (bins**3), L2-normalised, float64."""
    q = images.long() * bins // 256
    index = ((q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]).flatten(1)
    hist = torch.zeros(images.shape[0], bins**3, dtype=torch.float64, device=images.device)
    hist.scatter_add_(1, index, torch.ones_like(index, dtype=torch.float64))
    hist = hist.sqrt()
    return hist / hist.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("seed", [1, 8])
def test_colour_histogram_gap(tmp_path, device, seed):
    root = write_sysu(tmp_path / "g", ids=20, seed=seed)
    q, qp, qc = load_cameras(root, (1, 4), device)
    gv, gvp, gvc = load_cameras(root, (2, 5), device)
    gi, gip, gic = load_cameras(root, (3, 6), device)
    fq = joint_histogram(q)
    vv = rank_metrics_from_features(fq, joint_histogram(gv), qp, gvp, qc, gvc, exclusion="none")
    vi = rank_metrics_from_features(fq, joint_histogram(gi), qp, gip, qc, gic, exclusion="none")
    assert vv.num_valid > 50 and vi.num_valid > 50
    assert vv.cmc[0] >= 0.55 and vv.mAP >= 0.4
    assert vi.cmc[0] <= 0.25 and vi.mAP <= 0.25


# ---------------------------------------------------------------------------------------------
# writing: refusal, force, atomicity
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# bad arguments
# ---------------------------------------------------------------------------------------------

SYSU_IDS = "ids: expected an integer from 5 to 9999 (train, val and test need at least 2, 1 and 2 identities), got {!r}"  # noqa: E501
REGDB_IDS = "ids: expected an integer from 4 to 9999 (each half, train and test, needs at least 2 identities), got {!r}"  # noqa: E501


@pytest.mark.parametrize("ids", [4, 0, -3, 10000, 7.0, True, "7"])
def test_sysu_bad_ids(tmp_path, ids):
    with pytest.raises(VireidError) as info:
        write_sysu(tmp_path / "d", ids=ids)
    assert str(info.value) == SYSU_IDS.format(ids)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("ids", [3, 1, 10000, None])
def test_regdb_bad_ids(tmp_path, ids):
    with pytest.raises(VireidError) as info:
        write_regdb(tmp_path / "d", ids=ids)
    assert str(info.value) == REGDB_IDS.format(ids)


@pytest.mark.parametrize("writer", [write_sysu, write_regdb])
@pytest.mark.parametrize("seed", [-1, 2**32, 1.5])
def test_bad_seed(tmp_path, writer, seed):
    with pytest.raises(VireidError) as info:
        writer(tmp_path / "d", ids=6, seed=seed)
    assert str(info.value) == f"seed: expected an integer from 0 to 4294967295, got {seed!r}"


BAD_SIZES = [
    (15, 8),
    (16, 7),
    (1025, 32),
    (64, 1025),
    (64,),
    (64, 32, 3),
    (64.0, 32),
    "64x32",
    None,
]


@pytest.mark.parametrize("size", BAD_SIZES)
def test_bad_image_size(tmp_path, size):
    with pytest.raises(VireidError) as info:
        write_sysu(tmp_path / "d", ids=6, image_size=size)
    assert str(info.value) == (
        "image_size: expected (height, width) integers with 16 <= height <= 1024 and "
        f"8 <= width <= 1024, got {size!r}"
    )


# ---------------------------------------------------------------------------------------------
# the rendering formula: a plain float64 per-pixel oracle written from the spec
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def test_cli_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", "--layout", "sysu", "--out", str(out), "--ids", "6", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    same = files_of(write_sysu(tmp_path / "api", ids=6, seed=2))
    assert files_of(out) == same
    n_rgb = sum(k.startswith(tuple(f"cam{c}/" for c in RGB_CAMS)) for k in same)
    n_ir = sum(k.startswith(("cam3/", "cam6/")) for k in same)
    assert f"to {out}: 6 identities (train 3, val 1, test 2), {n_rgb} RGB and {n_ir} IR" in printed


def test_cli_refuses_non_empty_folder_without_force(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["synth", "--layout", "regdb", "--out", str(out), "--ids", "4"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == (
        f"wrote SynthVI (RegDB layout) to {out}: 4 identities, 40 visible and 40 thermal "
        "images, 10 trials of 2 train / 2 test identities"
    )
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out}: folder is not empty; pass force=True (CLI: --force) to write into it"
    )
    assert main([*argv, "--force"]) == 0


def test_cli_bad_ids_is_an_error_message(tmp_path, capsys):
    assert main(["synth", "--layout", "sysu", "--out", str(tmp_path / "x"), "--ids", "2"]) == 2
    assert capsys.readouterr().err.strip() == "error: " + SYSU_IDS.format(2)


def test_byte_identical_across_processes(tmp_path):
    # A fresh interpreter with another hash seed: no dependence on set order or process state.
    out = tmp_path / "sub"
    argv = ["-m", "reference", "synth", "--layout", "regdb", "--out", str(out), "--ids", "4"]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, *argv], check=True, env=env, capture_output=True)
    assert files_of(out) == files_of(write_regdb(tmp_path / "here", ids=4))


def test_regdb_pairs_share_poses(tmp_path, monkeypatch):
    seen = []
    real = synthvi_render.render

    def spy(ident, rows, cam, poses, size):
        seen.append((cam.infrared, rows.copy(), poses))
        return real(ident, rows, cam, poses, size)

    monkeypatch.setattr(synthvi_render, "render", spy)
    write_regdb(tmp_path / "r", ids=4, image_size=SMALL)
    visible = [s for s in seen if not s[0]]
    thermal = [s for s in seen if s[0]]
    assert len(visible) == len(thermal) >= 1
    for (_, rv, pv), (_, rt, pt) in zip(visible, thermal, strict=True):
        np.testing.assert_array_equal(rv, rt)
        for field in pv.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(pv, field), getattr(pt, field))
