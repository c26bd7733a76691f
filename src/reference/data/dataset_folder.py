"""Writing a dataset folder atomically: built in a temporary sibling, then moved into place.

Spec: ``spec/data/synthvi.md`` (section on writing). A reader never sees half a dataset: the whole
folder is filled in a temporary folder next to ``out`` and moved into place by one rename (an
absent or empty ``out``) or, with ``force``, by swapping in each of the layout's top-level
folders whole, so no stale file of an earlier dataset survives in them; other files in ``out``
are left alone. On any failure the temporary folder is removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from reference.errors import VireidError
from reference.fileio import create_temporary_folder

__all__ = ["commit_folder", "write_dataset_folder"]


def _prepare(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise VireidError(f"{out}: is a file, expected a folder to write the dataset into")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise VireidError(
            f"{out}: folder is not empty; pass force=True (CLI: --force) to write into it"
        )


def commit_folder(tmp: Path, out: Path, layout_dirs: tuple[str, ...]) -> None:
    """Move the finished ``tmp`` folder to ``out``.

    An absent or empty ``out`` is replaced by one rename. Otherwise (force) each of the layout's
    top-level folders is swapped in whole, so no stale file of an earlier dataset survives in
    them; other files in ``out`` are left alone.
    """
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(tmp, out)
        return
    for name in layout_dirs:
        old = out / name
        trash = None
        if old.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=out))
            os.replace(old, trash / name)
        os.replace(tmp / name, old)
        if trash is not None:
            shutil.rmtree(trash)
    shutil.rmtree(tmp)


def write_dataset_folder(
    out: Path, force: bool, layout_dirs: tuple[str, ...], fill: Callable[[Path], None]
) -> None:
    """Call ``fill(tmp)`` on a fresh temporary sibling of ``out``, then commit it to ``out``.

    ``out`` must be absent, empty, or (with ``force``) a folder whose ``layout_dirs`` are
    replaced; a file in the way is a :class:`VireidError` naming it.
    """
    _prepare(out, force)
    blocker = next((p for p in out.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise VireidError(f"{out}: cannot create the dataset folder there: {blocker} is a file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # mkdir's permissions (the umask), not mkdtemp's owner-only ones: the folder becomes `out`
        tmp = create_temporary_folder(out.parent, f".{out.name}.synthvi.")
    except OSError as exc:
        raise VireidError(
            f"{out}: cannot create the dataset folder there ({exc.strerror or exc})"
        ) from exc
    try:
        fill(tmp)
        commit_folder(tmp, out, layout_dirs)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
