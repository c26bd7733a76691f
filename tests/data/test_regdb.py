"""RegDB reader (spec/data/regdb.md): hand-made and SynthVI folders, broken copies."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from reference.data.regdb import read_regdb
from reference.errors import VireidError

FOLDERS = {"visible": "Visible", "thermal": "Thermal"}


def tiny_regdb(
    root: Path, *, ids: int = 6, per_id: int = 2, seed: int = 0, size: tuple[int, int] = (8, 4)
) -> Path:
    """Write a small RegDB-layout folder (BMP images) with 10 trials; return ``root``.

    Trial t: a seeded half of the ids for training (labels 0..n-1 in a shuffled order), the rest
    for testing with labels ``100 + pid`` (not 0..C-1, to exercise the compaction); lines in a
    shuffled order.
    """
    rng = np.random.default_rng(seed)
    names: dict[str, list[str]] = {"visible": [], "thermal": []}
    for modality, folder in FOLDERS.items():
        for pid in range(1, ids + 1):
            (root / folder / str(pid)).mkdir(parents=True, exist_ok=True)
            for j in range(per_id):
                rel = f"{folder}/{pid}/{modality}_{pid}_{j}.bmp"
                if modality == "thermal":
                    img = Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8), "L")
                else:
                    img = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
                img.save(root / rel, "BMP")
                names[modality].append(rel)
    (root / "idx").mkdir(exist_ok=True)
    for trial in range(1, 11):
        perm = rng.permutation(np.arange(1, ids + 1))
        train = perm[: ids // 2]
        labels = {
            "train": {int(p): i for i, p in enumerate(rng.permutation(train))},
            "test": {int(p): 100 + int(p) for p in perm[ids // 2 :]},
        }
        for split, label_of in labels.items():
            for modality in FOLDERS:
                lines = [
                    f"{rel} {label_of[int(rel.split('/')[1])]}"
                    for rel in names[modality]
                    if int(rel.split("/")[1]) in label_of
                ]
                lines = [lines[i] for i in rng.permutation(len(lines))]
                text = "\n".join(lines) + "\n"
                (root / "idx" / f"{split}_{modality}_{trial}.txt").write_text(text)
    return root


def oracle_rows(root: Path, trial: int, split: str) -> list[tuple[str, int, int, int, int, int]]:
    """Rows (path, label, pid, camid, modality, frame) written from the spec with plain loops."""
    parsed = []
    for cam, modality in enumerate(("visible", "thermal"), start=1):
        text = (root / "idx" / f"{split}_{modality}_{trial}.txt").read_text()
        lines = [ln for ln in text.split("\n") if ln.strip()]
        for frame, line in enumerate(lines):
            rel, label = line.split(" ")
            parsed.append((str(root / rel), int(label), int(rel.split("/")[1]), cam, frame))
    labels = sorted({row[1] for row in parsed})
    return [
        (path, labels.index(label), pid, cam, cam - 1, frame)
        for path, label, pid, cam, frame in parsed
    ]


def rows_of(rec) -> list[tuple[str, int, int, int, int, int]]:
    return [
        (str(p), int(lab), int(pid), int(cam), int(m), int(f))
        for p, lab, pid, cam, m, f in zip(
            rec.paths, rec.labels, rec.pids, rec.camids, rec.modality, rec.frames, strict=True
        )
    ]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_regdb(tmp_path_factory.mktemp("regdb") / "RegDB")


@pytest.fixture
def broken(tiny, tmp_path) -> Path:
    return Path(shutil.copytree(tiny, tmp_path / "copy"))


@pytest.mark.parametrize("trial", [1, 2, 10])
@pytest.mark.parametrize("split", ["train", "test"])
def test_trials_match_oracle(tiny, trial, split):
    rec = read_regdb(tiny, trial=trial, split=split)
    assert rows_of(rec) == oracle_rows(tiny, trial, split)
    assert rec.num_classes == 3 and sorted(set(rec.labels.tolist())) == [0, 1, 2]
    for label in range(3):
        assert set(rec.modality[rec.labels == label].tolist()) == {0, 1}


def test_train_labels_kept_as_in_files(tiny):
    # The train files already use 0..C-1, so compaction keeps them unchanged.
    rec = read_regdb(tiny, trial=4, split="train")
    text = (tiny / "idx" / "train_visible_4.txt").read_text().split()
    assert rec.labels[: len(text) // 2].tolist() == [int(v) for v in text[1::2]]


def test_train_and_test_disjoint_per_trial(tiny):
    for trial in range(1, 11):
        train = set(read_regdb(tiny, trial=trial, split="train").pids.tolist())
        test = set(read_regdb(tiny, trial=trial, split="test").pids.tolist())
        assert not train & test and len(train | test) == 6


@given(st.integers(0, 2**16), st.integers(2, 7), st.integers(1, 3))
def test_random_folders_match_oracle(seed, ids, per_id):
    with tempfile.TemporaryDirectory() as tmp:
        root = tiny_regdb(Path(tmp), ids=ids, per_id=per_id, seed=seed, size=(4, 2))
        trial = seed % 10 + 1
        for split in ("train", "test"):
            assert rows_of(read_regdb(root, trial=trial, split=split)) == oracle_rows(
                root, trial, split
            )


def test_synthvi_folder_reads(tmp_path):
    from reference.data.synthvi import write_regdb

    root = write_regdb(tmp_path / "synth", ids=6, seed=1)
    for trial in (1, 10):
        for split in ("train", "test"):
            rec = read_regdb(root, trial=trial, split=split)
            assert rows_of(rec) == oracle_rows(root, trial, split)


@pytest.mark.parametrize("trial", [0, 11, True, "1", 1.0])
def test_bad_trial(tiny, trial):
    with pytest.raises(VireidError) as info:
        read_regdb(tiny, trial=trial, split="train")
    assert str(info.value) == f"trial: expected an integer 1..10, got {trial!r}"


def test_bad_split(tiny):
    with pytest.raises(VireidError, match=r"^split: expected 'train' or 'test', got 'val'$"):
        read_regdb(tiny, trial=1, split="val")


def test_root_not_a_folder(tmp_path):
    with pytest.raises(VireidError) as info:
        read_regdb(tmp_path / "nope", trial=1, split="train")
    assert str(info.value) == (
        f"{tmp_path / 'nope'}: not a directory; expected a RegDB folder (Visible/, Thermal/, idx/)"
    )


@pytest.mark.parametrize("folder", ["Visible", "Thermal", "idx"])
def test_missing_folder(broken, folder):
    shutil.rmtree(broken / folder)
    with pytest.raises(VireidError) as info:
        read_regdb(broken, trial=1, split="train")
    assert str(info.value) == (
        f"{broken / folder}: missing folder; expected Visible/, Thermal/ and idx/"
    )


def test_missing_split_file(broken):
    path = broken / "idx" / "test_thermal_3.txt"
    path.unlink()
    read_regdb(broken, trial=3, split="train")  # other files of the trial are fine
    with pytest.raises(VireidError) as info:
        read_regdb(broken, trial=3, split="test")
    assert str(info.value) == (
        f"{path}: missing split file; expected lines 'Thermal/<pid>/<file> <label>'"
    )


def _first_line(path: Path) -> str:
    return path.read_text().splitlines()[0]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda rel, lab: f"{rel}", "1 fields in {line!r}"),
        (lambda rel, lab: f"{rel} {lab} extra", "3 fields in {line!r}"),
        (lambda rel, lab: f"{rel} x", "label 'x' is not a non-negative integer"),
        (lambda rel, lab: f"{rel} -1", "label '-1' is not a non-negative integer"),
        (lambda rel, lab: f"{rel} \u00b3", "label '\u00b3' is not a non-negative integer"),
        (
            lambda rel, lab: f"{rel.replace('Visible', 'Thermal')} {lab}",
            "path {rel!r} is not of the form Visible/<pid>/<file>",
        ),
        (
            lambda rel, lab: f"Visible/x/a.bmp {lab}",
            "path {rel!r} is not of the form Visible/<pid>/<file>",
        ),
        (
            lambda rel, lab: f"Visible/1/../1/a.bmp {lab}",
            "path {rel!r} is not of the form Visible/<pid>/<file>",
        ),
        (
            lambda rel, lab: f"Visible/1 {lab}",
            "path {rel!r} is not of the form Visible/<pid>/<file>",
        ),
    ],
)
def test_malformed_line(broken, edit, problem):
    path = broken / "idx" / "train_visible_1.txt"
    lines = path.read_text().splitlines()
    rel, lab = lines[0].split(" ")
    lines[0] = edit(rel, lab)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(VireidError) as info:
        read_regdb(broken, trial=1, split="train")
    new_rel = lines[0].split(" ")[0]
    expected = problem.format(line=lines[0], rel=new_rel)
    assert str(info.value) == (
        f"{path}: line 1: {expected}; expected lines 'Visible/<pid>/<file> <label>'"
    )


def test_split_names_a_missing_image(broken):
    path = broken / "idx" / "train_thermal_2.txt"
    rel = _first_line(path).split(" ")[0]
    (broken / rel).unlink()
    with pytest.raises(VireidError) as info:
        read_regdb(broken, trial=2, split="train")
    assert str(info.value) == (
        f"{path}: line 1: names {broken / rel}, which is not there; expected an image file"
    )


def test_duplicate_line(broken):
    path = broken / "idx" / "test_visible_1.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[0]]) + "\n")
    with pytest.raises(VireidError) as info:
        read_regdb(broken, trial=1, split="test")
    rel = lines[0].split(" ")[0]
    assert str(info.value) == (
        f"{path}: line {len(lines) + 1}: {rel!r} is listed twice; expected each image once"
    )


def test_identity_in_one_modality_only(broken):
    path = broken / "idx" / "train_thermal_1.txt"
    lines = path.read_text().splitlines()
    pid = int(lines[0].split("/")[1])
    path.write_text("\n".join(ln for ln in lines if int(ln.split("/")[1]) != pid) + "\n")
    with pytest.raises(VireidError) as info:
        read_regdb(broken, trial=1, split="train")
    assert str(info.value) == (
        f"{broken / 'idx/train_visible_1.txt'}: identities [{pid}] have visible images but none "
        f"in {path}; expected every identity in both modalities"
    )


def test_label_conflicts(broken):
    vis = broken / "idx" / "train_visible_1.txt"
    th = broken / "idx" / "train_thermal_1.txt"
    v_lines = vis.read_text().splitlines()
    rel, label = v_lines[0].split(" ")
    pid = int(rel.split("/")[1])
    # the same identity with another label in the thermal file
    t_lines = th.read_text().splitlines()
    i = next(k for k, ln in enumerate(t_lines) if int(ln.split("/")[1]) == pid)
    t_rel = t_lines[i].split(" ")[0]
    t_lines[i] = f"{t_rel} 77"
    th.write_text("\n".join(t_lines) + "\n")
    with pytest.raises(VireidError) as info:
        read_regdb(broken, trial=1, split="train")
    assert str(info.value) == (
        f"{th}: {t_rel!r} has label 77 but identity {pid} has label {label} in {vis}; "
        "expected one label per identity"
    )


def test_two_identities_share_a_label(broken):
    vis = broken / "idx" / "train_visible_1.txt"
    lines = vis.read_text().splitlines()
    rel, label = lines[0].split(" ")
    pid = int(rel.split("/")[1])
    other = next(ln for ln in lines if int(ln.split("/")[1]) != pid)
    o_pid = int(other.split("/")[1])
    vis.write_text(
        "\n".join(
            f"{ln.split(' ')[0]} {label}" if int(ln.split("/")[1]) == o_pid else ln for ln in lines
        )
        + "\n"
    )
    with pytest.raises(VireidError) as info:
        read_regdb(broken, trial=1, split="train")
    assert str(info.value) == (
        f"{vis}: label {label} is used for identity {o_pid} and identity {pid} (in {vis}); "
        "expected one identity per label"
    )


@pytest.mark.parametrize("root", [None, 3, ["x"]])
def test_a_root_that_is_not_a_path_is_named(root):
    with pytest.raises(VireidError) as info:
        read_regdb(root, trial=1, split="test")
    assert str(info.value) == f"root: expected a non-empty path (str or os.PathLike), got {root!r}"
