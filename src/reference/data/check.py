"""``vireid data check ROOT --dataset sysu|regdb|llcm``: counts beside the published ones, problems.

Spec: ``spec/data/check.md``. The check runs the readers' validation in collecting mode (every
problem, not only the first), decodes every image file of the dataset to find unreadable or
truncated ones (progress on stderr), and prints a table of counts next to the published figures
(``../shared/papers.md``). Count differences are reported, not problems (a SynthVI folder has other
counts). Exit status: 0 no problem, 1 at least one problem; a ROOT that is not a folder is a usage
error (``VireidError``, status 2 from the command line).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from reference.data import llcm as _llcm
from reference.data import regdb as _regdb
from reference.data import sysu as _sysu
from reference.data.cache import decode_image
from reference.data.records import Problems
from reference.datasets import (
    LLCM_IMAGES,
    LLCM_TEST_IDS,
    LLCM_TRAIN_IDS,
    REGDB_IDS,
    REGDB_IDS_PER_SPLIT,
    REGDB_IMAGES_PER_ID,
    SYSU_IDS,
    SYSU_IMAGES,
)
from reference.errors import VireidError

# Published figures [protocol] (../shared/papers.md).
SYSU_PUBLISHED = {
    **{f"ids {split}": n for split, n in SYSU_IDS.items()},
    **{f"images {modality}": n for modality, n in SYSU_IMAGES.items()},
}
REGDB_PUBLISHED = {
    "ids": REGDB_IDS,
    "ids per split": REGDB_IDS_PER_SPLIT,
    "images per id per modality": REGDB_IMAGES_PER_ID,
}
REGDB_IMAGES_PER_SPLIT = REGDB_IDS_PER_SPLIT * REGDB_IMAGES_PER_ID  # per modality, split, trial
LLCM_PUBLISHED = {"ids train": LLCM_TRAIN_IDS, "ids test": LLCM_TEST_IDS, "images": LLCM_IMAGES}


@dataclass
class CheckReport:
    """Rows ``(what, found, published or None)`` and every problem found."""

    dataset: str
    root: Path
    counts: list[tuple[str, int | str, int | None]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        width = max([len(c[0]) for c in self.counts] + [10])
        lines = [
            f"{self.dataset} folder {self.root}",
            f"{'count':<{width}}  {'found':>9}  {'published':>9}",
        ]
        for what, found, published in self.counts:
            pub = "-" if published is None else str(published)
            mark = "" if published is None or found == published else "  (differs)"
            lines.append(f"{what:<{width}}  {found!s:>9}  {pub:>9}{mark}")
        lines.append(f"problems: {len(self.problems)}")
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)


def _decode_all(paths: list[Path], problems: Problems, *, workers: int, progress: bool) -> None:
    """Decode every file; each failure is a problem naming the file (in path order)."""

    def one(path: Path) -> str | None:
        try:
            decode_image(path, None)
        except VireidError as exc:
            return str(exc)
        return None

    step = max(1, len(paths) // 20)
    run: Callable = map
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None
    if pool is not None:
        run = pool.map
    try:
        for done, message in enumerate(run(one, paths), start=1):
            if message is not None:
                problems.add(message)
            if progress and (done % step == 0 or done == len(paths)):
                print(f"checked {done}/{len(paths)} images", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.shutdown()


def check_sysu(root: str | Path, *, workers: int = 0, progress: bool = False) -> CheckReport:
    """Validate a SYSU-MM01 folder, decode every image, count ids and images."""
    problems = Problems(collect=True)
    layout = _sysu.scan_sysu(root, problems, require_available=True)
    report = CheckReport("SYSU-MM01", layout.root)
    for name in (*_sysu.SPLITS, "available"):
        found: int | str = len(layout.splits[name]) if name in layout.splits else "missing"
        report.counts.append((f"ids {name}", found, SYSU_PUBLISHED[f"ids {name}"]))
    if "available" in layout.splits:
        listed = {pid for name in _sysu.SPLITS for pid in layout.splits.get(name, ())}
        unlisted = len(listed - set(layout.splits["available"]))
        report.counts.append(("split ids not in available_id.txt", unlisted, 0))
    folder_ids = {pid for _, pid in layout.files}
    report.counts.append(("ids with an image folder", len(folder_ids), None))
    per_cam = {cam: 0 for cam in _sysu.CAMERA_MODALITY}
    for (cam, _), names in layout.files.items():
        per_cam[cam] += len(names)
    for cam in _sysu.CAMERA_MODALITY:
        kind = "visible" if cam in _sysu.RGB_CAMERAS else "infrared"
        report.counts.append((f"images cam{cam} ({kind})", per_cam[cam], None))
    for kind, cams in (("visible", _sysu.RGB_CAMERAS), ("infrared", _sysu.IR_CAMERAS)):
        total = sum(per_cam[c] for c in cams)
        report.counts.append((f"images {kind}", total, SYSU_PUBLISHED[f"images {kind}"]))
    paths = [
        layout.root / f"cam{cam}" / f"{pid:04d}" / name
        for (cam, pid), names in sorted(layout.files.items())
        for name in names
    ]
    _decode_all(paths, problems, workers=workers, progress=progress)
    report.problems = problems.items
    return report


def check_regdb(root: str | Path, *, workers: int = 0, progress: bool = False) -> CheckReport:
    """Validate a RegDB folder and all 10 trials' split files, decode every image, count."""
    problems = Problems(collect=True)
    root = _regdb.check_layout(root, problems)
    report = CheckReport("RegDB", root)
    images: list[Path] = []
    for modality, (folder, _, _) in _regdb.MODALITIES.items():
        base = root / folder
        if not base.is_dir():
            continue
        per_id: list[int] = []
        for pid_dir in sorted(base.iterdir()):
            if not (pid_dir.is_dir() and pid_dir.name.isascii() and pid_dir.name.isdigit()):
                problems.add(f"{pid_dir}: unexpected entry; expected identity folders <pid>")
                continue
            files = sorted(p for p in pid_dir.iterdir() if p.is_file())
            per_id.append(len(files))
            images.extend(files)
        report.counts.append((f"ids {modality}", len(per_id), REGDB_PUBLISHED["ids"]))
        spread = f"{min(per_id)}..{max(per_id)}" if per_id else "-"
        if per_id and min(per_id) == max(per_id):
            spread = per_id[0]
        report.counts.append(
            (f"images per id {modality}", spread, REGDB_PUBLISHED["images per id per modality"])
        )
    for trial in _regdb.TRIALS:
        ids: dict[str, set[int]] = {}
        for split in _regdb.SPLITS:
            files = {m: _regdb.split_file(root, split, m, trial) for m in _regdb.MODALITIES}
            entries = {
                m: _regdb.read_split_file(root, files[m], m, problems) for m in _regdb.MODALITIES
            }
            _regdb.check_split(files, entries, problems)
            ids[split] = {pid for rows in entries.values() for _, _, pid in rows}
            report.counts.append(
                (f"trial {trial} {split} ids", len(ids[split]), REGDB_PUBLISHED["ids per split"])
            )
            for m, rows in entries.items():
                report.counts.append(
                    (f"trial {trial} {split} images {m}", len(rows), REGDB_IMAGES_PER_SPLIT)
                )
        both = sorted(ids["train"] & ids["test"])
        if both:
            problems.add(
                f"{_regdb.split_file(root, 'test', 'visible', trial)}: identities {both} are "
                f"also in trial {trial}'s train split; expected disjoint train and test ids"
            )
    _decode_all(images, problems, workers=workers, progress=progress)
    report.problems = problems.items
    return report


