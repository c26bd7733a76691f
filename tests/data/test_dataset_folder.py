"""Writing a dataset folder atomically (spec/data/synthvi.md): refusing a non-empty folder,
force replacing the layout only, a file in the way, and nothing left behind on failure."""

from __future__ import annotations

import os
import stat

import pytest

from reference.data import synthvi_render
from reference.data.synthvi import write_regdb, write_sysu
from reference.errors import VireidError
from tests.data.test_synthvi import SMALL, files_of


def test_refuses_non_empty_folder_and_force_replaces_layout_only(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(VireidError) as info:
        write_sysu(out, ids=5, image_size=SMALL)
    assert (
        str(info.value)
        == f"{out}: folder is not empty; pass force=True (CLI: --force) to write into it"
    )
    # force over a bigger earlier dataset: no stale identity folder survives, other files do.
    write_sysu(out, ids=12, seed=0, image_size=SMALL, force=True)
    write_sysu(out, ids=5, seed=0, image_size=SMALL, force=True)
    fresh = files_of(write_sysu(tmp_path / "fresh", ids=5, seed=0, image_size=SMALL))
    assert files_of(out) == {**fresh, "notes.txt": b"mine"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_empty_existing_folder_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert write_regdb(out, ids=4, image_size=SMALL) == out
    assert (out / "idx" / "test_thermal_10.txt").is_file()


def test_out_is_a_file(tmp_path):
    out = tmp_path / "f"
    out.write_text("x")
    with pytest.raises(VireidError) as info:
        write_regdb(out, ids=4, image_size=SMALL)
    assert str(info.value) == f"{out}: is a file, expected a folder to write the dataset into"


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing(img, fmt):
        calls.append(1)
        if len(calls) > 5:
            raise OSError("disk full")
        return b"x"

    monkeypatch.setattr(synthvi_render, "encode", failing)
    with pytest.raises(OSError, match="disk full"):
        write_sysu(tmp_path / "d", ids=5, image_size=SMALL)
    assert list(tmp_path.iterdir()) == []


def test_out_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" / "d" / "e"
    with pytest.raises(VireidError) as info:
        write_sysu(out, ids=5, image_size=SMALL)
    assert str(info.value) == (
        f"{out}: cannot create the dataset folder there: {tmp_path / 'f'} is a file"
    )


def test_the_dataset_folder_gets_a_plain_folders_permissions(tmp_path):
    # it is built in a temporary folder and renamed: mkdtemp's 0o700 made it owner-only
    before = os.umask(0o022)
    try:
        out = write_regdb(tmp_path / "d", ids=4, image_size=SMALL)
    finally:
        os.umask(before)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")} == {0o755, 0o644}
