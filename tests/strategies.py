"""Hypothesis strategies shared by the whole suite (tested in ``tests/test_strategies.py``).

Strategies return CPU tensors or NumPy arrays; tests move them to the ``device`` fixture. Each
area keeps its strategies in its own section below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st

from reference.datasets import SYSU_CAMERAS, SYSU_IR_CAMERAS, SYSU_RGB_CAMERAS

# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankProblem:
    """A query x gallery distance matrix with identities and cameras (smaller = closer)."""

    distmat: np.ndarray  # (n_query, n_gallery) float64
    q_pids: np.ndarray  # (n_query,) int64
    g_pids: np.ndarray  # (n_gallery,) int64
    q_camids: np.ndarray  # (n_query,) int64
    g_camids: np.ndarray  # (n_gallery,) int64


@st.composite
def rank_problems(
    draw: st.DrawFn,
    *,
    max_query: int = 12,
    max_gallery: int = 30,
    max_ids: int = 8,
    ties: bool = True,
    sysu_cameras: bool = True,
) -> RankProblem:
    """Random ranking problems, with tied distances and queries that may have no positive.

    With ``sysu_cameras`` queries come from IR cameras (3, 6) and the gallery from RGB cameras
    (1, 2, 4, 5), as in SYSU-MM01; otherwise every camera is drawn from 1..6.
    """
    n_query = draw(st.integers(1, max_query))
    n_gallery = draw(st.integers(1, max_gallery))
    n_ids = draw(st.integers(1, max_ids))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(0, n_ids, n_query)
    g_pids = rng.integers(0, n_ids, n_gallery)
    if sysu_cameras:
        q_camids = rng.choice(SYSU_IR_CAMERAS, n_query)
        g_camids = rng.choice(SYSU_RGB_CAMERAS, n_gallery)
    else:
        q_camids = rng.choice(SYSU_CAMERAS, n_query)
        g_camids = rng.choice(SYSU_CAMERAS, n_gallery)
    if ties and draw(st.booleans()):
        # few distinct values: many exact ties, which the stable tie rule must resolve
        distmat = rng.integers(0, 4, (n_query, n_gallery)).astype(np.float64)
    else:
        distmat = rng.random((n_query, n_gallery))
    return RankProblem(
        distmat=distmat,
        q_pids=q_pids.astype(np.int64),
        g_pids=g_pids.astype(np.int64),
        q_camids=q_camids.astype(np.int64),
        g_camids=g_camids.astype(np.int64),
    )


# ---------------------------------------------------------------------------------------------
# losses and models: labelled feature batches with modality tags
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureBatch:
    """Features of P identities x K images in each of ``modalities``, rows in shuffled order."""

    features: torch.Tensor  # (P * K * M, d) float64
    labels: torch.Tensor  # (N,) int64
    modality: torch.Tensor  # (N,) int64 Modality values
    p: int
    k: int
    modalities: tuple[int, ...]


@st.composite
def feature_batches(
    draw: st.DrawFn,
    *,
    min_p: int = 2,
    max_p: int = 4,
    max_k: int = 3,
    dims: tuple[int, int] = (1, 8),
    modalities: tuple[int, ...] = (0, 1),
    shuffle: bool = True,
    identical: bool | None = None,
    uneven: bool | None = False,
) -> FeatureBatch:
    """A P x K x M batch in shuffled row order.

    Features are drawn from a few distinct values so that zero distances and exact ties occur;
    ``identical=True`` makes every feature the same vector (the zero-distance edge case).
    ``uneven=True`` (or drawn when ``None``) then drops rows at random, keeping at least one per
    (identity, modality): groups hold 1..K rows.
    """
    p = draw(st.integers(min_p, max_p))
    k = draw(st.integers(1, max_k))
    d = draw(st.integers(*dims))
    seed = draw(st.integers(0, 2**32 - 1))
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k * len(modalities))
    modality = torch.tensor(modalities, dtype=torch.int64).repeat_interleave(k).repeat(p)
    n = labels.numel()
    same = draw(st.booleans()) if identical is None else identical
    if same:
        features = torch.randn(1, d, generator=gen, dtype=torch.float64).expand(n, d).clone()
    elif draw(st.booleans()):
        features = torch.randint(-2, 3, (n, d), generator=gen).to(torch.float64)
    else:
        features = torch.randn(n, d, generator=gen, dtype=torch.float64)
    if draw(st.booleans()) if uneven is None else uneven:
        keep = torch.rand(n, generator=gen) < 0.6
        keep[::k] = True  # rows come in groups of k per (identity, modality): keep each first
        features, labels, modality = features[keep], labels[keep], modality[keep]
        n = labels.numel()
    if shuffle:
        order = torch.randperm(n, generator=gen)
        features, labels, modality = features[order], labels[order], modality[order]
    return FeatureBatch(features, labels, modality, p, k, tuple(modalities))


# ---------------------------------------------------------------------------------------------
# data: small images
# ---------------------------------------------------------------------------------------------


@st.composite
def uint8_images(
    draw: st.DrawFn, *, max_batch: int = 4, heights: tuple[int, int] = (8, 48)
) -> torch.Tensor:
    """A (B, 3, H, W) uint8 image batch with random content."""
    b = draw(st.integers(1, max_batch))
    h = draw(st.integers(*heights))
    w = draw(st.integers(max(1, heights[0] // 2), max(1, heights[1] // 2)))
    seed = draw(st.integers(0, 2**32 - 1))
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=gen, dtype=torch.uint8)


@dataclass(frozen=True)
class ViLabels:
    """Per-image identity labels and modality tags (0 = V, 1 = I) of a visible-infrared set."""

    labels: np.ndarray  # (N,) int64, distinct identities need not be 0..C-1
    modality: np.ndarray  # (N,) int64 in {0, 1}
    ids: np.ndarray  # the distinct identities, sorted


@st.composite
def vi_labels(
    draw: st.DrawFn, *, min_ids: int = 1, max_ids: int = 8, max_images: int = 6
) -> ViLabels:
    """Every identity has 1..max_images images in each modality; rows in shuffled order."""
    n_ids = draw(st.integers(min_ids, max_ids))
    ids = np.array(sorted(draw(st.sets(st.integers(0, 500), min_size=n_ids, max_size=n_ids))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    counts = rng.integers(1, max_images + 1, size=(n_ids, 2))
    labels = np.concatenate([np.repeat(ids, counts[:, 0]), np.repeat(ids, counts[:, 1])])
    modality = np.repeat([0, 1], [counts[:, 0].sum(), counts[:, 1].sum()])
    order = rng.permutation(labels.size)
    return ViLabels(labels[order].astype(np.int64), modality[order].astype(np.int64), ids)
