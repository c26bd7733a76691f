"""``vireid data check`` (spec/data/check.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reference.cli import main
from reference.data.check import check_regdb, check_sysu
from reference.data.commands import check_command
from tests.data.test_regdb import tiny_regdb
from tests.data.test_sysu import TINY_LAYOUT, tiny_sysu


@pytest.fixture(scope="module")
def sysu_clean(tmp_path_factory) -> Path:
    return tiny_sysu(tmp_path_factory.mktemp("check") / "SYSU-MM01")


@pytest.fixture(scope="module")
def regdb_clean(tmp_path_factory) -> Path:
    return tiny_regdb(tmp_path_factory.mktemp("check") / "RegDB")


def _counts(report) -> dict[str, tuple[object, object]]:
    return {what: (found, published) for what, found, published in report.counts}


def test_clean_sysu_counts(sysu_clean):
    report = check_sysu(sysu_clean)
    assert report.ok and report.problems == []
    counts = _counts(report)
    assert counts["ids train"] == (3, 296)
    assert counts["ids val"] == (1, 99)
    assert counts["ids test"] == (2, 96)
    assert counts["ids available"] == (6, 491)
    assert counts["split ids not in available_id.txt"] == (0, 0)
    per_cam = {c: sum(len(cams.get(c, ())) for cams in TINY_LAYOUT.values()) for c in range(1, 7)}
    for cam in range(1, 7):
        kind = "infrared" if cam in (3, 6) else "visible"
        assert counts[f"images cam{cam} ({kind})"] == (per_cam[cam], None)
    assert counts["images visible"] == (sum(per_cam[c] for c in (1, 2, 4, 5)), 30071)
    assert counts["images infrared"] == (per_cam[3] + per_cam[6], 15792)


def test_split_ids_missing_from_available_are_counted(sysu_clean, tmp_path):
    root = Path(shutil.copytree(sysu_clean, tmp_path / "copy"))
    (root / "exp" / "available_id.txt").write_text("1,2,3,4\n")
    report = check_sysu(root)
    assert report.ok  # a count, not a problem
    assert _counts(report)["split ids not in available_id.txt"] == (2, 0)
    assert "split ids not in available_id.txt          2          0  (differs)" in (report.format())


def test_cli_entry(sysu_clean, regdb_clean, tmp_path, capsys):
    assert main(["data", "check", str(sysu_clean), "--dataset", "sysu"]) == 0
    assert main(["data", "check", str(regdb_clean), "--dataset", "regdb"]) == 0
    assert main(["data", "check", str(tmp_path / "nope"), "--dataset", "sysu"]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'nope'}: not a directory; expected a SYSU-MM01 folder" in err


def test_every_problem_is_reported(sysu_clean, tmp_path, capsys):
    root = Path(shutil.copytree(sysu_clean, tmp_path / "broken"))
    corrupt = root / "cam1" / "0001" / "0002.jpg"
    corrupt.write_bytes(b"GIF89a" + b"\x00" * 10)
    truncated = root / "cam4" / "0002" / "0003.jpg"
    raw = truncated.read_bytes()
    truncated.write_bytes(raw[: len(raw) // 2])
    (root / "cam7").mkdir()
    shutil.rmtree(root / "cam6" / "0002")  # pid 2 loses its only IR folder
    (root / "exp" / "available_id.txt").unlink()
    report = check_sysu(root, workers=2)
    heads = [p.split(";")[0].split(" (")[0] for p in report.problems]
    assert heads == [
        f"{root / 'cam7'}: unknown camera folder",
        f"{root / 'exp/available_id.txt'}: missing split file",
        f"identity 2 listed in {root / 'exp/train_id.txt'} has visible images only",
        f"{corrupt}: cannot decode image",
        f"{truncated}: cannot decode image",
    ]
    assert "truncated" in report.problems[-1].lower()
    assert _counts(report)["ids available"] == ("missing", 491)
    assert check_command(root=root, dataset="sysu") == 1
    out = capsys.readouterr().out
    assert "problems: 5" in out and f"  {report.problems[0]}" in out


def test_clean_regdb_counts(regdb_clean):
    report = check_regdb(regdb_clean)
    assert report.ok
    counts = _counts(report)
    assert counts["ids visible"] == (6, 412) and counts["ids thermal"] == (6, 412)
    assert counts["images per id visible"] == (2, 10)
    for trial in range(1, 11):
        for split in ("train", "test"):
            assert counts[f"trial {trial} {split} ids"] == (3, 206)
            assert counts[f"trial {trial} {split} images thermal"] == (6, 2060)


def test_regdb_problems(regdb_clean, tmp_path):
    root = Path(shutil.copytree(regdb_clean, tmp_path / "broken"))
    (root / "idx" / "test_visible_5.txt").unlink()
    line = (root / "idx" / "train_thermal_2.txt").read_text().splitlines()[0]
    gone = root / line.split(" ")[0]
    gone.unlink()
    bad = root / "Visible" / "1" / "visible_1_0.bmp"
    bad.write_bytes(b"BM" + b"\x01" * 20)
    (root / "Visible" / "stray.txt").write_text("x")
    # trial 3: put a test identity into the train files too
    test_line = (root / "idx" / "test_visible_3.txt").read_text().splitlines()[0]
    t_rel = test_line.split(" ")[0]
    pid = int(t_rel.split("/")[1])
    for m, folder in (("visible", "Visible"), ("thermal", "Thermal")):
        path = root / "idx" / f"train_{m}_3.txt"
        extra = [
            f"{folder}/{pid}/{p.name} 50" for p in sorted((root / folder / str(pid)).iterdir())
        ]
        path.write_text(path.read_text() + "\n".join(extra) + "\n")
    report = check_regdb(root)
    problems = report.problems
    assert f"{root / 'Visible/stray.txt'}: unexpected entry; expected identity folders <pid>" in (
        problems
    )
    assert any(
        p.startswith(f"{root / 'idx/test_visible_5.txt'}: missing split file") for p in problems
    )
    assert any(f"names {gone}, which is not there" in p for p in problems)
    assert any(p.startswith(f"{bad}: cannot decode image (") for p in problems)
    assert (
        f"{root / 'idx/test_visible_3.txt'}: identities [{pid}] are also in trial 3's train split; "
        "expected disjoint train and test ids"
    ) in problems
    # the missing image is also missing from the decode list (it is not there to decode)
    assert not any(p.startswith(f"{gone}: ") for p in problems)
