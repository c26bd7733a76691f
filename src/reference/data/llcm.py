"""LLCM reader: the training lists and the test folders as :class:`ImageRecords`.

Spec: ``spec/data/llcm.md``. Layout [protocol] (``../shared/papers.md``, LLCM):

- ``idx/train_vis.txt``, ``idx/train_nir.txt``: one line per image, ``<relative path> <label>``;
- ``idx/test_id.txt``: one line of comma-separated test identities;
- ``test_vis/cam1..cam9/<pid:04d>/<file>`` and ``test_nir/cam{1,2,4..9}/<pid:04d>/<file>``.

A camera carries both modalities (camera ``k`` of ``test_vis`` and of ``test_nir`` is one
physical camera), so every row has its modality beside its camera. Test rows are ordered by
identity (zero-padded strings), then visible before infrared, then camera, then the sorted file
list of the folder; ``frames`` is the position in that sorted list (the evaluation features
format). Training rows: the visible list in file order, then the infrared list; ``pids`` the
files' labels, ``labels`` those compacted to 0..C-1, ``camids`` the ``cam<k>`` component of the
path (0 when the path has none), ``frames`` the line index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reference.checks import check_path
from reference.data.layout import CAM_DIR, identity_folders, read_list_file
from reference.data.modality import Modality
from reference.data.records import ImageRecords, Problems
from reference.data.sysu import read_id_file
from reference.datasets import LLCM_INFRARED_CAMERAS, LLCM_VISIBLE_CAMERAS
from reference.errors import VireidError

#: test folder of each modality and the cameras it has [protocol] (no infrared camera 3)
TEST_FOLDERS: dict[Modality, tuple[str, tuple[int, ...]]] = {
    Modality.VISIBLE: ("test_vis", LLCM_VISIBLE_CAMERAS),
    Modality.INFRARED: ("test_nir", LLCM_INFRARED_CAMERAS),
}
TRAIN_LISTS: dict[Modality, str] = {
    Modality.VISIBLE: "idx/train_vis.txt",
    Modality.INFRARED: "idx/train_nir.txt",
}
TEST_ID_FILE = "idx/test_id.txt"

Folder = tuple[int, int, int]  # (modality, camera, pid)


@dataclass(frozen=True)
class LlcmTest:
    """What :func:`scan_llcm_test` found: sorted file names per folder and the test ids."""

    root: Path
    files: dict[Folder, tuple[str, ...]]
    test_ids: tuple[int, ...]


def check_root(root: str | Path) -> Path:
    root = check_path(root, "root")
    if not root.is_dir():
        raise VireidError(
            f"{root}: not a directory; expected an LLCM folder (idx/, test_vis/, test_nir/)"
        )
    return root


def folder_path(root: Path, modality: int, cam: int, pid: int) -> Path:
    return root / TEST_FOLDERS[Modality(modality)][0] / f"cam{cam}" / f"{pid:04d}"


def _scan_modality(
    root: Path, modality: Modality, problems: Problems
) -> dict[Folder, tuple[str, ...]]:
    name, cameras = TEST_FOLDERS[modality]
    base = root / name
    files: dict[Folder, tuple[str, ...]] = {}
    if not base.is_dir():
        problems.add(f"{base}: missing folder; expected test_vis/ and test_nir/ in {root}")
        return files
    allowed = ", ".join(f"cam{c}" for c in cameras)
    for cam in cameras:  # a camera folder lost in a copy would shrink the test set unseen
        if not (base / f"cam{cam}").is_dir():
            problems.add(
                f"{base / f'cam{cam}'}: missing camera folder; expected {allowed} in {base}"
            )
    for cam_dir in sorted(base.iterdir()):
        m = CAM_DIR.fullmatch(cam_dir.name)
        if not (cam_dir.is_dir() and m and int(m.group(1)) in cameras):
            problems.add(f"{cam_dir}: unexpected entry; expected camera folders {allowed}")
            continue
        cam = int(m.group(1))
        for pid, names in identity_folders(cam_dir, problems).items():
            files[(int(modality), cam, pid)] = names
    return files


def scan_llcm_test(root: str | Path, problems: Problems | None = None) -> LlcmTest:
    """List and validate the test part: folders, ``idx/test_id.txt``, both modalities per id.

    Problems (each names the path and what was expected): a missing ``test_vis``/``test_nir``
    or camera folder of either; an entry that is not a camera folder of that modality
    (``test_nir/cam3`` included); an entry that is not a ``<pid:04d>`` folder; a non-file or
    an empty identity folder; a missing or malformed ``test_id.txt``; a test id without images
    in one of the modalities; an identity folder whose id is not a test id. With
    ``problems=None`` the first one raises.
    """
    problems = problems if problems is not None else Problems(collect=False)
    root = check_root(root)
    files: dict[Folder, tuple[str, ...]] = {}
    for modality in TEST_FOLDERS:
        files.update(_scan_modality(root, modality, problems))
    ids = read_id_file(root / TEST_ID_FILE, problems) or ()
    have: dict[int, set[int]] = {}
    for modality, _, pid in files:
        have.setdefault(pid, set()).add(modality)
    for pid in ids:
        for modality, (name, _) in TEST_FOLDERS.items():
            if int(modality) not in have.get(pid, set()):
                problems.add(
                    f"identity {pid} listed in {root / TEST_ID_FILE} has no image in "
                    f"{root / name}/cam*/{pid:04d}; expected images in both test_vis and test_nir"
                )
    stray = sorted(set(have) - set(ids)) if ids else []
    if stray:
        problems.add(
            f"{root}: identity folders {stray[:5]} are not listed in {root / TEST_ID_FILE}; "
            "expected test folders of the test identities only"
        )
    return LlcmTest(root=root, files=files, test_ids=tuple(sorted(ids, key=lambda p: f"{p:04d}")))


def llcm_test_records(layout: LlcmTest) -> ImageRecords:
    """Every test image: id (zero-padded order), visible then infrared, camera, sorted file."""
    paths: list[Path] = []
    cols: dict[str, list[int]] = {k: [] for k in ("labels", "pids", "camids", "modality", "frames")}
    for label, pid in enumerate(layout.test_ids):
        for modality, (_, cameras) in TEST_FOLDERS.items():
            for cam in cameras:
                names = layout.files.get((int(modality), cam, pid), ())
                folder = folder_path(layout.root, modality, cam, pid)
                for frame, name in enumerate(names):
                    paths.append(folder / name)
                    values = (label, pid, cam, int(modality), frame)
                    for key, value in zip(cols, values, strict=True):
                        cols[key].append(value)
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in cols.items()}
    return ImageRecords(paths=tuple(paths), root=layout.root, **arrays)


def read_llcm_test(root: str | Path) -> ImageRecords:
    """The LLCM test images of both modalities, validated on open (see :func:`scan_llcm_test`).

    ``pids``, ``camids``, ``modality`` and ``frames`` are the fields of the features file.
    """
    return llcm_test_records(scan_llcm_test(root))


Entry = tuple[str, int, int]  # relative path, label, camera (0 = none in the path)


def read_train_list(root: Path, modality: Modality, problems: Problems) -> list[Entry]:
    """Parse one training list; every line ``<relative path> <label>`` naming an existing file."""
    path = root / TRAIN_LISTS[modality]
    lines = read_list_file(
        root,
        path,
        kind="training list",
        expected="expected lines '<relative path> <label>'",
        path_problem=_path_problem,
        problems=problems,
    )
    entries: list[Entry] = []
    for rel, label, parts in lines:
        cams = [int(m.group(1)) for p in parts if (m := CAM_DIR.fullmatch(p))]
        entries.append((rel, label, cams[-1] if cams else 0))
    return entries


def _path_problem(rel: str, parts: tuple[str, ...]) -> str | None:
    if rel.startswith("/") or ".." in parts or len(parts) < 2:
        return "is not a relative path inside ROOT"
    return None


def check_train(entries: dict[Modality, list[Entry]], root: Path, problems: Problems) -> None:
    """Every training label in both lists (each identity has both modalities)."""
    labels = {m: {e[1] for e in rows} for m, rows in entries.items()}
    for here, there in (
        (Modality.VISIBLE, Modality.INFRARED),
        (Modality.INFRARED, Modality.VISIBLE),
    ):
        only = sorted(labels[here] - labels[there])
        if only:
            problems.add(
                f"{root / TRAIN_LISTS[here]}: labels {only[:5]} have no image in "
                f"{root / TRAIN_LISTS[there]}; expected every identity in both modalities"
            )


def read_llcm_train(root: str | Path) -> ImageRecords:
    """The LLCM training images (both lists), validated on open."""
    problems = Problems(collect=False)
    root = check_root(root)
    entries = {m: read_train_list(root, m, problems) for m in TRAIN_LISTS}
    check_train(entries, root, problems)
    rank = {lab: i for i, lab in enumerate(sorted({e[1] for r in entries.values() for e in r}))}
    paths: list[Path] = []
    cols: dict[str, list[int]] = {k: [] for k in ("labels", "pids", "camids", "modality", "frames")}
    for modality, rows in entries.items():
        for frame, (rel, label, cam) in enumerate(rows):
            paths.append(root / rel)
            for key, value in zip(
                cols, (rank[label], label, cam, int(modality), frame), strict=True
            ):
                cols[key].append(value)
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in cols.items()}
    return ImageRecords(paths=tuple(paths), root=root, **arrays)
