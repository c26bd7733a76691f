"""The LLCM protocol: infrared-to-visible or visible-to-infrared, trials averaged.

Spec: ``spec/evaluation/llcm.md``.

Queries: every test image of the query modality, ordered by identity (zero-padded strings),
camera, file. Gallery of trial ``t``: ``random.Random(t)`` (the state of ``random.seed(t)``); for
each identity (same order) and each camera of the gallery modality (visible 1..9, infrared 1, 2,
4..9) whose folder has images, ``choice`` over the folder's sorted file list. Each trial is scored
with the same-identity same-camera rule (camera ``k`` is one physical camera in both
modalities), the identity CMC, mAP and mINP; figures are averaged over the trials (``Scores``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from reference.checks import check_choice, check_integer
from reference.datasets import LLCM_INFRARED_CAMERAS, LLCM_VISIBLE_CAMERAS
from reference.errors import VireidError
from reference.evaluation.distance import PreparedQueries, check_metric
from reference.evaluation.features import FeatureSet
from reference.evaluation.rerank import RerankSettings
from reference.evaluation.scores import Scores
from reference.evaluation.trials import features_of, labels_of, score_trial, trial_distance

VISIBLE, INFRARED = 0, 1
#: cameras of each modality's test folder, in folder order [protocol] (no infrared camera 3)
CAMERAS: dict[int, tuple[int, ...]] = {
    VISIBLE: LLCM_VISIBLE_CAMERAS,
    INFRARED: LLCM_INFRARED_CAMERAS,
}
#: direction -> (query modality, gallery modality)
DIRECTIONS: dict[str, tuple[int, int]] = {"i2v": (INFRARED, VISIBLE), "v2i": (VISIBLE, INFRARED)}
MODALITY_NAMES = {VISIBLE: "visible", INFRARED: "infrared"}
MAX_RANK = 20
#: the protocol's ranking rules [protocol]: same identity and same camera skipped (camera k is
#: one place in both modalities); identity CMC
EXCLUSION, CMC_KIND = "same-id-same-camera", "identity"

Folder = tuple[int, int, int]  # (modality, camera, identity)


def id_sort_key(pid: int) -> str:
    """Identities are sorted as ``%04d`` strings [protocol]; numeric order below 10000."""
    return f"{pid:04d}"


@dataclass(frozen=True)
class LlcmFolders:
    """Rows of an LLCM features file by ``(modality, camera, identity)`` folder.

    ``rows[folder][k]`` is the row of the image at position ``k`` of the folder's sorted file
    list; only folders with at least one image appear.
    """

    rows: Mapping[Folder, np.ndarray]
    test_ids: tuple[int, ...]  # zero-padded string order


def folders_of(fs: FeatureSet, source: str = "features") -> LlcmFolders:
    """Group rows by folder and check each folder's frames are exactly ``0..n-1``."""
    if fs.dataset != "llcm" or fs.frames is None or fs.modalities is None:
        raise VireidError(f"{source}: expected an LLCM features file (dataset 'llcm')")
    order = np.lexsort((fs.frames, fs.pids, fs.camids, fs.modalities))
    mods, cams, pids = fs.modalities[order], fs.camids[order], fs.pids[order]
    frames = fs.frames[order]
    new = (mods[1:] != mods[:-1]) | (cams[1:] != cams[:-1]) | (pids[1:] != pids[:-1])
    starts = np.flatnonzero(np.r_[True, new])
    stops = np.r_[starts[1:], len(order)]
    rows: dict[Folder, np.ndarray] = {}
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        mod, cam, pid, n = int(mods[a]), int(cams[a]), int(pids[a]), b - a
        folder = f"test_{'vis' if mod == VISIBLE else 'nir'}/cam{cam}/{pid:04d}"
        if cam not in CAMERAS[mod]:
            raise VireidError(
                f"{source}: folder {folder}: LLCM has no {MODALITY_NAMES[mod]} camera {cam}; "
                f"expected cameras {', '.join(map(str, CAMERAS[mod]))}"
            )
        got = frames[a:b]
        if int(got[-1]) != n - 1:  # frames are unique (validated): 0..n-1 iff max == n-1
            raise VireidError(
                f"{source}: folder {folder} has {n} rows with frames up to {got[-1]}; expected "
                f"frames exactly 0..{n - 1}: the features file must hold every test image"
            )
        rows[(mod, cam, pid)] = order[a:b]
    test_ids = tuple(sorted({int(p) for p in fs.pids.tolist()}, key=id_sort_key))
    return LlcmFolders(rows=rows, test_ids=test_ids)


