from __future__ import annotations

import re

import pytest

from reference.errors import VireidError
from reference.fileio import atomic_open, atomic_write_bytes, atomic_write_text


def test_writes_new_file(tmp_path):
    out = atomic_write_text(tmp_path / "sub" / "a.json", "{}")
    assert out.read_text() == "{}"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.json"]


def test_refuses_to_overwrite_without_being_asked(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"mine")
    with pytest.raises(VireidError, match=re.escape(f"{target}: file exists; pass overwrite=True")):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"mine"
    atomic_write_bytes(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new"


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w", overwrite=True) as handle:
        handle.write("partial")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_rejects_directory_target(tmp_path):
    with pytest.raises(VireidError, match="is a directory"):
        atomic_write_text(tmp_path, "x", overwrite=True)


def test_rejects_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="mode must be"), atomic_open(tmp_path / "x", "a"):
        pass


@pytest.mark.parametrize("path", [None, 3, ["x"]])
def test_a_path_that_is_not_one_is_named(path):
    with pytest.raises(VireidError) as info:
        atomic_write_text(path, "x")
    assert str(info.value) == f"path: expected a non-empty path (str or os.PathLike), got {path!r}"
