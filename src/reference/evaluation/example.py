"""Synthetic, seeded features files shaped like SYSU-MM01, RegDB and LLCM test sets.

Spec: ``spec/evaluation/sysu.md``, ``spec/evaluation/regdb.md`` and ``spec/evaluation/llcm.md``
(sections "Example").

Each identity ``p`` has a centre ``c_p ~ N(0, I_d)``; an image of camera ``k`` gets
``x = c_p + g_k + s * e``, ``e ~ N(0, I_d)``, where ``g_k`` is a per-camera offset (larger between
the RGB and the IR cameras: a modality gap) and ``s`` the noise scale. The identities are learnable
but not perfectly separated, so the protocols give non-trivial figures. Nothing here is a model:
these files only exercise the scoring side.

SYSU-MM01 folder sizes are drawn per camera so the set sizes resemble the real test set (about
3,800 IR queries, 301 / 112 single-shot gallery images in all / indoor search), or taken from the
official split (``sysu_example_from_split``) so the official draw applies.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reference.datasets import (
    LLCM_INFRARED_CAMERAS,
    LLCM_TEST_IDS,
    LLCM_VISIBLE_CAMERAS,
    REGDB_IDS_PER_SPLIT,
    REGDB_IMAGES_PER_ID,
    SYSU_IDS,
)
from reference.errors import VireidError
from reference.evaluation.features import FeatureSet
from reference.evaluation.sysu import ALL_CAMERAS, IR_CAMERAS, OfficialSplit

SYSU_TEST_IDS = SYSU_IDS["test"]
#: probability that an identity has folders indoors: cameras 1 and 2 see the same people
SYSU_INDOOR_P = 0.58
#: per camera: (probability that an identity has a folder there, smallest, largest size)
SYSU_FOLDERS: dict[int, tuple[float, int, int]] = {
    1: (SYSU_INDOOR_P, 10, 40),
    2: (SYSU_INDOOR_P, 14, 42),
    3: (0.97, 19, 21),
    4: (0.98, 19, 22),
    5: (0.99, 19, 21),
    6: (1.00, 20, 20),
}
REGDB_TEST_IDS = REGDB_IDS_PER_SPLIT
REGDB_IMAGES = REGDB_IMAGES_PER_ID  # per identity and modality
#: per modality: (cameras, probability that an identity has a folder there, smallest, largest)
LLCM_FOLDERS: dict[int, tuple[tuple[int, ...], float, int, int]] = {
    0: (LLCM_VISIBLE_CAMERAS, 0.6, 1, 8),
    1: (LLCM_INFRARED_CAMERAS, 0.6, 1, 8),
}


def _features(
    rng: np.random.Generator,
    pids: np.ndarray,
    camids: np.ndarray,
    *,
    dim: int,
    noise: float,
    gap: float,
) -> np.ndarray:
    ids, inverse = np.unique(pids, return_inverse=True)
    centres = rng.standard_normal((ids.size, dim))
    cam_offsets = {int(c): gap * rng.standard_normal(dim) for c in np.unique(camids)}
    offsets = np.stack([cam_offsets[int(c)] for c in camids]) if camids.size else 0.0
    noise_part = noise * rng.standard_normal((pids.size, dim))
    return (centres[inverse] + offsets + noise_part).astype(np.float32)


def sysu_example_counts(seed: int = 0, n_ids: int = SYSU_TEST_IDS) -> dict[tuple[int, int], int]:
    """Folder sizes ``{(cam, pid): n}`` for ``n_ids`` identities numbered 1..n_ids."""
    rng = np.random.default_rng(seed)
    counts: dict[tuple[int, int], int] = {}
    indoor = rng.random(n_ids) < SYSU_INDOOR_P  # one draw for cameras 1 and 2
    for cam in ALL_CAMERAS:
        prob, low, high = SYSU_FOLDERS[cam]
        present = indoor if cam in (1, 2) else rng.random(n_ids) < prob
        sizes = rng.integers(low, high + 1, n_ids)
        for i in np.flatnonzero(present).tolist():
            counts[(cam, i + 1)] = int(sizes[i])
    return counts


def sysu_example(
    seed: int = 0,
    *,
    counts: Mapping[tuple[int, int], int] | None = None,
    dim: int = 64,
    noise: float = 1.3,
    gap: float = 0.6,
) -> FeatureSet:
    """A SYSU-MM01-shaped features file: one row per image of every ``(cam, pid)`` folder."""
    if counts is None:
        counts = sysu_example_counts(seed)
    folders = sorted((cam, pid, n) for (cam, pid), n in counts.items() if n > 0)
    camids = np.concatenate([np.full(n, cam) for cam, _, n in folders]).astype(np.int64)
    pids = np.concatenate([np.full(n, pid) for _, pid, n in folders]).astype(np.int64)
    frames = np.concatenate([np.arange(n) for _, _, n in folders]).astype(np.int64)
    rng = np.random.default_rng([seed, 1])
    is_ir = np.isin(camids, IR_CAMERAS)
    # the modality gap: every IR camera shares one offset on top of its own
    feats = _features(rng, pids, camids, dim=dim, noise=noise, gap=gap)
    feats[is_ir] += (gap * rng.standard_normal(dim)).astype(np.float32)
    return FeatureSet.create(feats, pids, camids, frames, dataset="sysu", source="example")


def sysu_example_from_split(split: OfficialSplit, seed: int = 0, **kwargs: float) -> FeatureSet:
    """A SYSU-MM01-shaped example whose folder sizes are the official split's (its test ids)."""
    if split.test_ids is None:
        raise VireidError(
            f"{split.path}: the example for the official draw needs test_id.mat beside the "
            "split file, to know the test identities"
        )
    counts = {(cam, pid): split.count(cam, pid) for pid in split.test_ids for cam in ALL_CAMERAS}
    return sysu_example(seed, counts=counts, **kwargs)  # type: ignore[arg-type]


