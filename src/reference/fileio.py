"""Atomic, non-clobbering file writes.

Result files, caches and checkpoints are written to a temporary file in the destination folder and
then renamed over the destination, so a reader never sees a half-written file and an interrupted
write leaves the old file intact. A file that already exists is only replaced when the caller says
so (``overwrite=True``): nothing a user produced is overwritten without being asked.

Permissions are those a plain write would leave: a new file gets ``0o666`` less the user's umask
(``tempfile.mkstemp`` would give ``0o600``, so a checkpoint or a results file on a shared machine
could not be read by the user's group), and a replaced file keeps its permission bits, as
``open(path, "w")`` keeps them. Temporary folders (:func:`create_temporary_folder`) likewise get
``0o777`` less the umask, not ``mkdtemp``'s ``0o700``: a folder that is finished in one and then
renamed into place (a SynthVI dataset) has a plain folder's permissions.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

from reference.checks import check_path
from reference.errors import VireidError

T = TypeVar("T")


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

    On an exception the temporary file is removed and ``path`` is untouched. The system's
    refusals (a file where a folder of the path should be, no permission, a full disk) become a
    :class:`VireidError` naming ``path``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    target = check_writable(path, overwrite=overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = create_temporary_file(target)
    except OSError as exc:
        raise VireidError(f"{target}: cannot write there ({why_not(target, exc)})") from exc
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # Re-check: another writer may have created the file while we were writing.
        check_writable(target, overwrite=overwrite)
        # a replaced file's permissions stay (best effort: some mounts refuse chmod, and a
        # write they take must not fail for it)
        with contextlib.suppress(OSError):
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise VireidError(f"{target}: could not be written ({why_not(target, exc)})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def why_not(target: Path, exc: OSError) -> str:
    """Why the system refused to create or write ``target``, in words: the file that stands
    where one of its folders should be, else the system's reason."""
    blocker = next((p for p in target.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        return f"{blocker} is a file, not a folder"
    return exc.strerror or str(exc)


#: attempts at a fresh temporary name before giving up (each name has 32 random bits)
TEMPORARY_ATTEMPTS = 100


def with_fresh_name(create: Callable[[str], T], parent: Path, what: str) -> T:
    """``create(token)`` with a new random token (32 bits, hex) until a call does not raise
    ``FileExistsError``, at most :data:`TEMPORARY_ATTEMPTS` calls; then ``FileExistsError``
    naming ``parent`` and ``what``."""
    for _ in range(TEMPORARY_ATTEMPTS):
        try:
            return create(secrets.token_hex(4))
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: no free temporary name for {what}")


def create_temporary_file(target: Path) -> tuple[int, Path]:
    """A new empty file beside ``target`` (``.<name>.<random>.tmp``), open for writing: ``(file
    descriptor, path)``. Created with mode ``0o666``, which the kernel reduces by the umask, as
    for any new file; ``O_EXCL`` makes the name this call's alone (it also refuses a link)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)

    def create(token: str) -> tuple[int, Path]:
        tmp = target.parent / f".{target.name}.{token}.tmp"
        return os.open(tmp, flags, 0o666), tmp

    return with_fresh_name(create, target.parent, target.name)


def create_temporary_folder(parent: Path, prefix: str) -> Path:
    """A new empty folder ``<prefix><random>`` in ``parent``, created with mode ``0o777`` less
    the umask, as ``mkdir`` creates one (``tempfile.mkdtemp`` would make it ``0o700``)."""

    def create(token: str) -> Path:
        folder = parent / f"{prefix}{token}"
        folder.mkdir(0o777)
        return folder

    return with_fresh_name(create, parent, f"{prefix}...")


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
