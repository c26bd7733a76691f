"""SYSU-MM01 reader: the training set and the test pools as :class:`ImageRecords`.

Spec: ``spec/data/sysu.md``. Layout [protocol]: ``cam1..cam6/<pid:04d>/<frame>.jpg`` and
``exp/{train,val,test,available}_id.txt`` (one line of comma-separated ids); RGB cameras 1, 2, 4, 5
and IR cameras 3, 6. Rows are ordered by sorted pid, then camera 1..6, then the sorted file list of
the ``cam/pid`` folder; ``frames`` is the 0-based position in that sorted list (the evaluation
features format). Labels: ``label = rank of pid among the sorted pids of the split``, the same in
both modalities. Validation happens on open; see :func:`scan_sysu`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from reference.checks import check_path
from reference.data.layout import CAM_DIR, identity_folders
from reference.data.modality import Modality
from reference.data.records import ImageRecords, Problems
from reference.datasets import SYSU_CAMERAS, SYSU_IR_CAMERAS, SYSU_RGB_CAMERAS
from reference.errors import VireidError

CAMERA_MODALITY: dict[int, Modality] = {
    cam: Modality.INFRARED if cam in SYSU_IR_CAMERAS else Modality.VISIBLE for cam in SYSU_CAMERAS
}
RGB_CAMERAS = SYSU_RGB_CAMERAS
IR_CAMERAS = SYSU_IR_CAMERAS
SPLITS = ("train", "val", "test")
SPLIT_FILES = {name: f"exp/{name}_id.txt" for name in (*SPLITS, "available")}
IMAGE_SUFFIX = ".jpg"


@dataclass(frozen=True)
class SysuLayout:
    """What :func:`scan_sysu` found: the sorted image names per (camera, pid) and the split ids."""

    root: Path
    files: dict[tuple[int, int], tuple[str, ...]]
    splits: dict[str, tuple[int, ...]]  # train, val, test (and available when readable)


def read_id_file(path: Path, problems: Problems) -> tuple[int, ...] | None:
    """Parse a SYSU-MM01 split file: one line of comma-separated positive integer ids."""
    expected = "expected one line of comma-separated identity ids"
    if not path.is_file():
        problems.add(f"{path}: missing split file; {expected}")
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(f"{path}: cannot read split file ({exc}); {expected}")
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        problems.add(f"{path}: found {len(lines)} non-empty lines; {expected}")
        return None
    ids: list[int] = []
    for pos, token in enumerate(lines[0].split(","), start=1):
        token = token.strip()
        if not (token.isascii() and token.isdigit()) or int(token) < 1:
            problems.add(f"{path}: entry {pos} is {token!r}, not a positive integer; {expected}")
            return None
        ids.append(int(token))
    dup = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dup:
        problems.add(f"{path}: ids {dup} are listed more than once; {expected}, each once")
        return None
    return tuple(ids)


def _scan_cameras(root: Path, problems: Problems) -> dict[tuple[int, int], tuple[str, ...]]:
    files: dict[tuple[int, int], tuple[str, ...]] = {}
    for entry in sorted(root.iterdir()):
        m = CAM_DIR.fullmatch(entry.name)
        if m and int(m.group(1)) not in CAMERA_MODALITY:
            problems.add(f"{entry}: unknown camera folder; SYSU-MM01 has cam1..cam6 only")
    for cam in CAMERA_MODALITY:
        cam_dir = root / f"cam{cam}"
        if not cam_dir.is_dir():
            problems.add(f"{cam_dir}: missing camera folder; expected cam1..cam6 in {root}")
            continue
        for pid, names in identity_folders(cam_dir, problems, suffix=IMAGE_SUFFIX).items():
            files[(cam, pid)] = names
    return files


def scan_sysu(
    root: str | Path, problems: Problems | None = None, *, require_available: bool = False
) -> SysuLayout:
    """List and validate a SYSU-MM01 folder.

    Problems (each names the path and what was expected): root not a folder; a missing
    ``cam1..cam6`` folder; a ``camN`` folder with N outside 1..6; an entry in a camera folder
    that is not a ``<pid:04d>`` folder; a non-``.jpg`` entry or an empty identity folder; a
    missing or malformed split file; ids listed in two splits; a split id with no image folder,
    or with images in one modality only. With ``problems=None`` the first one raises.
    """
    problems = problems if problems is not None else Problems(collect=False)
    root = check_path(root, "root")
    if not root.is_dir():
        raise VireidError(
            f"{root}: not a directory; expected a SYSU-MM01 folder (cam1..cam6, exp/)"
        )
    files = _scan_cameras(root, problems)
    splits: dict[str, tuple[int, ...]] = {}
    wanted = (*SPLITS, "available") if require_available else SPLITS
    for name in wanted:
        ids = read_id_file(root / SPLIT_FILES[name], problems)
        if ids is not None:
            splits[name] = ids
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            if a in splits and b in splits:
                both = sorted(set(splits[a]) & set(splits[b]))
                if both:
                    problems.add(
                        f"{root / SPLIT_FILES[b]}: ids {both} are also in {SPLIT_FILES[a]}; "
                        f"expected disjoint train/val/test splits"
                    )
    cams_of: dict[int, set[int]] = {}
    for cam, pid in files:
        cams_of.setdefault(pid, set()).add(cam)
    for name in SPLITS:
        for pid in splits.get(name, ()):
            cams = cams_of.get(pid, set())
            where = f"identity {pid} listed in {root / SPLIT_FILES[name]}"
            if not cams:
                problems.add(f"{where} has no image folder {pid:04d} in any of cam1..cam6")
            elif not cams & set(IR_CAMERAS):
                problems.add(
                    f"{where} has visible images only; expected infrared images in "
                    f"cam3/{pid:04d} or cam6/{pid:04d} too"
                )
            elif not cams & set(RGB_CAMERAS):
                problems.add(
                    f"{where} has infrared images only; expected visible images in "
                    f"cam1, cam2, cam4 or cam5/{pid:04d} too"
                )
    return SysuLayout(root=root, files=files, splits=splits)


def records_for_ids(layout: SysuLayout, ids: tuple[int, ...] | list[int]) -> ImageRecords:
    """All images of ``ids``: sorted pid, camera 1..6, sorted file name; label = pid rank."""
    paths: list[Path] = []
    cols: dict[str, list[int]] = {k: [] for k in ("labels", "pids", "camids", "modality", "frames")}
    for label, pid in enumerate(sorted(set(ids))):
        for cam, modality in CAMERA_MODALITY.items():
            for frame, name in enumerate(layout.files.get((cam, pid), ())):
                paths.append(layout.root / f"cam{cam}" / f"{pid:04d}" / name)
                for key, value in zip(cols, (label, pid, cam, int(modality), frame), strict=True):
                    cols[key].append(value)
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in cols.items()}
    return ImageRecords(paths=tuple(paths), root=layout.root, **arrays)


def read_sysu_train(
    root: str | Path, *, ids: Literal["train+val", "train"] = "train+val"
) -> ImageRecords:
    """The SYSU-MM01 training images: train+val ids (395 on the real split) or train only (296)."""
    if ids not in ("train+val", "train"):
        raise VireidError(f"ids: expected 'train+val' or 'train', got {ids!r}")
    layout = scan_sysu(root)
    chosen = layout.splits["train"] + (layout.splits["val"] if ids == "train+val" else ())
    return records_for_ids(layout, chosen)


def read_sysu_test(root: str | Path) -> ImageRecords:
    """Every image of every test id in all six cameras (query pool: cams 3, 6; gallery: 1, 2, 4, 5).

    ``pids``, ``camids`` and ``frames`` are the fields of the evaluation features file.
    """
    layout = scan_sysu(root)
    return records_for_ids(layout, layout.splits["test"])