def check_llcm(root: str | Path, *, workers: int = 0, progress: bool = False) -> CheckReport:
    """Validate an LLCM folder (training lists, test folders, test ids), decode, count."""
    problems = Problems(collect=True)
    root = _llcm.check_root(root)
    test = _llcm.scan_llcm_test(root, problems)
    train = {m: _llcm.read_train_list(root, m, problems) for m in _llcm.TRAIN_LISTS}
    _llcm.check_train(train, root, problems)
    report = CheckReport("LLCM", root)
    train_ids = {e[1] for rows in train.values() for e in rows}
    report.counts.append(("ids train", len(train_ids), LLCM_PUBLISHED["ids train"]))
    report.counts.append(("ids test", len(test.test_ids), LLCM_PUBLISHED["ids test"]))
    images: list[Path] = []
    for modality, (name, cameras) in _llcm.TEST_FOLDERS.items():
        rows = train[modality]
        report.counts.append((f"images train {name[5:]}", len(rows), None))
        images.extend(root / rel for rel, _, _ in rows)
        for cam in cameras:
            n = 0
            for (m, c, pid), names in sorted(test.files.items()):
                if (m, c) == (int(modality), cam):
                    n += len(names)
                    images.extend(_llcm.folder_path(root, m, c, pid) / f for f in names)
            report.counts.append((f"images {name}/cam{cam}", n, None))
    report.counts.append(("images", len(images), LLCM_PUBLISHED["images"]))
    _decode_all(images, problems, workers=workers, progress=progress)
    report.problems = problems.items
    return report
