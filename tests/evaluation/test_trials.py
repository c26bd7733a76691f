"""One trial of a protocol (spec/evaluation/trials.md): distances, figures, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.distance import pairwise_distance
from reference.evaluation.features import FeatureSet
from reference.evaluation.metrics import rank_metrics
from reference.evaluation.rerank import RerankSettings, k_reciprocal_distance
from reference.evaluation.trials import features_of, labels_of, score_trial, trial_distance


def features(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_trial_distance_is_the_plain_or_the_reranked_distance(metric):
    q, g = features(5, 4, 0), features(9, 4, 1)
    assert torch.equal(trial_distance(q, g, metric, None), pairwise_distance(q, g, metric))
    rerank = RerankSettings(k1=3, k2=2, lambda_=0.3)
    expected = k_reciprocal_distance(q, g, metric, k1=3, k2=2, lambda_=0.3)
    assert torch.equal(trial_distance(q, g, metric, rerank), expected)


RULES = [("sysu", "identity"), ("same-id-same-camera", "identity"), ("none", "standard")]


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 8),
    st.integers(0, 2**32 - 1),
    st.sampled_from(RULES),
    st.integers(0, 10),
)  # fmt: skip
def test_score_trial_keeps_rank_metrics_with_the_trial_and_gallery_size(nq, ng, seed, rule, trial):
    rng = np.random.default_rng(seed)
    dist = torch.from_numpy(rng.random((nq, ng)))
    q_pids = rng.integers(0, 3, nq)
    g_pids = np.concatenate([q_pids[: min(nq, ng)], rng.integers(0, 3, max(0, ng - nq))])
    q_cams, g_cams = np.full(nq, 3), rng.choice([1, 2, 4, 5], ng)
    kwargs = dict(exclusion=rule[0], cmc_kind=rule[1], max_rank=5, chunk_size=2)
    try:
        expected = rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, **kwargs)
    except VireidError as exc:
        with pytest.raises(VireidError) as info:
            score_trial(dist, (q_pids, q_cams), (g_pids, g_cams), trial=trial, rules=(*rule, 5),
                        chunk_size=2, where="F.npz: P")  # fmt: skip
        assert str(info.value) == f"F.npz: P trial {trial}: {exc}"
        assert type(info.value.__cause__) is VireidError
        return
    got = score_trial(dist, (q_pids, q_cams), (g_pids, g_cams), trial=trial, rules=(*rule, 5),
                      chunk_size=2, where="F.npz: P", source="t.npz")  # fmt: skip
    assert got.trial == trial and got.num_gallery == ng and got.source == "t.npz"
    assert np.array_equal(got.metrics.cmc, expected.cmc)
    assert got.metrics.mAP == expected.mAP and got.metrics.mINP == expected.mINP


def test_a_nan_distance_names_the_features_and_the_trial():
    dist = torch.tensor([[float("nan"), 1.0]])
    with pytest.raises(VireidError) as info:
        score_trial(dist, (np.array([1]), np.array([3])), (np.array([1, 2]), np.array([1, 1])),
                    trial=0, rules=("none", "standard", 2), chunk_size=None,
                    where="f.npz: LLCM")  # fmt: skip
    assert str(info.value) == (
        "f.npz: LLCM trial 0: distmat: contains NaN or inf (first at row 0, column 0); "
        "expected finite"
    )


def test_labels_of_copies_the_rows_identities_and_cameras():
    fs = FeatureSet.create(
        np.zeros((4, 2), dtype=np.float32),
        np.array([7, 8, 9, 10]),
        np.array([1, 2, 1, 2]),
        dataset="regdb",
    )
    pids, cams = labels_of(fs, np.array([3, 0]), torch.device("cpu"))
    assert pids.tolist() == [10, 7] and cams.tolist() == [2, 1]
    pids[0] = -1
    assert fs.pids[3] == 10


@pytest.mark.parametrize(
    ("rows", "view"),
    [([1, 2, 3], True), ([2], True), ([0, 1, 2, 3, 4], True), ([3, 1], False), ([0, 2, 3], False),
     ([1, 1, 2], False), ([], False)],
)  # fmt: skip
def test_features_of_is_a_view_of_a_consecutive_block_and_a_copy_otherwise(rows, view):
    values = np.arange(10, dtype=np.float32).reshape(5, 2)
    fs = FeatureSet.create(values, np.arange(5), np.array([1, 1, 2, 2, 2]), dataset="regdb")
    rows = np.array(rows, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the non-writable view's warning is not the user's
        got = features_of(fs, rows, torch.device("cpu"))
    assert torch.equal(got, torch.from_numpy(values[rows]))
    shares = got.numel() > 0 and np.shares_memory(got.numpy(), fs.features)
    assert shares == view
    assert got.dtype == torch.float32 and tuple(got.shape) == (rows.size, 2)