def regdb_example(
    trials: int = 10,
    seed: int = 0,
    *,
    n_ids: int = REGDB_TEST_IDS,
    images: int = REGDB_IMAGES,
    dim: int = 64,
    noise: float = 0.9,
    gap: float = 0.6,
) -> list[FeatureSet]:
    """One RegDB-shaped test set per trial: ``n_ids`` identities x ``images`` per modality.

    Trial ``t`` uses its own identity labels (a different half of 412 labels, as RegDB's ten
    random splits do) and its own noise (a model per trial).
    """
    out = []
    for t in range(trials):
        rng = np.random.default_rng([seed, 2, t])
        labels = np.sort(rng.choice(2 * n_ids, n_ids, replace=False))
        pids = np.tile(np.repeat(labels, images), 2).astype(np.int64)
        camids = np.repeat([1, 2], n_ids * images).astype(np.int64)
        feats = _features(rng, pids, camids, dim=dim, noise=noise, gap=gap)
        out.append(FeatureSet.create(feats, pids, camids, dataset="regdb", source="example"))
    return out


def llcm_example(
    seed: int = 0,
    *,
    n_ids: int = LLCM_TEST_IDS,
    dim: int = 64,
    noise: float = 1.3,
    gap: float = 0.6,
) -> FeatureSet:
    """An LLCM-shaped features file: ``n_ids`` identities, folders per (modality, camera).

    Every identity has at least one folder in each modality; the other folders exist with the
    probability of ``LLCM_FOLDERS`` (about 9,000 visible and 8,400 infrared images for 351
    identities: this project's assumption, the shape of the set, not its published counts).
    """
    rng = np.random.default_rng([seed, 3])
    mods, cams, pids, frames = [], [], [], []
    for pid in range(1, n_ids + 1):
        for modality, (cameras, prob, low, high) in LLCM_FOLDERS.items():
            present = rng.random(len(cameras)) < prob
            present[rng.integers(len(cameras))] = True
            for cam in np.asarray(cameras)[present].tolist():
                n = int(rng.integers(low, high + 1))
                mods.append(np.full(n, modality))
                cams.append(np.full(n, cam))
                pids.append(np.full(n, pid))
                frames.append(np.arange(n))
    m, c, p, f = (np.concatenate(a).astype(np.int64) for a in (mods, cams, pids, frames))
    # a camera's offset is shared by both modalities; the modality gap comes on top
    feats = _features(rng, p, c, dim=dim, noise=noise, gap=gap)
    feats[m == 1] += (gap * rng.standard_normal(dim)).astype(np.float32)
    return FeatureSet.create(feats, p, c, f, dataset="llcm", modalities=m, source="example")
