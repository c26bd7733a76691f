from __future__ import annotations

import os
import re
import stat

import pytest

from reference import fileio
from reference.errors import VireidError
from reference.fileio import (
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    create_temporary_file,
    create_temporary_folder,
)


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request):
    """The process's umask set to the parameter for the test, then restored."""
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


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


def test_a_new_file_gets_the_permissions_a_plain_write_gives(tmp_path, umask):
    # mkstemp's 0o600 whatever the umask made checkpoints and results unreadable to the group
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    out = atomic_write_text(tmp_path / "a.json", "{}")
    assert mode_of(out) == 0o666 & ~umask == mode_of(plain)
    with atomic_open(tmp_path / "b.bin") as handle:
        handle.write(b"x")
    assert mode_of(tmp_path / "b.bin") == 0o666 & ~umask


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o400])
def test_a_replaced_file_keeps_its_permissions(tmp_path, umask, mode):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    target.chmod(mode)
    atomic_write_bytes(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new"
    assert mode_of(target) == mode


def test_temporary_names_are_fresh_and_retried(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    taken = tmp_path / ".a.bin.00000000.tmp"
    taken.write_bytes(b"someone else's")
    names = iter(["00000000", "00000001"])
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda n: next(names))
    fd, tmp = create_temporary_file(target)
    os.close(fd)
    assert tmp == tmp_path / ".a.bin.00000001.tmp"
    assert taken.read_bytes() == b"someone else's" and tmp.read_bytes() == b""


def test_no_free_temporary_name_is_an_error(tmp_path, monkeypatch):
    (tmp_path / ".a.bin.00000000.tmp").write_bytes(b"")
    (tmp_path / "d.00000000").mkdir()
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda n: "00000000")
    with pytest.raises(FileExistsError, match=re.escape(f"{tmp_path}: no free temporary name")):
        create_temporary_file(tmp_path / "a.bin")
    with pytest.raises(FileExistsError, match=re.escape(f"{tmp_path}: no free temporary name")):
        create_temporary_folder(tmp_path, "d.")


def test_a_temporary_folder_gets_the_permissions_mkdir_gives(tmp_path, umask):
    folder = create_temporary_folder(tmp_path, ".x.")
    assert folder.parent == tmp_path and folder.name.startswith(".x.") and folder.is_dir()
    assert mode_of(folder) == 0o777 & ~umask
    assert list(folder.iterdir()) == []


def test_a_file_in_the_way_of_the_folder_is_named(tmp_path):
    (tmp_path / "f.npz").write_bytes(b"mine")
    for target in (tmp_path / "f.npz" / "x.json", tmp_path / "f.npz" / "sub" / "x.json"):
        with pytest.raises(VireidError) as info:
            atomic_write_text(target, "{}")
        assert str(info.value) == (
            f"{target}: cannot write there ({tmp_path / 'f.npz'} is a file, not a folder)"
        )
    assert (tmp_path / "f.npz").read_bytes() == b"mine"


def test_a_failed_system_write_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(VireidError) as info:
        atomic_write_bytes(target, b"new", overwrite=True)
    assert str(info.value) == f"{target}: could not be written (No space left on device)"
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_a_mount_that_refuses_chmod_still_takes_the_write(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def refused(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(fileio.os, "chmod", refused)
    atomic_write_bytes(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new"
