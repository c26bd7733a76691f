"""The features file (spec/evaluation/features.md): round trips, validation, exact messages."""

from __future__ import annotations

import dataclasses
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.features import FeatureSet, load_features, save_features


def _sysu_arrays(n: int = 4, d: int = 3) -> dict[str, np.ndarray]:
    return {
        "features": np.arange(n * d, dtype=np.float32).reshape(n, d),
        "pids": np.array([6, 6, 10, 10][:n]),
        "camids": np.array([1, 3, 3, 6][:n]),
        "frames": np.array([0, 0, 1, 0][:n]),
    }


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@given(
    n=st.integers(1, 30),
    d=st.integers(1, 6),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    pid_dtype=st.sampled_from([np.int32, np.int64, np.uint16, np.uint8]),
    seed=st.integers(0, 2**32 - 1),
    dataset=st.sampled_from(["sysu", "regdb"]),
    with_frames=st.booleans(),
)
def test_round_trip_keeps_every_value(
    tmp_path_factory, n, d, dtype, pid_dtype, seed, dataset, with_frames
):
    rng = np.random.default_rng(seed)
    cams = (1, 2, 3, 4, 5, 6) if dataset == "sysu" else (1, 2)
    feats = rng.standard_normal((n, d)).astype(dtype)
    pids = rng.integers(0, 200, n).astype(pid_dtype)
    camids = rng.choice(cams, n).astype(pid_dtype)
    frames = np.arange(n)  # unique, so (cam, pid, frame) never repeats
    if dataset == "regdb" and not with_frames:
        frames = None
    fs = FeatureSet.create(feats, pids, camids, frames, dataset=dataset)
    path = tmp_path_factory.mktemp("rt") / "f.npz"
    save_features(path, fs)
    back = load_features(path, dataset)
    assert back.features.dtype == dtype
    np.testing.assert_array_equal(back.features, feats)
    assert back.pids.dtype == np.int64 and back.pids.tolist() == pids.astype(int).tolist()
    assert back.camids.tolist() == camids.astype(int).tolist()
    if frames is None:
        assert back.frames is None
    else:
        assert back.frames.tolist() == frames.tolist()
    assert back.dataset == dataset and len(back) == n and back.dim == d


def test_arrays_are_read_only_and_subset_keeps_rows():
    fs = FeatureSet.create(**_sysu_arrays(), dataset="sysu")
    with pytest.raises(ValueError):
        fs.features[0, 0] = 1.0
    with pytest.raises(ValueError):
        fs.pids[0] = 1
    sub = fs.subset(np.array([3, 1]))
    assert sub.pids.tolist() == [10, 6] and sub.camids.tolist() == [6, 3]
    assert sub.frames.tolist() == [0, 0]
    np.testing.assert_array_equal(sub.features, fs.features[[3, 1]])


