"""The ``vireid synth`` and ``vireid data check`` commands: the only code of the data area that
prints.

Spec: ``spec/data/synthvi.md`` and ``spec/data/check.md`` (sections on the command line).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from reference.data import synthvi
from reference.data.check import check_llcm, check_regdb, check_sysu
from reference.data.layout import detect_dataset
from reference.datasets import REGDB_TRIALS, SYSU_IR_CAMERAS, SYSU_RGB_CAMERAS
from reference.errors import VireidError


def synth_command(*, layout: str, out: Path, ids: int | None, seed: int, force: bool) -> int:
    """``vireid synth``: write a SynthVI folder, print what was written, return 0."""
    n = synthvi.DEFAULT_IDS if ids is None else ids
    info = synthvi.write_synthvi(out, layout, ids=n, seed=seed, image_size=(64, 32), force=force)
    if layout == "sysu":
        rgb = sum(info.images[f"cam{c}"] for c in SYSU_RGB_CAMERAS)
        ir = sum(info.images[f"cam{c}"] for c in SYSU_IR_CAMERAS)
        per_cam = ", ".join(f"{c} {info.images[c]}" for c in sorted(info.images))
        print(
            f"wrote SynthVI (SYSU-MM01 layout) to {info.root}: {info.ids} identities "
            f"(train {info.split['train']}, val {info.split['val']}, test {info.split['test']}), "
            f"{rgb} RGB and {ir} IR images ({per_cam})"
        )
    elif layout == "llcm":
        per_folder = ", ".join(f"{k} {info.images.get(k, 0)}" for k in sorted(info.images))
        print(
            f"wrote SynthVI (LLCM layout) to {info.root}: {info.ids} identities "
            f"(train {info.split['train']}, test {info.split['test']}), {per_folder}"
        )
    else:
        print(
            f"wrote SynthVI (RegDB layout) to {info.root}: {info.ids} identities, "
            f"{info.images['Visible']} visible and {info.images['Thermal']} thermal images, "
            f"{REGDB_TRIALS} trials of {info.split['train']} train / {info.split['test']} test "
            f"identities"
        )
    return 0


def _checked(done: int, total: int) -> None:
    print(f"checked {done}/{total} images", file=sys.stderr, flush=True)


def check_command(*, root: Path, dataset: str | None = None) -> int:
    """``vireid data check``: print the report of ``check_sysu``/``check_regdb``/``check_llcm``;
    return 0 if no problem, else 1. ``dataset`` defaults to the one ``root``'s folders show
    (``layout.detect_dataset``, as ``vireid extract`` reads them)."""
    checks = {"sysu": check_sysu, "regdb": check_regdb, "llcm": check_llcm}
    if dataset is None:
        try:
            dataset = detect_dataset(root)
        except VireidError as exc:  # a folder too broken to tell: the user can say
            raise VireidError(f"{exc}; or name it: --dataset sysu|regdb|llcm") from None
    if dataset not in checks:
        raise VireidError(f"dataset: expected 'sysu', 'regdb' or 'llcm', got {dataset!r}")
    workers = min(4, os.cpu_count() or 1)
    report = checks[dataset](root, workers=workers, progress=_checked)
    print(report.format())
    return 0 if report.ok else 1
