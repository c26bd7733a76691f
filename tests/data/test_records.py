"""ImageRecords and Problems (spec/data/records.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.data.records import ImageRecords, Problems
from reference.errors import VireidError


def _fields(n: int = 4, **overrides: object) -> dict:
    values: dict = dict(
        paths=tuple(Path(f"/d/cam{1 + i % 2}/{i:04d}.jpg") for i in range(n)),
        labels=np.arange(n) // 2,
        pids=np.arange(n) // 2 + 10,
        camids=np.array([1, 3] * (n // 2)),
        modality=np.array([0, 1] * (n // 2)),
        frames=np.zeros(n, dtype=np.int32),
    )
    values.update(overrides)
    return values


def test_fields_become_read_only_int64_copies():
    src = _fields()
    rec = ImageRecords(**src)
    assert len(rec) == 4 and rec.num_classes == 2
    for name in ("labels", "pids", "camids", "modality", "frames"):
        arr = getattr(rec, name)
        assert arr.dtype == np.int64 and not arr.flags.writeable
    src["labels"][0] = 99  # the caller's array is not shared
    assert rec.labels[0] == 0
    assert all(isinstance(p, Path) for p in rec.paths)


def test_paths_as_strings_and_empty_records():
    rec = ImageRecords(**_fields(paths=["/a.jpg", "/b.jpg", "/c.jpg", "/d.jpg"]))
    assert rec.paths[1] == Path("/b.jpg")
    empty = ImageRecords(**{k: v[:0] for k, v in _fields().items()})
    assert len(empty) == 0 and empty.num_classes == 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"labels": np.arange(3)}, "labels: expected shape (4,) (one value per path), got (3,)"),
        ({"frames": np.zeros((4, 1))}, "frames: expected an integer array, got dtype float64"),
        ({"camids": np.ones((2, 2), dtype=int)}, "camids: expected shape (4,)"),
        ({"labels": np.array([0, 0, -1, 1])}, "labels: expected class labels >= 0"),
        (
            {"modality": np.array([0, 1, 2, 1])},
            "modality: expected base modality tags 0 (visible) or 1 (infrared), got [2]",
        ),
        (
            {"pids": np.array([10, 11, 11, 11])},
            "labels: value 0 goes with several pids [10, 11]; expected one pid per label",
        ),
        (
            {"labels": np.array([0, 0, 1, 0]), "pids": np.array([10, 10, 11, 11])},
            "labels: value 0 goes with several pids [10, 11]; expected one pid per label",
        ),
        (
            {"labels": np.array([0, 1, 2, 3]), "pids": np.array([10, 10, 11, 11])},
            "pids: value 10 goes with several labels [0, 1]; expected one label per pid",
        ),
        ({"paths": "/a.jpg"}, "paths: expected a sequence of paths"),
    ],
)
def test_bad_fields_name_the_field(override, message):
    with pytest.raises(VireidError) as info:
        ImageRecords(**_fields(**override))
    assert str(info.value).startswith(message)


@st.composite
def records_and_index(draw):
    n = draw(st.integers(0, 12))
    n_ids = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_ids, n)
    rec = ImageRecords(
        paths=tuple(Path(f"/x/{i}.jpg") for i in range(n)),
        labels=labels,
        pids=labels * 7 + 3,
        camids=rng.integers(1, 7, n),
        modality=rng.integers(0, 2, n),
        frames=rng.integers(0, 20, n),
    )
    kind = draw(st.sampled_from(["indices", "mask", "slice"]))
    if kind == "indices":
        index = rng.integers(0, n, draw(st.integers(0, 8))) if n else np.zeros(0, dtype=int)
    elif kind == "mask":
        index = rng.random(n) < 0.5
    else:
        index = slice(draw(st.integers(-3, 3)) or None, None, draw(st.sampled_from([1, 2, -1])))
    return rec, index


@given(records_and_index())
def test_subset_rows_match_a_plain_loop(case):
    rec, index = case
    sub = rec.subset(index)
    if isinstance(index, slice):
        chosen = list(range(len(rec)))[index]
    elif np.asarray(index).dtype == np.bool_:
        chosen = [i for i in range(len(rec)) if index[i]]
    else:
        chosen = [int(i) for i in index]
    assert len(sub) == len(chosen)
    for row, i in enumerate(chosen):
        assert sub.paths[row] == rec.paths[i]
        for name in ("labels", "pids", "camids", "modality", "frames"):
            assert getattr(sub, name)[row] == getattr(rec, name)[i]
    # labels are not re-compacted, so the class count can only stay or shrink
    assert sub.num_classes <= rec.num_classes


def test_subset_labels_usable_as_tensor_on_device(device):
    rec = ImageRecords(**_fields(n=6))
    sub = rec.subset(rec.modality == 1)
    labels = torch.tensor(sub.labels, device=device)  # a copy: the arrays are read-only
    assert labels.tolist() == [0, 1, 2] and labels.device.type == torch.device(device).type


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (np.array([True, False]), "index: expected a boolean mask of shape (4,), got (2,)"),
        (np.array([0.5]), "index: expected 1-D integer indices, a boolean mask or a slice"),
        (np.array([[0, 1]]), "index: expected 1-D integer indices, a boolean mask or a slice"),
        (np.array([4]), "index: expected indices in [0, 4), got out-of-range"),
    ],
)
def test_bad_subset_index(index, message):
    with pytest.raises(VireidError) as info:
        ImageRecords(**_fields()).subset(index)
    assert str(info.value).startswith(message)


def test_problems_raise_or_collect():
    strict = Problems(collect=False)
    with pytest.raises(VireidError, match=r"^a: first$"):
        strict.add("a: first")
    collect = Problems(collect=True)
    assert not collect
    collect.add("a: first")
    collect.add("b: second")
    assert collect and collect.items == ["a: first", "b: second"]


def test_equality_compares_rows():
    a = ImageRecords(**_fields())
    assert a == ImageRecords(**_fields()) and a == a.subset(slice(None))
    assert a != a.subset([1, 0, 2, 3]) and a != ImageRecords(**_fields(frames=np.ones(4, int)))
    assert a != "records"
    with pytest.raises(TypeError):
        hash(a)