def test_a_feature_set_is_frozen_and_compared_by_identity():
    fs = FeatureSet.create(**_sysu_arrays(), dataset="sysu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fs.pids = fs.pids[:1]  # type: ignore[misc]
    # arrays have no single truth value: a set is itself, and hashable as an object
    same_rows = fs.subset(np.arange(len(fs)))
    assert fs == fs and fs != same_rows
    assert len({fs, same_rows, fs}) == 2


def test_extra_keys_are_ignored_and_compressed_archives_are_read(tmp_path):
    path = tmp_path / "c.npz"
    np.savez_compressed(path, **_sysu_arrays(), paths=np.array(["a", "b", "c", "d"]))
    assert len(load_features(path, "sysu")) == 4


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    fs = FeatureSet.create(**_sysu_arrays(), dataset="sysu")
    path = tmp_path / "f.npz"
    save_features(path, fs)
    before = path.read_bytes()
    fs2 = FeatureSet.create(**{**_sysu_arrays(), "pids": np.array([7, 7, 8, 8])}, dataset="sysu")
    with pytest.raises(VireidError) as info:
        save_features(path, fs2)
    assert str(info.value) == (
        f"{path}: file exists; pass overwrite=True (CLI: --force) to replace it"
    )
    assert path.read_bytes() == before
    save_features(path, fs2, overwrite=True)
    assert load_features(path, "sysu").pids.tolist() == [7, 7, 8, 8]
    assert [p.name for p in tmp_path.iterdir()] == ["f.npz"]  # no temporary left behind


# --- bad input: exact messages ----------------------------------------------------------------


def _create_error(dataset="sysu", **changes) -> str:
    arrays = {**_sysu_arrays(), **changes}
    with pytest.raises(VireidError) as info:
        FeatureSet.create(**arrays, dataset=dataset, source="x.npz")
    return str(info.value)


def test_nan_and_inf_name_the_first_bad_row():
    feats = _sysu_arrays()["features"].copy()
    feats[2, 1] = np.nan
    feats[3, 0] = np.inf
    assert _create_error(features=feats) == (
        "x.npz: field 'features': row 2 has NaN or inf values (2 rows affected); "
        "expected finite numbers"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"features": np.zeros((4, 3), dtype=np.int64)},
            "x.npz: field 'features': expected a float array, got dtype int64",
        ),
        (
            {"features": np.zeros(4)},
            "x.npz: field 'features': expected shape (n, d) with n >= 1 and d >= 1, got (4,)",
        ),
        (
            {"features": np.zeros((0, 3))},
            "x.npz: field 'features': expected shape (n, d) with n >= 1 and d >= 1, got (0, 3)",
        ),
        (
            {"features": np.zeros((4, 0))},
            "x.npz: field 'features': expected shape (n, d) with n >= 1 and d >= 1, got (4, 0)",
        ),
        (
            {"pids": np.array([6.0, 6.0, 10.0, 10.0])},
            "x.npz: field 'pids': expected an integer array, got dtype float64",
        ),
        (
            {"pids": np.array([True, False, True, True])},
            "x.npz: field 'pids': expected an integer array, got dtype bool",
        ),
        ({"pids": np.array([6, 6, 10])}, "x.npz: field 'pids': expected shape (4,), got (3,)"),
        (
            {"pids": np.array([6, -1, 10, 10])},
            "x.npz: field 'pids': expected identities >= 0, got -1 at row 1",
        ),
        (
            {"pids": np.array([0, 0, -3, 10])},  # identity 0 is valid: the first negative
            "x.npz: field 'pids': expected identities >= 0, got -3 at row 2",
        ),
        (
            {"pids": np.array([6, 6, 2**63, 10], dtype=np.uint64)},
            "x.npz: field 'pids': values exceed the int64 range",
        ),
        (
            {"camids": np.array([[1, 3, 3, 6]])},
            "x.npz: field 'camids': expected shape (4,), got (1, 4)",
        ),
        (
            {"camids": np.array([1, 3, 0, 6])},
            "x.npz: field 'camids': unknown camera id 0 at row 2; expected one of "
            "1, 2, 3, 4, 5, 6 for sysu",
        ),
        (
            {"frames": np.array([0, 0, -2, 0])},
            "x.npz: field 'frames': expected positions >= 0, got -2 at row 2",
        ),
        (
            {"frames": None},
            "x.npz: missing field 'frames' (required for sysu: the 0-based position of each "
            "image in the sorted file list of its camera/identity folder)",
        ),
    ],
)
def test_bad_fields_are_named(changes, message):
    assert _create_error(**changes) == message


def test_an_unknown_modality_is_named():
    mods = np.array([0, 1, 2, 0])
    message = _create_error(dataset="llcm", camids=np.array([1, 2, 4, 5]), modalities=mods)
    assert message == (
        "x.npz: field 'modalities': unknown modality 2 at row 2; expected 0 (visible) or 1 "
        "(infrared)"
    )


def test_edge_values_that_are_accepted():
    one = FeatureSet.create(**_sysu_arrays(n=1), dataset="sysu")  # a single image
    assert len(one) == 1 and one.dim == 3
    big = np.array([6, 6, 2**63 - 1, 10], dtype=np.uint64)  # the largest int64, as uint64
    fs = FeatureSet.create(**{**_sysu_arrays(), "pids": big}, dataset="sysu")
    assert fs.pids.dtype == np.int64 and int(fs.pids[2]) == 2**63 - 1


def test_duplicated_image_names_camera_identity_frame_and_rows():
    # rows 1 and 2 are both camera 3, identity 6, frame 0
    assert _create_error(pids=np.array([6, 6, 6, 10]), frames=np.array([0, 0, 0, 0])) == (
        "x.npz: duplicated (camid, pid, frame) = (3, 6, 0) at rows 1, 2; expected each image once"
    )


def test_regdb_knows_only_cameras_1_and_2():
    arrays = {**_sysu_arrays(), "camids": np.array([1, 2, 3, 1])}
    with pytest.raises(VireidError) as info:
        FeatureSet.create(**arrays, dataset="regdb", source="t.npz")
    assert str(info.value) == (
        "t.npz: field 'camids': unknown camera id 3 at row 2; expected one of 1, 2 for regdb"
    )


def test_unknown_dataset():
    with pytest.raises(VireidError) as info:
        FeatureSet.create(**_sysu_arrays(), dataset="market")
    assert str(info.value) == "dataset: expected one of 'sysu', 'regdb', 'llcm', got 'market'"
    with pytest.raises(VireidError) as info:  # not a dictionary key: not a TypeError either
        FeatureSet.create(**_sysu_arrays(), dataset=["sysu"])
    assert str(info.value) == "dataset: expected one of 'sysu', 'regdb', 'llcm', got ['sysu']"


