"""The RegDB protocol (spec/evaluation/regdb.md) against a float64 plain-loop oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.features import FeatureSet
from reference.evaluation.regdb import evaluate_regdb


def regdb_set(rng: np.random.Generator, n_ids: int, images: int, dim: int) -> FeatureSet:
    labels = rng.choice(50, n_ids, replace=False)
    pids = np.concatenate([np.repeat(labels, images), rng.choice(labels, n_ids * images)])
    camids = np.repeat([1, 2], n_ids * images)
    order = rng.permutation(pids.size)
    feats = rng.standard_normal((pids.size, dim)) + pids[:, None] * 0.1
    return FeatureSet.create(feats[order], pids[order], camids[order], dataset="regdb")


def oracle(feats, pids, camids, q_cam, g_cam, max_rank=20):
    """Standard CMC, non-interpolated AP, INP; no exclusion; ties by gallery row order."""
    q = [i for i in range(len(pids)) if camids[i] == q_cam]
    g = [j for j in range(len(pids)) if camids[j] == g_cam]
    hits = [0] * max_rank
    aps, inps = [], []
    for i in q:
        dist = [sum((a - b) ** 2 for a, b in zip(feats[i], feats[j], strict=True)) for j in g]
        order = sorted(range(len(g)), key=lambda k: (dist[k], k))
        pos = [r + 1 for r, k in enumerate(order) if pids[g[k]] == pids[i]]
        if not pos:
            continue
        aps.append(sum((m + 1) / k for m, k in enumerate(pos)) / len(pos))
        inps.append(len(pos) / pos[-1])
        for r in range(pos[0] - 1, max_rank):
            hits[r] += 1
    v = len(aps)
    return [h / v for h in hits], sum(aps) / v, sum(inps) / v, v, len(q), len(g)


@given(
    seed=st.integers(0, 2**32 - 1),
    trials=st.integers(1, 3),
    direction=st.sampled_from(["v2t", "t2v"]),
)
def test_regdb_equals_the_oracle(device, seed, trials, direction):
    rng = np.random.default_rng(seed)
    sets = [
        regdb_set(rng, int(rng.integers(1, 6)), int(rng.integers(1, 4)), 3) for _ in range(trials)
    ]
    scores = evaluate_regdb(sets, direction=direction, device=device)
    q_cam, g_cam = (1, 2) if direction == "v2t" else (2, 1)
    wants = []
    for fs, got in zip(sets, scores.trials, strict=True):
        want = oracle(fs.features.tolist(), fs.pids.tolist(), fs.camids.tolist(), q_cam, g_cam)
        wants.append(want)
        np.testing.assert_allclose(got.metrics.cmc, want[0], rtol=0, atol=1e-12)
        assert got.metrics.mAP == pytest.approx(want[1], abs=1e-12)
        assert got.metrics.mINP == pytest.approx(want[2], abs=1e-12)
        assert (got.metrics.num_valid, got.metrics.num_query, got.num_gallery) == want[3:]
    maps = [w[1] for w in wants]
    assert scores.mean("mAP") == pytest.approx(sum(maps) / trials, abs=1e-12)
    mean = sum(maps) / trials
    assert scores.std("mAP") == pytest.approx(
        (sum((m - mean) ** 2 for m in maps) / trials) ** 0.5, abs=1e-12
    )
    assert [t.trial for t in scores.trials] == list(range(1, trials + 1))


@given(seed=st.integers(0, 2**32 - 1))
def test_t2v_is_v2t_with_the_modalities_swapped(device, seed):
    rng = np.random.default_rng(seed)
    fs = regdb_set(rng, 4, 3, 3)
    swapped = FeatureSet.create(fs.features, fs.pids, 3 - fs.camids, dataset="regdb")
    a = evaluate_regdb([fs], direction="t2v", device=device).trials[0].metrics
    b = evaluate_regdb([swapped], direction="v2t", device=device).trials[0].metrics
    np.testing.assert_array_equal(a.cmc, b.cmc)
    assert (a.mAP, a.mINP, a.num_valid) == (b.mAP, b.mINP, b.num_valid)


def test_settings_and_sources():
    rng = np.random.default_rng(0)
    sets = [regdb_set(rng, 3, 2, 2) for _ in range(2)]
    scores = evaluate_regdb(sets, metric="cosine", sources=["a.npz", "b.npz"])
    assert dict(scores.settings) == {
        "dataset": "regdb",
        "direction": "v2t",
        "trials": 2,
        "metric": "cosine",
        "exclusion": "none",
        "cmc_kind": "standard",
        "max_rank": 20,
        "features": ["a.npz", "b.npz"],
        "rerank": None,
    }
    assert [t.source for t in scores.trials] == ["a.npz", "b.npz"]
    assert scores.title == "RegDB visible-to-thermal, 2 trials, cosine distance"
    assert all(t.metrics.exclusion == "none" for t in scores.trials)
    assert all(t.metrics.cmc_kind == "standard" for t in scores.trials)


def test_no_valid_query_names_the_trial():
    fs = FeatureSet.create(
        np.eye(3), np.array([1, 2, 3]), np.array([1, 1, 2]), dataset="regdb"
    )  # queries 1, 2; the only gallery item is identity 3
    with pytest.raises(VireidError) as info:
        evaluate_regdb([fs], sources=["t.npz"])
    assert str(info.value).startswith("t.npz: RegDB trial 1: q_pids: no valid query")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"direction": "both"}, "direction: expected 'v2t' or 't2v', got 'both'"),
        # not a dictionary key: the same error, not a TypeError
        ({"direction": ["v2t"]}, "direction: expected 'v2t' or 't2v', got ['v2t']"),
        ({"metric": "l2"}, "metric: unknown metric 'l2'; expected one of 'euclidean', 'cosine'"),
        ({"sources": ["one"] * 3}, "sources: expected 2 names (one per features file), got 3"),
    ],
)
def test_bad_settings(kwargs, message):
    rng = np.random.default_rng(1)
    sets = [regdb_set(rng, 2, 2, 2) for _ in range(2)]
    with pytest.raises(VireidError) as info:
        evaluate_regdb(sets, **kwargs)
    assert str(info.value) == message


def test_empty_inputs():
    with pytest.raises(VireidError) as info:
        evaluate_regdb([])
    assert str(info.value) == "features: expected at least one RegDB features file (one per trial)"
    thermal_only = FeatureSet.create(
        np.ones((2, 2)), np.array([1, 1]), np.array([2, 2]), dataset="regdb"
    )
    with pytest.raises(VireidError) as info:
        evaluate_regdb([thermal_only])
    assert str(info.value) == (
        "trial 1: no visible images (camid 1): the query set of direction v2t is empty"
    )
    sysu = FeatureSet.create(
        np.ones((2, 2)), np.array([1, 1]), np.array([1, 2]), np.array([0, 0]), dataset="sysu"
    )
    with pytest.raises(VireidError) as info:
        evaluate_regdb([sysu], sources=["s.npz"])
    assert str(info.value) == "s.npz: expected a RegDB features file (dataset 'regdb')"
