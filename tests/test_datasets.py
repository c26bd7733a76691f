"""Tests of the dataset constants (``src/reference/datasets.py``): the published figures agree
with each other and with what the readers and protocols derive from them."""

from __future__ import annotations

from reference import datasets as d


def test_sysu_cameras_partition_into_modalities():
    assert sorted(d.SYSU_RGB_CAMERAS + d.SYSU_IR_CAMERAS) == list(d.SYSU_CAMERAS)
    assert not set(d.SYSU_RGB_CAMERAS) & set(d.SYSU_IR_CAMERAS)
    assert set(d.SYSU_INDOOR_CAMERAS) <= set(d.SYSU_RGB_CAMERAS)


def test_sysu_identity_counts_add_up():
    ids = d.SYSU_IDS
    assert ids["train"] + ids["val"] + ids["test"] == ids["available"] == 491
    assert d.SYSU_TRAINVAL_IDS == 395
    assert sum(d.SYSU_IMAGES.values()) == 45863


def test_regdb_counts_add_up():
    assert 2 * d.REGDB_IDS_PER_SPLIT == d.REGDB_IDS == 412
    assert d.REGDB_IMAGES_PER_ID == 10 and d.REGDB_TRIALS == 10
    assert d.REGDB_CAMERAS == (1, 2)


def test_readers_and_protocols_use_these_constants():
    from reference.data import sysu
    from reference.data.modality import Modality
    from reference.evaluation import features
    from reference.evaluation import sysu as protocol

    assert {c for c, m in sysu.CAMERA_MODALITY.items() if m == Modality.INFRARED} == set(
        d.SYSU_IR_CAMERAS
    )
    assert features.DATASET_CAMERAS == {
        "sysu": d.SYSU_CAMERAS,
        "regdb": d.REGDB_CAMERAS,
        "llcm": d.LLCM_VISIBLE_CAMERAS,
    }
    assert protocol.MODES["all"] == d.SYSU_RGB_CAMERAS


def test_llcm_constants_and_their_users():
    from reference.data import llcm as reader
    from reference.evaluation import llcm as protocol

    assert d.LLCM_TRAIN_IDS + d.LLCM_TEST_IDS == d.LLCM_IDS == 1064
    assert set(d.LLCM_INFRARED_CAMERAS) == set(d.LLCM_VISIBLE_CAMERAS) - {3}
    assert protocol.CAMERAS == {0: d.LLCM_VISIBLE_CAMERAS, 1: d.LLCM_INFRARED_CAMERAS}
    assert [cams for _, cams in reader.TEST_FOLDERS.values()] == [
        d.LLCM_VISIBLE_CAMERAS,
        d.LLCM_INFRARED_CAMERAS,
    ]