def test_missing_key_in_file(tmp_path):
    arrays = _sysu_arrays()
    del arrays["camids"]
    path = _write_npz(tmp_path / "m.npz", **arrays)
    with pytest.raises(VireidError) as info:
        load_features(path, "sysu")
    assert str(info.value) == (
        f"{path}: missing field 'camids' (a features file holds features, pids, camids and, "
        "for sysu, frames; found: features, frames, pids)"
    )


def test_missing_frames_in_file_only_matters_for_sysu(tmp_path):
    arrays = _sysu_arrays()
    del arrays["frames"]
    arrays["camids"] = np.array([1, 2, 2, 1])
    path = _write_npz(tmp_path / "r.npz", **arrays)
    assert load_features(path, "regdb").frames is None
    with pytest.raises(VireidError) as info:
        load_features(path, "sysu")
    assert str(info.value).startswith(f"{path}: missing field 'frames' (required for sysu")


def test_file_not_found_and_unreadable(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(VireidError) as info:
        load_features(missing, "sysu")
    assert str(info.value) == f"{missing}: features file not found (expected an .npz file)"
    # a folder exists: "not found" would mislead
    with pytest.raises(VireidError) as info:
        load_features(tmp_path, "sysu")
    assert str(info.value) == f"{tmp_path}: is a folder; expected an .npz features file"

    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"not an archive at all")
    with pytest.raises(VireidError) as info:
        load_features(garbage, "sysu")
    assert str(info.value).startswith(
        f"{garbage}: cannot read features file (expected an .npz archive): "
    )

    truncated = tmp_path / "t.npz"
    np.savez(truncated, **_sysu_arrays())
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(VireidError) as info:
        load_features(truncated, "sysu")
    assert str(info.value).startswith(f"{truncated}: cannot read features file")


def test_pickled_object_arrays_are_refused(tmp_path):
    path = tmp_path / "o.npz"
    arrays = _sysu_arrays()
    arrays["pids"] = np.array([6, 6, 10, None], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(VireidError) as info:
        load_features(path, "sysu")
    assert str(info.value).startswith(f"{path}: cannot read features file")


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    arrays = _sysu_arrays()
    arrays["features"] = arrays["features"].copy()
    arrays["features"][0, 0] = np.nan
    path = _write_npz(tmp_path / "n.npz", **arrays)
    with pytest.raises(VireidError) as info:
        load_features(path, "sysu")
    assert str(info.value) == (
        f"{path}: field 'features': row 0 has NaN or inf values (1 rows affected); "
        "expected finite numbers"
    )


def test_a_zip_whose_members_are_not_arrays(tmp_path):
    path = tmp_path / "z.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("features.npy", b"garbage")
        zf.writestr("pids.npy", b"garbage")
        zf.writestr("camids.npy", b"garbage")
    with pytest.raises(VireidError) as info:
        load_features(path, "sysu")
    # NumPy hands back members that are not .npy files as raw bytes: still a named field error
    assert str(info.value) == f"{path}: field 'features': expected a float array, got dtype |S7"


@pytest.mark.parametrize(
    ("dataset", "camids", "frames"),
    [("regdb", [1, 2, 1, 2], None), ("sysu", [1, 3, 4, 6], [0, 0, 0, 0])],
)
def test_a_modalities_field_must_agree_with_the_cameras(dataset, camids, frames):
    # RegDB: camera 1 visible, 2 thermal; SYSU-MM01: cameras 3 and 6 infrared
    camids = np.array(camids)
    kwargs = {"frames": None if frames is None else np.array(frames), "dataset": dataset}
    x, pids = np.zeros((4, 2), np.float32), np.array([1, 1, 2, 2])
    right = np.array([0, 1, 0, 1])  # the modality each camera implies
    fs = FeatureSet.create(x, pids, camids, modalities=right, **kwargs)
    assert fs.modalities.tolist() == right.tolist()
    with pytest.raises(VireidError) as info:
        FeatureSet.create(x, pids, camids, modalities=1 - right, **kwargs)
    assert str(info.value) == (
        f"features: field 'modalities': row 0 has modality 1 but camera 1 is visible in {dataset}"
    )


@pytest.mark.parametrize("path", [None, 3, ["x"]])
def test_a_path_that_is_not_one_is_named(path):
    with pytest.raises(VireidError) as info:
        load_features(path, "sysu")
    assert str(info.value) == f"path: expected a non-empty path (str or os.PathLike), got {path!r}"
