"""SynthVI: a generated visible-infrared person re-identification dataset, in the SYSU-MM01,
RegDB and LLCM folder layouts (LLCM: ``synthvi_llcm.py``).

Spec: ``spec/data/synthvi.md``. The generative model is in ``synthvi_render.py``, the split
planning in ``synthvi_plan.py``, the atomic folder commit in ``dataset_folder.py``; this module
lays the rendered images out as the real datasets do.

Folders are written in the SYSU-MM01 layout (``cam1..cam6/<pid:04d>/<frame:04d>.jpg`` and
``exp/{train,val,test,available}_id.txt``) or the RegDB layout (``Visible/<pid>/*.bmp``,
``Thermal/<pid>/*.bmp``, ``idx/{train,test}_{visible,thermal}_{t}.txt``). The whole folder is
built in a temporary sibling folder and moved into place, so a reader never sees half a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reference.checks import is_integer
from reference.data.dataset_folder import write_dataset_folder
from reference.data.synthvi_plan import (
    MAX_IDS,
    MAX_SEED,
    MIN_IDS_REGDB,
    MIN_IDS_SYSU,
    check_ids,
    check_synth_int,
    regdb_split,
    sysu_plan,
    sysu_split_sizes,
)
from reference.data.synthvi_render import S_IMAGES, camera, identities, poses, rng, write_images
from reference.datasets import (
    REGDB_IMAGES_PER_ID,
    REGDB_TRIALS,
    SYSU_CAMERAS,
    SYSU_IR_CAMERAS,
    SYSU_RGB_CAMERAS,
)
from reference.errors import VireidError

__all__ = [
    "DEFAULT_IDS",
    "MAX_IDS",
    "MAX_SEED",
    "MIN_IDS_REGDB",
    "MIN_IDS_SYSU",
    "REGDB_IMAGES_PER_ID",
    "REGDB_TRIALS",
    "SYSU_IR_CAMERAS",
    "SYSU_RGB_CAMERAS",
    "SynthVIInfo",
    "regdb_split",
    "sysu_split_sizes",
    "write_regdb",
    "write_synthvi",
    "write_sysu",
]

DEFAULT_IDS = 40
_MIN_SIZE = (16, 8)
_MAX_SIZE = 1024


def check_image_size(image_size: object) -> tuple[int, int]:
    """``(height, width)`` integers within the sizes SynthVI renders."""
    ok = (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(is_integer(v) for v in image_size)
    )
    if ok:
        h, w = (int(v) for v in image_size)
        ok = _MIN_SIZE[0] <= h <= _MAX_SIZE and _MIN_SIZE[1] <= w <= _MAX_SIZE
    if not ok:
        raise VireidError(
            f"image_size: expected (height, width) integers with {_MIN_SIZE[0]} <= height <= "
            f"{_MAX_SIZE} and {_MIN_SIZE[1]} <= width <= {_MAX_SIZE}, got {image_size!r}"
        )
    return h, w


def write_synthvi(
    out: Path,
    layout: str,
    *,
    ids: int = DEFAULT_IDS,
    seed: int = 0,
    image_size: tuple[int, int] = (64, 32),
    force: bool = False,
) -> SynthVIInfo:
    """Write a SynthVI dataset in ``layout`` (``"sysu"``, ``"regdb"``, ``"llcm"``) to ``out``;
    return what was written (counts per camera, modality or folder; identities per split)."""
    writers = {"sysu": _write_sysu, "regdb": _write_regdb, "llcm": _write_llcm}
    if layout not in writers:
        raise VireidError(f"layout: expected 'sysu', 'regdb' or 'llcm', got {layout!r}")
    ids = ids if layout == "llcm" else check_ids(ids, layout)  # LLCM: checked by its plan
    seed = check_synth_int("seed", seed, 0, MAX_SEED)
    size = check_image_size(image_size)
    return writers[layout](Path(out), ids, seed, size, force)


def write_sysu(out: Path, **options: Any) -> Path:
    """:func:`write_synthvi` in the SYSU-MM01 layout; return ``out``. Options: ``ids``
    (default :data:`DEFAULT_IDS`), ``seed`` (0), ``image_size`` ((64, 32)), ``force`` (False)."""
    return write_synthvi(out, "sysu", **options).root


def write_regdb(out: Path, **options: Any) -> Path:
    """:func:`write_synthvi` in the RegDB layout; return ``out`` (options as :func:`write_sysu`)."""
    return write_synthvi(out, "regdb", **options).root


@dataclass(frozen=True)
class SynthVIInfo:
    """What a writer produced (for the command's report and for tests)."""

    root: Path
    ids: int
    images: dict[str, int]  # per camera ("cam1".."cam6") or modality ("Visible", "Thermal")
    split: dict[str, int]  # identities per split


def _write_sysu(out: Path, ids: int, seed: int, size: tuple[int, int], force: bool) -> SynthVIInfo:
    """The SYSU-MM01 layout of :func:`write_synthvi` (counts per camera and split)."""
    split, counts = sysu_plan(ids, seed)
    ident = identities(range(1, ids + 1), seed)
    images: dict[str, int] = {}

    def fill(tmp: Path) -> None:
        for cam in SYSU_CAMERAS:
            cam_model = camera(seed, cam, infrared=cam in SYSU_IR_CAMERAS)
            pids = np.array([p for p in counts if counts[p][cam - 1] > 0], dtype=np.int64)
            n = np.array([counts[int(p)][cam - 1] for p in pids], dtype=np.int64)
            rows = np.repeat(pids - 1, n)
            poses_ = poses(rng(seed, S_IMAGES, cam), rows.shape[0])
            rels = [
                f"cam{cam}/{pid:04d}/{f:04d}.jpg"
                for pid, k in zip(pids, n, strict=True)
                for f in range(1, k + 1)
            ]
            write_images(tmp, rels, ident, rows, cam_model, poses_, size, "JPEG")
            (tmp / f"cam{cam}").mkdir(exist_ok=True)
            images[f"cam{cam}"] = int(rows.shape[0])
        exp = tmp / "exp"
        exp.mkdir()
        lists = {**split, "available": list(range(1, ids + 1))}
        for name, pid_list in lists.items():
            (exp / f"{name}_id.txt").write_text(",".join(map(str, pid_list)) + "\n")

    write_dataset_folder(out, force, (*(f"cam{c}" for c in SYSU_CAMERAS), "exp"), fill)
    return SynthVIInfo(out, ids, images, {k: len(v) for k, v in split.items()})


def _write_llcm(out: Path, ids: int, seed: int, size: tuple[int, int], force: bool) -> SynthVIInfo:
    """The LLCM layout (``synthvi_llcm.py``): images per top-level folder, ids per split."""
    from reference.data.synthvi_llcm import llcm_plan, write_llcm_layout

    llcm_plan(ids, seed)  # checks ids before anything is written
    images, split = write_llcm_layout(out, ids, seed, size, force)
    return SynthVIInfo(out, ids, images, split)


def _regdb_name(female: bool, front: bool, modality: str, frame: int, pid: int) -> str:
    return (
        f"{'female' if female else 'male'}_{'front' if front else 'back'}_{modality}_"
        f"{frame:05d}_{pid}.bmp"
    )


def _write_regdb(out: Path, ids: int, seed: int, size: tuple[int, int], force: bool) -> SynthVIInfo:
    """The RegDB layout of :func:`write_synthvi` (counts per modality and split)."""
    ident = identities(range(1, ids + 1), seed)
    k = REGDB_IMAGES_PER_ID
    rows = np.repeat(np.arange(ids), k)
    # The real pairs come from one dual-camera rig: image j of both modalities shares its pose.
    poses_ = poses(rng(seed, S_IMAGES, 0), rows.shape[0])
    front = rng(seed, S_IMAGES, 1).random(rows.shape[0]) < 0.5
    names: dict[str, list[str]] = {"Visible": [], "Thermal": []}

    def fill(tmp: Path) -> None:
        for cam, (folder, letter) in enumerate((("Visible", "v"), ("Thermal", "t")), start=1):
            cam_model = camera(seed, 100 + cam, infrared=folder == "Thermal")
            rels = [
                f"{folder}/{row + 1}/"
                + _regdb_name(bool(ident.female[row]), bool(front[i]), letter, i + 1, int(row) + 1)
                for i, row in enumerate(rows)
            ]
            write_images(tmp, rels, ident, rows, cam_model, poses_, size, "BMP")
            names[folder] = rels
        idx = tmp / "idx"
        idx.mkdir()
        for trial in range(1, REGDB_TRIALS + 1):
            train, test = regdb_split(ids, seed, trial)
            for split_name, pid_list in (("train", train), ("test", test)):
                label = {p: i for i, p in enumerate(pid_list)}
                for folder in ("Visible", "Thermal"):
                    lines = [
                        f"{rel} {label[int(rel.split('/')[1])]}"
                        for rel in names[folder]
                        if int(rel.split("/")[1]) in label
                    ]
                    fname = f"{split_name}_{folder.lower()}_{trial}.txt"
                    (idx / fname).write_text("\n".join(lines) + "\n")

    write_dataset_folder(out, force, ("Visible", "Thermal", "idx"), fill)
    return SynthVIInfo(
        out,
        ids,
        {"Visible": ids * k, "Thermal": ids * k},
        {"train": ids // 2, "test": ids - ids // 2},
    )