def query_rows(folders: LlcmFolders, modality: int) -> np.ndarray:
    """Every image of ``modality``: identity, camera, file order (the public code's order)."""
    picked = [
        folders.rows[(modality, cam, pid)]
        for pid in folders.test_ids
        for cam in CAMERAS[modality]
        if (modality, cam, pid) in folders.rows
    ]
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def gallery_rows(folders: LlcmFolders, modality: int, trial: int) -> np.ndarray:
    """Trial ``trial``'s draw: one ``choice`` per existing (identity, camera) folder."""
    rng = random.Random(trial)  # the state of random.seed(trial), without global state
    picked: list[int] = []
    for pid in folders.test_ids:
        for cam in CAMERAS[modality]:
            rows = folders.rows.get((modality, cam, pid))
            if rows is not None:
                # choice() depends only on the length: the index into the sorted file list
                picked.append(int(rows[rng.choice(range(rows.shape[0]))]))
    return np.asarray(picked, dtype=np.int64)


def evaluate_llcm(
    fs: FeatureSet,
    *,
    direction: str = "i2v",
    trials: int = 10,
    metric: str = "euclidean",
    rerank: RerankSettings | None = None,
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
    source: str = "features",
    progress: Callable[[str], None] | None = None,
) -> Scores:
    """Score ``fs`` under the LLCM protocol (see the module docstring and the spec)."""
    check_choice(direction, "direction", DIRECTIONS, expected="'i2v' or 'v2i'")
    check_integer(trials, "trials", low=1, numpy=False)
    check_metric(metric)
    folders = folders_of(fs, source)
    q_mod, g_mod = DIRECTIONS[direction]
    queries = query_rows(folders, q_mod)
    if queries.size == 0:
        raise VireidError(f"{source}: no query: the features hold no {MODALITY_NAMES[q_mod]} image")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    qf = features_of(fs, queries, dev)
    query = labels_of(fs, queries, dev)
    # the same queries meet every trial's gallery: their side of the distance is computed once
    prepared = PreparedQueries.of(qf, metric) if rerank is None else None
    results = []
    for t in range(trials):
        rows = gallery_rows(folders, g_mod, t)
        if rows.size == 0:
            raise VireidError(
                f"{source}: empty gallery: the features hold no {MODALITY_NAMES[g_mod]} image"
            )
        if progress is not None:
            progress(f"LLCM {direction} trial {t + 1}/{trials}: {queries.size} x {rows.size}")
        gf = features_of(fs, rows, dev)
        results.append(
            score_trial(
                trial_distance(qf, gf, metric, rerank, prepared), query, labels_of(fs, rows, dev),
                trial=t,
                rules=(EXCLUSION, CMC_KIND, MAX_RANK), chunk_size=chunk_size,
                where=f"{source}: LLCM",
            )
        )  # fmt: skip
    settings = {
        "dataset": "llcm",
        "direction": direction,
        "trials": trials,
        "metric": metric,
        "exclusion": EXCLUSION,
        "cmc_kind": CMC_KIND,
        "max_rank": MAX_RANK,
        "features": source,
        "num_ids": len(folders.test_ids),
        "rerank": None if rerank is None else rerank.to_dict(),
    }
    name = "infrared-to-visible" if direction == "i2v" else "visible-to-infrared"
    title = f"LLCM {name}, {trials} trial{'s' if trials != 1 else ''}, {metric} distance" + (
        "" if rerank is None else f", {rerank.describe()}"
    )
    return Scores(protocol="llcm", settings=settings, trials=tuple(results), title=title)
