"""The parts of a dataset folder that several readers parse the same way.

Spec: ``spec/data/layout.md``. Two pieces, each validated as it is read and each problem reported
through :class:`~reference.data.records.Problems` (naming the path and what was expected):

- :func:`read_list_file`: a list file of ``<relative path> <label>`` lines (RegDB's split files,
  LLCM's training lists);
- :func:`identity_folders`: the ``<pid:04d>`` folders of one camera folder and the sorted image
  files of each (SYSU-MM01's cameras, LLCM's test cameras).

And :func:`detect_dataset`, which tells the three layouts apart by their top-level folders (for
the commands that take any dataset folder: extract, data check, the ranking picture).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from reference.data.records import Problems
from reference.errors import VireidError

#: a camera folder's name, ``cam<k>`` [protocol]
CAM_DIR = re.compile(r"cam(\d+)")
#: an identity folder's name, ``<pid:04d>`` [protocol]
PID_DIR = re.compile(r"\d{4}")

#: one line of a list file: its relative path, its label and the path's parts
Line = tuple[str, int, tuple[str, ...]]


def read_list_file(
    root: Path,
    path: Path,
    *,
    kind: str,
    expected: str,
    path_problem: Callable[[str, tuple[str, ...]], str | None],
    problems: Problems,
) -> list[Line]:
    """The lines of a list file, each ``<relative path> <label>`` naming an existing file.

    ``kind`` names the file in messages (``split file``, ``training list``), ``expected`` ends
    every message, ``path_problem(rel, parts)`` says what is wrong with a path (``None``: nothing).
    Blank lines are skipped; a line with a problem is reported and left out.
    """
    if not path.is_file():
        problems.add(f"{path}: missing {kind}; {expected}")
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(f"{path}: cannot read {kind} ({exc}); {expected}")
        return []
    lines: list[Line] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{path}: line {lineno}"
        if len(fields) != 2:
            problems.add(f"{where}: {len(fields)} fields in {line!r}; {expected}")
            continue
        rel, label_text = fields
        parts = PurePosixPath(rel).parts
        wrong = path_problem(rel, parts)
        if wrong is not None:
            problems.add(f"{where}: path {rel!r} {wrong}; {expected}")
            continue
        if not (label_text.isascii() and label_text.isdigit()):
            problems.add(f"{where}: label {label_text!r} is not a non-negative integer; {expected}")
            continue
        if rel in seen:
            problems.add(f"{where}: {rel!r} is listed twice; expected each image once")
            continue
        seen.add(rel)
        if not (root / rel).is_file():
            problems.add(f"{where}: names {root / rel}, which is not there; expected an image file")
            continue
        lines.append((rel, int(label_text), parts))
    return lines


def identity_folders(
    cam_dir: Path, problems: Problems, *, suffix: str = ""
) -> dict[int, tuple[str, ...]]:
    """``{pid: sorted file names}`` of the ``<pid:04d>`` folders of one camera folder.

    Reported: an entry that is not such a folder, an entry of an identity folder that is not a
    file (ending in ``suffix`` when one is given), an identity folder left empty. In collect mode
    the rest of the folder is kept.
    """
    images = f"{suffix} image files" if suffix else "image files"
    files: dict[int, tuple[str, ...]] = {}
    for pid_dir in sorted(cam_dir.iterdir()):
        if not (pid_dir.is_dir() and PID_DIR.fullmatch(pid_dir.name)):
            problems.add(f"{pid_dir}: unexpected entry; expected identity folders named <pid:04d>")
            continue
        names = sorted(p.name for p in pid_dir.iterdir())
        bad = [n for n in names if not (n.endswith(suffix) and (pid_dir / n).is_file())]
        if bad:
            where = pid_dir / bad[0]
            problems.add(f"{where}: unexpected entry; expected only {images} in an identity folder")
            names = [n for n in names if n not in bad]
        if not names:
            problems.add(f"{pid_dir}: empty identity folder; expected at least one image")
            continue
        files[int(pid_dir.name)] = tuple(names)
    return files


#: the folders that tell the three layouts apart (the readers validate the rest)
_LAYOUT_MARKS: dict[str, tuple[str, ...]] = {
    "sysu": ("cam1", "cam3", "exp"),
    "regdb": ("Visible", "Thermal", "idx"),
    "llcm": ("test_vis", "test_nir", "idx"),
}
_EXPECTED_FOLDERS = (
    "expected a SYSU-MM01 folder (cam1..cam6, exp/), a RegDB folder (Visible/, Thermal/, idx/) "
    "or an LLCM folder (test_vis/, test_nir/, idx/)"
)


def detect_dataset(root: str | Path) -> str:
    """``"sysu"``, ``"regdb"`` or ``"llcm"`` from the folders in ``root`` (the readers check the
    rest)."""
    root = Path(root)
    if not root.is_dir():
        raise VireidError(f"{root}: not a directory; {_EXPECTED_FOLDERS}")
    found = [
        name for name, marks in _LAYOUT_MARKS.items() if all((root / m).is_dir() for m in marks)
    ]
    if len(found) != 1:
        what = "several layouts" if found else "no layout"
        raise VireidError(f"{root}: cannot tell the dataset ({what} found); {_EXPECTED_FOLDERS}")
    return found[0]
