"""Image records: one row per image of a dataset split, the readers' common output.

Spec: ``spec/data/records.md``. A reader (``sysu.py``, ``regdb.py``) turns a dataset folder into
:class:`ImageRecords`: the image paths and, per image, the class label (0..C-1, the same identity
gets the same label in both modalities), the dataset's own identity id, the dataset camera, the
modality (:class:`~reference.data.modality.Modality`) and the frame index. The sampler and the
decoded cache work on these rows; nothing downstream parses folder names again.

:class:`Problems` lets the same validation code either raise at the first problem (the readers) or
collect every problem (``vireid data check``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reference.data.modality import Modality
from reference.errors import VireidError

_INT_FIELDS = ("labels", "pids", "camids", "modality", "frames")


def _frozen_int64(value: object, name: str, n: int) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.dtype.kind not in "iu":
        raise VireidError(f"{name}: expected an integer array, got dtype {value.dtype}")
    arr = np.asarray(value)
    if arr.size and arr.dtype.kind not in "iu":
        raise VireidError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.int64, copy=True).reshape(arr.shape)
    if arr.shape != (n,):
        raise VireidError(f"{name}: expected shape ({n},) (one value per path), got {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class ImageRecords:
    """One row per image; every array has one int64 entry per path (read-only copies).

    ``root`` is the dataset folder the paths live in (used for messages and to fingerprint the
    decoded cache by relative path); ``None`` when the records do not come from one folder.
    """

    paths: tuple[Path, ...]
    labels: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    modality: np.ndarray
    frames: np.ndarray
    root: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.paths, (str, Path)) or not isinstance(self.paths, Sequence):
            raise VireidError(f"paths: expected a sequence of paths, got {type(self.paths)!r}")
        paths = tuple(Path(p) for p in self.paths)
        object.__setattr__(self, "paths", paths)
        n = len(paths)
        for name in _INT_FIELDS:
            object.__setattr__(self, name, _frozen_int64(getattr(self, name), name, n))
        if self.root is not None:
            object.__setattr__(self, "root", Path(self.root))
        if n == 0:
            return
        if self.labels.min() < 0:
            raise VireidError("labels: expected class labels >= 0, got a negative label")
        bad = sorted(set(np.unique(self.modality).tolist()) - {Modality.VISIBLE, Modality.INFRARED})
        if bad:
            raise VireidError(
                f"modality: expected base modality tags 0 (visible) or 1 (infrared), got {bad}"
            )
        # label <-> identity must be one-to-one: the same person has one label everywhere.
        pairs = np.unique(np.stack([self.labels, self.pids]), axis=1)
        for row, (name, other) in enumerate((("labels", "pids"), ("pids", "labels"))):
            values, counts = np.unique(pairs[row], return_counts=True)
            if (counts > 1).any():
                v = int(values[counts > 1][0])
                many = pairs[1 - row][pairs[row] == v].tolist()
                raise VireidError(
                    f"{name}: value {v} goes with several {other} {many}; expected one "
                    f"{other[:-1]} per {name[:-1]}"
                )

    def __len__(self) -> int:
        return len(self.paths)

    def __eq__(self, other: object) -> bool:
        """Same paths and columns, row by row (``root`` is not compared)."""
        if not isinstance(other, ImageRecords):
            return NotImplemented
        return self.paths == other.paths and all(
            np.array_equal(getattr(self, k), getattr(other, k)) for k in _INT_FIELDS
        )

    __hash__ = None  # type: ignore[assignment]  # numpy columns: not hashable

    @property
    def num_classes(self) -> int:
        """``max(labels) + 1`` (0 when empty): the classifier size for these labels."""
        return int(self.labels.max()) + 1 if len(self) else 0

    def subset(self, index: object) -> ImageRecords:
        """The rows selected by ``index`` (integer indices, a boolean mask or a slice), in order.

        Labels are kept as they are (not re-compacted), so a subset's rows keep their classes.
        """
        if isinstance(index, slice):
            idx = np.arange(len(self))[index]
        else:
            idx = np.asarray(index)
            if idx.dtype == np.bool_:
                if idx.shape != (len(self),):
                    raise VireidError(
                        f"index: expected a boolean mask of shape ({len(self)},), got {idx.shape}"
                    )
                idx = np.flatnonzero(idx)
            elif idx.size == 0:
                idx = idx.astype(np.int64)
            elif idx.dtype.kind not in "iu" or idx.ndim != 1:
                raise VireidError(
                    f"index: expected 1-D integer indices, a boolean mask or a slice, got "
                    f"dtype {idx.dtype} shape {idx.shape}"
                )
            if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
                raise VireidError(f"index: expected indices in [0, {len(self)}), got out-of-range")
        return ImageRecords(
            paths=tuple(self.paths[int(i)] for i in idx),
            labels=self.labels[idx],
            pids=self.pids[idx],
            camids=self.camids[idx],
            modality=self.modality[idx],
            frames=self.frames[idx],
            root=self.root,
        )


class Problems:
    """Where validation code reports a problem: raise at once, or collect them all.

    ``Problems(collect=False)`` (the readers) raises :class:`VireidError` on the first ``add``;
    ``Problems(collect=True)`` (``vireid data check``) keeps every message in ``items``.
    """

    def __init__(self, *, collect: bool) -> None:
        self.collect = collect
        self.items: list[str] = []

    def add(self, message: str) -> None:
        if not self.collect:
            raise VireidError(message)
        self.items.append(message)

    def __bool__(self) -> bool:
        return bool(self.items)
