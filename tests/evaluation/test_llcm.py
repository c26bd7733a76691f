"""The LLCM protocol (spec/evaluation/llcm.md): the draw, the order, the rule, the figures.

The draw oracle rebuilds the public procedure from the spec on a folder tree of file names:
``random.seed(t)`` on the global generator, identities as zero-padded strings, cameras in folder
order, ``random.choice`` on each existing folder's sorted file list. The scoring oracle is the
loop oracle of ``test_metrics.py`` with the same-identity same-camera rule.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.distance import pairwise_distance
from reference.evaluation.example import llcm_example
from reference.evaluation.features import FeatureSet
from reference.evaluation.llcm import (
    evaluate_llcm,
    folders_of,
    gallery_rows,
    query_rows,
)
from reference.evaluation.rerank import RerankSettings, k_reciprocal_distance
from tests.evaluation.test_metrics import oracle
from tests.strategies import RankProblem

VIS_FOLDERS = [f"test_vis/cam{c}" for c in range(1, 10)]
NIR_FOLDERS = [f"test_nir/cam{c}" for c in (1, 2, 4, 5, 6, 7, 8, 9)]


def tree_and_features(seed: int, n_ids: int, dim: int = 4):
    """A folder tree {folder/pid: sorted names} and a features file of the same images."""
    rng = np.random.default_rng(seed)
    ids = sorted(rng.choice(np.arange(1, 3000), n_ids, replace=False).tolist())
    tree: dict[str, list[str]] = {}
    rows = []  # (modality, cam, pid, frame)
    for pid in ids:
        for modality, folders in ((0, VIS_FOLDERS), (1, NIR_FOLDERS)):
            present = rng.random(len(folders)) < 0.5
            present[rng.integers(len(folders))] = True
            for folder in np.asarray(folders)[present].tolist():
                n = int(rng.integers(1, 6))
                names = sorted(f"{pid:04d}_{rng.integers(10**6):06d}_{k}.jpg" for k in range(n))
                tree[f"{folder}/{pid:04d}"] = names
                cam = int(folder[-1])
                rows += [(modality, cam, pid, k) for k in range(n)]
    order = rng.permutation(len(rows))  # row order of a features file is free
    arr = np.asarray(rows, dtype=np.int64)[order]
    fs = FeatureSet.create(
        rng.standard_normal((len(rows), dim)),
        arr[:, 2],
        arr[:, 1],
        arr[:, 3],
        dataset="llcm",
        modalities=arr[:, 0],
    )
    return ids, tree, fs


def public_draw(ids, tree, folders, trial):
    """The published procedure, from the spec: global random.seed, choice per existing folder."""
    random.seed(trial)
    picked = []
    for pid in sorted(f"{p:04d}" for p in ids):
        for folder in folders:
            key = f"{folder}/{pid}"
            if key in tree:
                picked.append((key, random.choice(tree[key])))
    return picked


def public_queries(ids, tree, folders):
    return [
        (f"{folder}/{pid}", name)
        for pid in sorted(f"{p:04d}" for p in ids)
        for folder in folders
        if f"{folder}/{pid}" in tree
        for name in tree[f"{folder}/{pid}"]
    ]


def as_names(fs, tree, rows):
    out = []
    for r in rows.tolist():
        mod = "vis" if fs.modalities[r] == 0 else "nir"
        key = f"test_{mod}/cam{fs.camids[r]}/{fs.pids[r]:04d}"
        out.append((key, tree[key][fs.frames[r]]))
    return out


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n_ids=st.integers(1, 12), trial=st.integers(0, 9))
def test_draw_and_order_are_the_public_procedures(seed, n_ids, trial):
    ids, tree, fs = tree_and_features(seed, n_ids)
    folders = folders_of(fs)
    for modality, names in ((0, VIS_FOLDERS), (1, NIR_FOLDERS)):
        got = as_names(fs, tree, gallery_rows(folders, modality, trial))
        assert got == public_draw(ids, tree, names, trial)
        assert as_names(fs, tree, query_rows(folders, modality)) == public_queries(ids, tree, names)


def test_folders_are_frozen():
    # the folder index is shared by every trial's draw: none may change it
    folders = folders_of(tree_and_features(0, 3)[2])
    field = dataclasses.fields(folders)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(folders, field, None)


def test_the_draw_leaves_the_global_generator_alone():
    _, _, fs = tree_and_features(0, 5)
    random.seed(123)
    state = random.getstate()
    gallery_rows(folders_of(fs), 0, 3)
    assert random.getstate() == state


@pytest.mark.parametrize("direction", ["i2v", "v2i"])
def test_figures_match_the_oracle_with_the_same_camera_rule(device, direction):
    _, _, fs = tree_and_features(7, 10, dim=3)
    scores = evaluate_llcm(fs, direction=direction, trials=3, device=device)
    folders = folders_of(fs)
    q_mod = 1 if direction == "i2v" else 0
    q = query_rows(folders, q_mod)
    for t, trial in enumerate(scores.trials):
        g = gallery_rows(folders, 1 - q_mod, t)
        dist = pairwise_distance(torch.from_numpy(fs.features[q]), torch.from_numpy(fs.features[g]))
        problem = RankProblem(dist.numpy(), fs.pids[q], fs.pids[g], fs.camids[q], fs.camids[g])
        cmc, m_ap, m_inp, v = oracle(problem, "same-id-same-camera", "identity", 20)
        assert trial.metrics.num_valid == v and trial.num_gallery == g.size
        np.testing.assert_allclose(trial.metrics.cmc, [float(x) for x in cmc], atol=1e-12)
        assert trial.metrics.mAP == pytest.approx(float(m_ap), abs=1e-12)
        assert trial.metrics.mINP == pytest.approx(float(m_inp), abs=1e-12)


def test_same_identity_same_camera_is_skipped_other_cameras_kept():
    # identity 1: an infrared query in camera 2; visible images in cameras 2 (same) and 5
    fs = FeatureSet.create(
        np.array([[0.0], [0.0], [1.0], [0.5]]),
        pids=np.array([1, 1, 1, 2]),
        camids=np.array([2, 2, 5, 2]),
        frames=np.array([0, 0, 0, 0]),
        modalities=np.array([1, 0, 0, 0]),
        dataset="llcm",
    )
    m = evaluate_llcm(fs, direction="i2v", trials=1).trials[0].metrics
    # the camera-2 twin at distance 0 is skipped: identity 2 (0.5) comes before camera 5 (1.0)
    assert m.queries.first_hit.tolist() == [2] and m.mAP == 0.5


def test_settings_title_and_rerank_record():
    fs = llcm_example(0, n_ids=12, dim=8)
    plain = evaluate_llcm(fs, direction="v2i", trials=2, source="f.npz")
    assert dict(plain.settings) == {
        "dataset": "llcm",
        "direction": "v2i",
        "trials": 2,
        "metric": "euclidean",
        "exclusion": "same-id-same-camera",
        "cmc_kind": "identity",
        "max_rank": 20,
        "features": "f.npz",
        "num_ids": 12,
        "rerank": None,
    }
    assert plain.title == "LLCM visible-to-infrared, 2 trials, euclidean distance"
    rr = evaluate_llcm(fs, direction="v2i", trials=1, rerank=RerankSettings(k1=5, k2=2))
    assert rr.settings["rerank"] == {"method": "k-reciprocal", "k1": 5, "k2": 2, "lambda": 0.3}
    assert rr.title.endswith("k-reciprocal re-ranking (k1=5, k2=2, lambda=0.3)")
    folders = folders_of(fs)
    q, g = query_rows(folders, 0), gallery_rows(folders, 1, 0)
    dist = k_reciprocal_distance(fs.features[q], fs.features[g], k1=5, k2=2)
    problem = RankProblem(dist.numpy(), fs.pids[q], fs.pids[g], fs.camids[q], fs.camids[g])
    _, m_ap, _, _ = oracle(problem, "same-id-same-camera", "identity", 20)
    assert rr.trials[0].metrics.mAP == pytest.approx(float(m_ap), abs=1e-12)


def test_example_has_the_test_set_shape():
    fs = llcm_example(0)
    folders = folders_of(fs)
    assert len(folders.test_ids) == 351
    assert 8000 <= query_rows(folders, 0).size <= 10000
    assert 7000 <= query_rows(folders, 1).size <= 9500


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            dict(camids=np.array([3, 1])),
            "f: folder test_nir/cam3/0001: LLCM has no infrared "
            "camera 3; expected cameras 1, 2, 4, 5, 6, 7, 8, 9",
        ),
        (
            dict(frames=np.array([1, 0])),
            "f: folder test_nir/cam1/0001 has 1 rows with frames "
            "up to 1; expected frames exactly 0..0: the features file must hold every test image",
        ),
    ],
)
def test_bad_folders_are_named(change, message):
    arrays = dict(
        features=np.zeros((2, 2)),
        pids=np.array([1, 1]),
        camids=np.array([1, 1]),
        frames=np.array([0, 0]),
        modalities=np.array([1, 0]),
    )
    arrays.update(change)
    fs = FeatureSet.create(**arrays, dataset="llcm")
    with pytest.raises(VireidError) as info:
        folders_of(fs, "f")
    assert str(info.value) == message


def test_bad_settings_are_named():
    fs = llcm_example(0, n_ids=3, dim=4)
    with pytest.raises(VireidError, match=r"^direction: expected 'i2v' or 'v2i', got 'v2t'$"):
        evaluate_llcm(fs, direction="v2t")
    # a value that cannot be a dictionary key is a wrong direction too, not a TypeError
    with pytest.raises(VireidError, match=r"^direction: expected 'i2v' or 'v2i', got \['i2v'\]$"):
        evaluate_llcm(fs, direction=["i2v"])
    with pytest.raises(VireidError, match=r"^trials: expected an integer >= 1, got 0$"):
        evaluate_llcm(fs, trials=0)
    with pytest.raises(VireidError, match=r"^trials: expected an integer >= 1, got True$"):
        evaluate_llcm(fs, trials=True)
    sysu_like = FeatureSet.create(
        np.zeros((1, 2)), np.array([1]), np.array([1]), np.array([0]), dataset="sysu"
    )
    with pytest.raises(VireidError, match=r"expected an LLCM features file"):
        evaluate_llcm(sysu_like)


def test_an_llcm_file_needs_modalities():
    with pytest.raises(VireidError) as info:
        FeatureSet.create(
            np.zeros((1, 2)),
            np.array([1]),
            np.array([1]),
            np.array([0]),
            dataset="llcm",
            source="x.npz",
        )
    assert str(info.value) == (
        "x.npz: missing field 'modalities' (required for llcm: 0 = visible, 1 = infrared per "
        "image; its cameras carry both modalities)"
    )


def test_a_modality_without_images_and_a_gallery_of_one():
    # two identities, visible images of identity 1 only at camera 1 (one image) and infrared
    # images of both: i2v has a gallery of one image, v2i has queries; no visible -> no gallery
    arrays = dict(
        features=np.arange(10, dtype=np.float64).reshape(5, 2),
        pids=np.array([1, 1, 2, 2, 1]),
        camids=np.array([1, 2, 1, 2, 1]),
        frames=np.array([0, 0, 0, 0, 0]),
        modalities=np.array([1, 1, 1, 1, 0]),
    )
    fs = FeatureSet.create(**arrays, dataset="llcm")
    one = evaluate_llcm(fs, direction="i2v", trials=1)
    trial = one.trials[0]
    assert trial.num_gallery == 1 and trial.metrics.num_query == 4
    # only identity 1's camera-2 image has a match (its camera-1 image shares the camera)
    assert trial.metrics.queries.valid.tolist() == [False, True, False, False]
    infrared_only = FeatureSet.create(
        **{k: v[:4] for k, v in arrays.items()}, dataset="llcm"
    )  # fmt: skip
    with pytest.raises(VireidError) as info:
        evaluate_llcm(infrared_only, direction="i2v", source="f.npz")
    assert str(info.value) == "f.npz: empty gallery: the features hold no visible image"
    with pytest.raises(VireidError) as info:
        evaluate_llcm(infrared_only, direction="v2i", source="f.npz")
    assert str(info.value) == "f.npz: no query: the features hold no visible image"


def test_ten_trials_by_default():
    assert evaluate_llcm(llcm_example(0, n_ids=4, dim=4)).settings["trials"] == 10
