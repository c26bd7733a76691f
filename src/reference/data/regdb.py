"""RegDB reader: one trial's train or test split as :class:`ImageRecords`.

Spec: ``spec/data/regdb.md``. Layout [protocol]: ``Visible/<pid>/...``, ``Thermal/<pid>/...`` and
``idx/{train,test}_{visible,thermal}_{t}.txt`` for trials t = 1..10, one line per image:
``<relative path> <label>``. Rows: the visible file's lines in order, then the thermal file's;
``camids`` 1 (visible) / 2 (thermal); ``frames`` the 0-based line index in its split file; ``pids``
the ``<pid>`` folder; ``labels`` the files' labels compacted to 0..C-1 in increasing order (the
identity map when they already are 0..C-1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from reference.checks import check_integer, check_path
from reference.data.layout import read_list_file
from reference.data.modality import Modality
from reference.data.records import ImageRecords, Problems
from reference.datasets import REGDB_TRIALS
from reference.errors import VireidError

TRIALS = tuple(range(1, REGDB_TRIALS + 1))
SPLITS = ("train", "test")
# split-file word -> (folder, modality, camera id)
MODALITIES: dict[str, tuple[str, Modality, int]] = {
    "visible": ("Visible", Modality.VISIBLE, 1),
    "thermal": ("Thermal", Modality.INFRARED, 2),
}

Entry = tuple[str, int, int]  # relative path, file label, pid


def split_file(root: Path, split: str, modality: str, trial: int) -> Path:
    return Path(root) / "idx" / f"{split}_{modality}_{trial}.txt"


def check_trial(trial: object) -> int:
    return check_integer(trial, "trial", low=1, high=REGDB_TRIALS, expected="an integer 1..10")


def check_layout(root: str | Path, problems: Problems) -> Path:
    """Root, ``Visible/``, ``Thermal/`` and ``idx/`` must be folders."""
    root = check_path(root, "root")
    if not root.is_dir():
        raise VireidError(
            f"{root}: not a directory; expected a RegDB folder (Visible/, Thermal/, idx/)"
        )
    for name in ("Visible", "Thermal", "idx"):
        if not (root / name).is_dir():
            problems.add(f"{root / name}: missing folder; expected Visible/, Thermal/ and idx/")
    return root


def read_split_file(root: Path, path: Path, modality: str, problems: Problems) -> list[Entry]:
    """Parse one idx file; every line ``<folder>/<pid>/<file> <label>`` naming an existing image."""
    folder = MODALITIES[modality][0]

    def path_problem(rel: str, parts: tuple[str, ...]) -> str | None:
        if (
            len(parts) < 3
            or parts[0] != folder
            or not (parts[1].isascii() and parts[1].isdigit())
            or ".." in parts
            or rel.startswith("/")
        ):
            return f"is not of the form {folder}/<pid>/<file>"
        return None

    lines = read_list_file(
        root,
        path,
        kind="split file",
        expected=f"expected lines '{folder}/<pid>/<file> <label>'",
        path_problem=path_problem,
        problems=problems,
    )
    return [(rel, label, int(parts[1])) for rel, label, parts in lines]


def check_split(
    files: dict[str, Path], entries: dict[str, list[Entry]], problems: Problems
) -> None:
    """One label per identity across both files, and every identity in both modalities."""
    label_of: dict[int, tuple[int, Path]] = {}
    pid_of: dict[int, tuple[int, Path]] = {}
    for modality, rows in entries.items():
        for rel, label, pid in rows:
            if pid in label_of and label_of[pid][0] != label:
                problems.add(
                    f"{files[modality]}: {rel!r} has label {label} but identity {pid} has label "
                    f"{label_of[pid][0]} in {label_of[pid][1]}; expected one label per identity"
                )
            if label in pid_of and pid_of[label][0] != pid:
                problems.add(
                    f"{files[modality]}: label {label} is used for identity {pid} and identity "
                    f"{pid_of[label][0]} (in {pid_of[label][1]}); expected one identity per label"
                )
            label_of.setdefault(pid, (label, files[modality]))
            pid_of.setdefault(label, (pid, files[modality]))
    pids = {m: {pid for _, _, pid in rows} for m, rows in entries.items()}
    for here, there in (("visible", "thermal"), ("thermal", "visible")):
        only = sorted(pids[here] - pids[there])
        if only:
            problems.add(
                f"{files[here]}: identities {only} have {here} images but none in "
                f"{files[there]}; expected every identity in both modalities"
            )


def read_regdb(root: str | Path, *, trial: int, split: Literal["train", "test"]) -> ImageRecords:
    """The images of one RegDB trial (1..10) and split, validated on open."""
    trial = check_trial(trial)
    if split not in SPLITS:
        raise VireidError(f"split: expected 'train' or 'test', got {split!r}")
    problems = Problems(collect=False)
    root = check_layout(root, problems)
    files = {m: split_file(root, split, m, trial) for m in MODALITIES}
    entries = {m: read_split_file(root, files[m], m, problems) for m in MODALITIES}
    check_split(files, entries, problems)
    rank = {
        label: i
        for i, label in enumerate(sorted({e[1] for rows in entries.values() for e in rows}))
    }
    paths: list[Path] = []
    cols: dict[str, list[int]] = {k: [] for k in ("labels", "pids", "camids", "modality", "frames")}
    for modality, rows in entries.items():
        _, tag, camid = MODALITIES[modality]
        for frame, (rel, label, pid) in enumerate(rows):
            paths.append(root / rel)
            for key, value in zip(cols, (rank[label], pid, camid, int(tag), frame), strict=True):
                cols[key].append(value)
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in cols.items()}
    return ImageRecords(paths=tuple(paths), root=root, **arrays)
