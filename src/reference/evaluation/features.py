"""The features file: the one boundary between the learning side and the scoring side.

Spec: ``spec/evaluation/features.md``.

A features file is an uncompressed or compressed NumPy ``.npz`` archive with, for ``n`` images:

- ``features``: float (n, d), finite;
- ``pids``: integer (n,), identity labels, >= 0;
- ``camids``: integer (n,): 1..6 for SYSU-MM01 (RGB 1, 2, 4, 5; IR 3, 6), 1 = visible and
  2 = thermal for RegDB, 1..9 for LLCM;
- ``frames``: integer (n,), >= 0: for SYSU-MM01 and LLCM (required) the 0-based position of the
  image in the sorted file list of its folder; optional for RegDB;
- ``modalities``: integer (n,), 0 = visible, 1 = infrared: required for LLCM (its cameras carry
  both modalities); optional for SYSU-MM01 and RegDB, where it must agree with the camera.

Every violation raises :class:`VireidError` naming the file (or ``source``) and the field.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from reference.checks import check_choice, check_file
from reference.datasets import (
    LLCM_VISIBLE_CAMERAS,
    REGDB_CAMERAS,
    SYSU_CAMERAS,
    SYSU_IR_CAMERAS,
)
from reference.errors import VireidError
from reference.fileio import atomic_write_bytes

Dataset = Literal["sysu", "regdb", "llcm"]

DATASET_CAMERAS: dict[str, tuple[int, ...]] = {
    "sysu": SYSU_CAMERAS,
    "regdb": REGDB_CAMERAS,
    "llcm": LLCM_VISIBLE_CAMERAS,  # 1..9 (the infrared folders have no camera 3)
}
#: the modality a camera implies (0 visible, 1 infrared); LLCM cameras imply none
CAMERA_MODALITY: dict[str, dict[int, int]] = {
    "sysu": {c: int(c in SYSU_IR_CAMERAS) for c in SYSU_CAMERAS},
    "regdb": {1: 0, 2: 1},
}
MODALITIES = (0, 1)
REQUIRED_KEYS = ("features", "pids", "camids")
#: keys each dataset needs beyond REQUIRED_KEYS
DATASET_KEYS: dict[str, tuple[str, ...]] = {
    "sysu": ("frames",),
    "regdb": (),
    "llcm": ("frames", "modalities"),
}


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Features of ``n`` images with their identity, camera and (SYSU-MM01) frame position.

    Construct it through :func:`load_features` or :meth:`create`, which validate; the arrays are
    made read-only so a validated set cannot be changed afterwards.
    """

    features: np.ndarray  # (n, d) float16/32/64
    pids: np.ndarray  # (n,) int64
    camids: np.ndarray  # (n,) int64
    frames: np.ndarray | None  # (n,) int64, or None (RegDB only)
    dataset: Dataset
    modalities: np.ndarray | None = None  # (n,) int64 0/1; required for LLCM

    @classmethod
    def create(
        cls,
        features: np.ndarray,
        pids: np.ndarray,
        camids: np.ndarray,
        frames: np.ndarray | None = None,
        *,
        dataset: Dataset,
        modalities: np.ndarray | None = None,
        source: str = "features",
    ) -> FeatureSet:
        """Validate the arrays (see the module docstring) and return a read-only FeatureSet."""
        arrays = {"features": features, "pids": pids, "camids": camids, "frames": frames}
        return _validated({**arrays, "modalities": modalities}, dataset=dataset, source=source)

    def __len__(self) -> int:
        return int(self.pids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def subset(self, rows: np.ndarray) -> FeatureSet:
        """The rows ``rows`` (indices) as a new FeatureSet, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return FeatureSet(
            features=_readonly(self.features[rows]),
            pids=_readonly(self.pids[rows]),
            camids=_readonly(self.camids[rows]),
            frames=None if self.frames is None else _readonly(self.frames[rows]),
            dataset=self.dataset,
            modalities=None if self.modalities is None else _readonly(self.modalities[rows]),
        )


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _check_dataset(dataset: str) -> None:
    check_choice(dataset, "dataset", DATASET_CAMERAS, expected="one of 'sysu', 'regdb', 'llcm'")


def _int_field(value: object, name: str, n: int | None, source: str) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "iu":
        raise VireidError(
            f"{source}: field '{name}': expected an integer array, got dtype {a.dtype}"
        )
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        want = f"({n},)" if n is not None else "(n,)"
        raise VireidError(f"{source}: field '{name}': expected shape {want}, got {a.shape}")
    if a.dtype.kind == "u" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise VireidError(f"{source}: field '{name}': values exceed the int64 range")
    return a.astype(np.int64)


def _validated(arrays: dict[str, object], *, dataset: str, source: str) -> FeatureSet:
    _check_dataset(dataset)
    feats = np.asarray(arrays["features"])
    if feats.dtype.kind != "f":
        raise VireidError(
            f"{source}: field 'features': expected a float array, got dtype {feats.dtype}"
        )
    if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
        raise VireidError(
            f"{source}: field 'features': expected shape (n, d) with n >= 1 and d >= 1, "
            f"got {feats.shape}"
        )
    n = feats.shape[0]
    finite = np.isfinite(feats).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise VireidError(
            f"{source}: field 'features': row {row} has NaN or inf values "
            f"({int((~finite).sum())} rows affected); expected finite numbers"
        )
    pids = _int_field(arrays["pids"], "pids", n, source)
    if pids.size and pids.min() < 0:
        row = int(np.flatnonzero(pids < 0)[0])
        raise VireidError(
            f"{source}: field 'pids': expected identities >= 0, got {pids[row]} at row {row}"
        )
    camids = _int_field(arrays["camids"], "camids", n, source)
    allowed = DATASET_CAMERAS[dataset]
    unknown = ~np.isin(camids, allowed)
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise VireidError(
            f"{source}: field 'camids': unknown camera id {camids[row]} at row {row}; "
            f"expected one of {', '.join(map(str, allowed))} for {dataset}"
        )
    modalities = _modalities(arrays.get("modalities"), camids, n, dataset, source)
    frames_raw = arrays.get("frames")
    frames: np.ndarray | None
    if frames_raw is None:
        if "frames" in DATASET_KEYS[dataset]:
            raise VireidError(
                f"{source}: missing field 'frames' (required for {dataset}: the 0-based position "
                "of each image in the sorted file list of its camera/identity folder)"
            )
        frames = None
    else:
        frames = _int_field(frames_raw, "frames", n, source)
        if frames.size and frames.min() < 0:
            row = int(np.flatnonzero(frames < 0)[0])
            raise VireidError(
                f"{source}: field 'frames': expected positions >= 0, got {frames[row]} at row {row}"
            )
        columns, names = [camids, pids, frames], "camid, pid, frame"
        if modalities is not None:
            columns, names = [modalities, *columns], "modality, " + names
        keys = np.stack(columns, axis=1)
        _, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
        if (counts > 1).any():
            dup = keys[first[np.flatnonzero(counts > 1)[0]]]
            rows = np.flatnonzero((keys == dup).all(axis=1))
            raise VireidError(
                f"{source}: duplicated ({names}) = ({', '.join(map(str, dup.tolist()))}) "
                f"at rows {', '.join(map(str, rows.tolist()))}; expected each image once"
            )
    return FeatureSet(
        features=_readonly(feats),
        pids=_readonly(pids),
        camids=_readonly(camids),
        frames=None if frames is None else _readonly(frames),
        dataset=dataset,  # type: ignore[arg-type]
        modalities=None if modalities is None else _readonly(modalities),
    )


def _modalities(
    value: object, camids: np.ndarray, n: int, dataset: str, source: str
) -> np.ndarray | None:
    """The checked ``modalities`` field: required for LLCM, else optional and camera-consistent."""
    if value is None:
        if "modalities" in DATASET_KEYS[dataset]:
            raise VireidError(
                f"{source}: missing field 'modalities' (required for {dataset}: 0 = visible, "
                "1 = infrared per image; its cameras carry both modalities)"
            )
        return None
    mods = _int_field(value, "modalities", n, source)
    bad = ~np.isin(mods, MODALITIES)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise VireidError(
            f"{source}: field 'modalities': unknown modality {mods[row]} at row {row}; "
            "expected 0 (visible) or 1 (infrared)"
        )
    implied = CAMERA_MODALITY.get(dataset)
    if implied is not None:
        want = np.vectorize(implied.__getitem__, otypes=[np.int64])(camids) if n else mods
        wrong = mods != want
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            raise VireidError(
                f"{source}: field 'modalities': row {row} has modality {mods[row]} but camera "
                f"{camids[row]} is {'infrared' if want[row] else 'visible'} in {dataset}"
            )
    return mods


def load_features(path: str | os.PathLike[str], dataset: Dataset) -> FeatureSet:
    """Read and validate a features file; errors name the file and the field."""
    _check_dataset(dataset)
    path = check_file(
        path, "path", expected="an .npz features file",
        missing="features file not found (expected an .npz file)",
    )  # fmt: skip
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            missing = [k for k in REQUIRED_KEYS if k not in keys]
            if missing:
                raise VireidError(
                    f"{path}: missing field '{missing[0]}' (a features file holds "
                    f"features, pids, camids and, for sysu, frames; found: "
                    f"{', '.join(sorted(keys)) or 'nothing'})"
                )
            arrays: dict[str, object] = {
                k: archive[k] for k in (*REQUIRED_KEYS, "frames", "modalities") if k in keys
            }
    except VireidError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise VireidError(
            f"{path}: cannot read features file (expected an .npz archive): {exc}"
        ) from exc
    return _validated(arrays, dataset=dataset, source=str(path))


def save_features(path: str | os.PathLike[str], fs: FeatureSet, *, overwrite: bool = False) -> Path:
    """Write ``fs`` as a features file, atomically; an existing file only with ``overwrite``."""
    buffer = io.BytesIO()
    arrays = {"features": fs.features, "pids": fs.pids, "camids": fs.camids}
    if fs.frames is not None:
        arrays["frames"] = fs.frames
    if fs.modalities is not None:
        arrays["modalities"] = fs.modalities
    np.savez(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)
