"""Atomic, non-clobbering file writes.

Result files, caches and checkpoints are written to a temporary file in the destination folder and
then renamed over the destination, so a reader never sees a half-written file and an interrupted
write leaves the old file intact. A file that already exists is only replaced when the caller says
so (``overwrite=True``): nothing a user produced is overwritten without being asked.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from reference.checks import check_path
from reference.errors import VireidError


def check_writable(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Return ``path`` as a Path; raise if it exists and ``overwrite`` is false."""
    target = check_path(path, "path")
    if target.exists() and not overwrite:
        raise VireidError(
            f"{target}: file exists; pass overwrite=True (CLI: --force) to replace it"
        )
    if target.exists() and target.is_dir():
        raise VireidError(f"{target}: is a directory, expected a file path")
    return target


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", *, overwrite: bool = False
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    target = check_writable(path, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # Re-check: another writer may have created the file while we were writing.
        check_writable(target, overwrite=overwrite)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False
) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_open(path, "wb", overwrite=overwrite) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    with atomic_open(path, "w", overwrite=overwrite) as handle:
        handle.write(text)
    return Path(path)
