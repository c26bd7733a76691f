"""The shared strategies produce what they promise (array-api-tests tests its strategies too)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import (
    SYSU_IR_CAMERAS,
    SYSU_RGB_CAMERAS,
    feature_batches,
    rank_problems,
    uint8_images,
    vi_labels,
)


@given(rank_problems())
def test_rank_problems_are_consistent(problem):
    nq, ng = problem.distmat.shape
    assert problem.distmat.dtype == np.float64
    assert problem.q_pids.shape == (nq,) and problem.q_camids.shape == (nq,)
    assert problem.g_pids.shape == (ng,) and problem.g_camids.shape == (ng,)
    assert set(problem.q_camids.tolist()) <= set(SYSU_IR_CAMERAS)
    assert set(problem.g_camids.tolist()) <= set(SYSU_RGB_CAMERAS)
    assert np.isfinite(problem.distmat).all()


def test_rank_problems_produce_ties_and_queries_without_match():
    seen_tie = seen_no_match = False

    @given(rank_problems())
    def probe(problem):
        nonlocal seen_tie, seen_no_match
        for row in problem.distmat:
            seen_tie |= len(np.unique(row)) < len(row)
        for pid in problem.q_pids:
            seen_no_match |= pid not in problem.g_pids

    probe()
    assert seen_tie and seen_no_match


@given(feature_batches(modalities=(0, 1, 2, 3)))
def test_feature_batches_have_p_k_m_structure(batch):
    n = batch.p * batch.k * len(batch.modalities)
    assert batch.features.shape[0] == n and batch.features.dtype == torch.float64
    for pid in range(batch.p):
        for m in batch.modalities:
            count = int(((batch.labels == pid) & (batch.modality == m)).sum())
            assert count == batch.k


@given(feature_batches(identical=True))
def test_identical_feature_batches_are_identical(batch):
    assert torch.equal(batch.features, batch.features[:1].expand_as(batch.features))


@given(feature_batches(modalities=(0, 1, 2), uneven=True))
def test_uneven_feature_batches_keep_every_group(batch):
    assert batch.features.shape[0] == batch.labels.numel() == batch.modality.numel()
    for pid in range(batch.p):
        for m in batch.modalities:
            count = int(((batch.labels == pid) & (batch.modality == m)).sum())
            assert 1 <= count <= batch.k


def test_uneven_feature_batches_produce_unequal_groups():
    seen_unequal = False

    @given(feature_batches(uneven=True, max_k=3))
    def probe(batch):
        nonlocal seen_unequal
        counts = {
            int(((batch.labels == pid) & (batch.modality == m)).sum())
            for pid in range(batch.p)
            for m in batch.modalities
        }
        seen_unequal |= len(counts) > 1

    probe()
    assert seen_unequal


@given(uint8_images(), st.data())
def test_uint8_images_shape_and_dtype(images, data):
    assert images.dtype == torch.uint8 and images.dim() == 4 and images.shape[1] == 3


@given(vi_labels())
def test_vi_labels_every_identity_has_both_modalities(data):
    assert data.labels.dtype == np.int64 and data.modality.dtype == np.int64
    assert data.labels.shape == data.modality.shape
    assert set(data.modality.tolist()) <= {0, 1}
    assert data.ids.tolist() == sorted(set(data.labels.tolist()))
    for ident in data.ids:
        for m in (0, 1):
            assert 1 <= int(((data.labels == ident) & (data.modality == m)).sum()) <= 6
