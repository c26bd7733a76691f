"""The SYSU-MM01 protocol: all / indoor search, single- / multi-shot, trials averaged. Spec:
``spec/evaluation/sysu.md``. Query: every IR image (cameras 3 and 6) of the test identities.
Gallery of trial ``t``: for each test identity (sorted as zero-padded strings) and each RGB
camera of the mode (all: 1, 2, 4, 5; indoor: 1, 2) whose folder has images, ``shots`` images
drawn by

- ``official``: the frames ``P[cam, pid][t, :shots] - 1`` of the dataset authors'
  ``rand_perm_cam.mat`` (1-based permutations, 10 rows);
- ``agw``: ``random.Random(t)`` (the state of ``random.seed(t)``); single-shot
  ``choice(sorted files)``; multi-shot ``sample(sorted files, min(shots, n))`` (reconstruction).

Each trial is scored with the camera rule ``sysu`` (queries of camera 3 skip gallery camera 2)
and the identity CMC, on the distances to the union of all trials' gallery rows, computed once
(less those the rule skips: ``pairwise_distance_partial``). Figures are trial means (``Scores``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reference.checks import check_choice, check_file, check_integer
from reference.datasets import SYSU_CAMERAS, SYSU_INDOOR_CAMERAS, SYSU_IR_CAMERAS, SYSU_RGB_CAMERAS
from reference.errors import VireidError
from reference.evaluation.columns import take_columns
from reference.evaluation.distance import check_metric, pairwise_distance_partial
from reference.evaluation.features import FeatureSet
from reference.evaluation.pooled import rank_metrics_pooled
from reference.evaluation.ranking import SYSU_QUERY_CAMERA, SYSU_SKIPPED_CAMERA
from reference.evaluation.rerank import RerankSettings, reranked_distance
from reference.evaluation.scores import Scores, TrialScores
from reference.evaluation.trials import features_of, labels_of, score_trial

MODES: dict[str, tuple[int, ...]] = {"all": SYSU_RGB_CAMERAS, "indoor": SYSU_INDOOR_CAMERAS}
IR_CAMERAS: tuple[int, ...] = SYSU_IR_CAMERAS
ALL_CAMERAS: tuple[int, ...] = SYSU_CAMERAS
SHOTS: tuple[int, ...] = (1, 10)
SAMPLINGS: tuple[str, ...] = ("official", "agw")
OFFICIAL_TRIALS = 10
MAX_RANK = 20
#: the protocol's ranking rules [protocol]: camera-3 queries skip camera 2; identity CMC
EXCLUSION, CMC_KIND = "sysu", "identity"

Folder = tuple[int, int]  # (camera, identity)


def id_sort_key(pid: int) -> str:
    """The common code sorts identities as ``%04d`` strings; equal to numeric order below 10000."""
    return f"{pid:04d}"


# ---------------------------------------------------------------------------------------------
# folders of the features file
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SysuFolders:
    """The rows of a SYSU-MM01 features file grouped by ``cam<c>/<pid:04d>`` folder.

    ``rows[(cam, pid)][k]`` is the row of the image at position ``k`` of the folder's sorted file
    list; only folders with at least one image appear.
    """

    rows: Mapping[Folder, np.ndarray]
    test_ids: tuple[int, ...]  # in the common code's order (zero-padded strings)

    def count(self, cam: int, pid: int) -> int:
        folder = self.rows.get((cam, pid))
        return 0 if folder is None else int(folder.shape[0])


def folders_of(fs: FeatureSet, source: str = "features") -> SysuFolders:
    """Group rows by folder and check each folder's frames are exactly ``0..n-1``."""
    if fs.dataset != "sysu" or fs.frames is None:
        raise VireidError(f"{source}: expected a SYSU-MM01 features file (dataset 'sysu')")
    order = np.lexsort((fs.frames, fs.pids, fs.camids))
    cams, pids, frames = fs.camids[order], fs.pids[order], fs.frames[order]
    starts = np.flatnonzero(np.r_[True, (cams[1:] != cams[:-1]) | (pids[1:] != pids[:-1])])
    stops = np.r_[starts[1:], len(order)]
    rows: dict[Folder, np.ndarray] = {}
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        cam, pid, n = int(cams[a]), int(pids[a]), b - a
        got = frames[a:b]
        if int(got[-1]) != n - 1:  # frames are unique (validated), so 0..n-1 iff max == n-1
            missing = np.setdiff1d(np.arange(int(got[-1]) + 1), got)[:5].tolist()
            raise VireidError(
                f"{source}: folder cam{cam}/{pid:04d} has {n} rows with frames up to {got[-1]}; "
                f"expected frames exactly 0..{n - 1} (missing frame(s) "
                f"{', '.join(map(str, missing))}): the features file must hold every image "
                "of the test folders"
            )
        rows[(cam, pid)] = order[a:b]
    test_ids = tuple(sorted({int(p) for p in fs.pids.tolist()}, key=id_sort_key))
    return SysuFolders(rows=rows, test_ids=test_ids)


# ---------------------------------------------------------------------------------------------
# the official split
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfficialSplit:
    """The dataset authors' gallery permutations, 0-based.

    ``perms[(cam, pid)]`` is an int64 ``(10, n)`` array whose row ``t`` is a permutation of
    ``0..n-1`` (the file's 1-based entries minus one); folders with ``n = 0`` are absent.
    ``test_ids`` holds ``id`` of a ``test_id.mat`` beside the split file, if there is one.
    """

    path: Path
    perms: Mapping[Folder, np.ndarray]
    test_ids: tuple[int, ...] | None

    def count(self, cam: int, pid: int) -> int:
        perm = self.perms.get((cam, pid))
        return 0 if perm is None else int(perm.shape[1])


def load_official_split(path: str | os.PathLike[str]) -> OfficialSplit:
    """Read ``rand_perm_cam.mat``: ``rand_perm_cam[cam-1, 0][pid-1, 0]`` is ``(10, n)``."""
    import scipy.io

    path = check_file(
        path, "path", expected="the file rand_perm_cam.mat",
        missing="split file not found (expected rand_perm_cam.mat)",
    )  # fmt: skip
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise VireidError(
            f"{path}: cannot read split file (expected a MATLAB .mat): {exc}"
        ) from exc
    if "rand_perm_cam" not in mat:
        raise VireidError(f"{path}: missing variable 'rand_perm_cam' (expected the official split)")
    cells = np.asarray(mat["rand_perm_cam"])
    if cells.dtype != object or cells.shape != (6, 1):
        raise VireidError(
            f"{path}: variable 'rand_perm_cam': expected a 6 x 1 cell array, got "
            f"{cells.shape} of {cells.dtype}"
        )
    perms: dict[Folder, np.ndarray] = {}
    for cam in ALL_CAMERAS:
        per_id = np.asarray(cells[cam - 1, 0])
        if per_id.dtype != object or per_id.ndim != 2 or per_id.shape[1] != 1:
            raise VireidError(
                f"{path}: rand_perm_cam{{{cam}}}: expected an n_ids x 1 cell array, got "
                f"{per_id.shape} of {per_id.dtype}"
            )
        for index in range(per_id.shape[0]):
            entry = np.asarray(per_id[index, 0])
            if entry.size == 0:
                continue
            pid = index + 1
            if (
                entry.ndim != 2
                or entry.shape[0] != OFFICIAL_TRIALS
                or entry.dtype.kind not in "iuf"
            ):
                raise VireidError(
                    f"{path}: rand_perm_cam{{{cam}}}{{{pid}}}: expected a numeric "
                    f"{OFFICIAL_TRIALS} x n matrix, got {entry.shape} of {entry.dtype}"
                )
            n = entry.shape[1]
            perm = entry.astype(np.int64)
            if not (np.sort(perm, axis=1) == np.arange(1, n + 1)).all() or (perm != entry).any():
                raise VireidError(
                    f"{path}: rand_perm_cam{{{cam}}}{{{pid}}}: every row must be a permutation "
                    f"of 1..{n}"
                )
            perms[(cam, pid)] = perm - 1
    test_ids = None
    beside = path.parent / "test_id.mat"
    if beside.is_file():
        try:
            ids = np.asarray(scipy.io.loadmat(beside)["id"]).ravel()
        except Exception as exc:
            raise VireidError(
                f"{beside}: cannot read variable 'id' (test identities): {exc}"
            ) from exc
        test_ids = tuple(sorted(int(i) for i in ids))
    return OfficialSplit(path=path, perms=perms, test_ids=test_ids)


def check_split_matches(split: OfficialSplit, folders: SysuFolders, source: str) -> None:
    """Every test identity's folder sizes in every camera must equal the split's ``n``."""
    if split.test_ids is not None and set(split.test_ids) != set(folders.test_ids):
        extra = sorted(set(folders.test_ids) - set(split.test_ids))[:5]
        absent = sorted(set(split.test_ids) - set(folders.test_ids))[:5]
        raise VireidError(
            f"split file does not match features: {source} holds {len(folders.test_ids)} "
            f"identities, {split.path.parent / 'test_id.mat'} lists {len(split.test_ids)} "
            f"(not in the test ids: {extra}; missing from the features: {absent})"
        )
    for pid in folders.test_ids:
        for cam in ALL_CAMERAS:
            n_split, n_feat = split.count(cam, pid), folders.count(cam, pid)
            if n_split != n_feat:
                raise VireidError(
                    f"split file does not match features: camera {cam}, identity {pid}: "
                    f"{split.path} has {n_split} images, {source} has {n_feat}"
                )


# ---------------------------------------------------------------------------------------------
# gallery draws: rows of the features file, in the common code's order
# ---------------------------------------------------------------------------------------------


def agw_gallery(folders: SysuFolders, *, mode: str, shots: int, trial: int) -> np.ndarray:
    """The common Python code's draw for ``trial`` (``random.seed(trial)``), as feature rows."""
    rng = random.Random(trial)  # the same state as random.seed(trial), without global state
    picked: list[int] = []
    several: list[np.ndarray] = []
    for pid in folders.test_ids:
        for cam in MODES[mode]:
            rows = folders.rows.get((cam, pid))
            if rows is None:  # the common code skips folders that do not exist
                continue
            n = rows.shape[0]
            if shots == 1:
                # choice() depends only on the length: the index into the sorted file list
                picked.append(int(rows[rng.choice(range(n))]))
            else:
                several.append(rows[rng.sample(range(n), min(shots, n))])
    if shots != 1:
        return np.concatenate(several) if several else np.zeros(0, dtype=np.int64)
    return np.asarray(picked, dtype=np.int64)


def official_gallery(
    folders: SysuFolders, split: OfficialSplit, *, mode: str, shots: int, trial: int
) -> np.ndarray:
    """The first ``shots`` entries of row ``trial`` of each folder's permutation, as rows."""
    picked: list[int] = []
    for pid in folders.test_ids:
        for cam in MODES[mode]:
            perm = split.perms.get((cam, pid))
            if perm is None:
                continue
            picked.extend(folders.rows[(cam, pid)][perm[trial, :shots]].tolist())
    return np.asarray(picked, dtype=np.int64)


def query_rows(folders: SysuFolders) -> np.ndarray:
    """Every IR image of the test identities, in the common code's order (id, camera, file)."""
    picked: list[np.ndarray] = []
    for pid in folders.test_ids:
        for cam in IR_CAMERAS:
            rows = folders.rows.get((cam, pid))
            if rows is not None:
                picked.append(rows)
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# the protocol
# ---------------------------------------------------------------------------------------------


def _check_settings(mode: object, shots: object, sampling: object, trials: object) -> None:
    check_choice(mode, "mode", MODES, expected="'all' or 'indoor'")
    check_choice(shots, "shots", SHOTS, expected="1 (single-shot) or 10 (multi-shot)")
    check_choice(sampling, "sampling", SAMPLINGS, expected="'official' or 'agw'")
    check_integer(trials, "trials", low=1, numpy=False)
    if sampling == "official" and trials > OFFICIAL_TRIALS:
        raise VireidError(
            f"trials: the official split has {OFFICIAL_TRIALS} trials, got trials={trials}"
        )


def evaluate_sysu(
    fs: FeatureSet,
    *,
    mode: str = "all",
    shots: int = 1,
    sampling: str = "agw",
    split: OfficialSplit | str | os.PathLike[str] | None = None,
    trials: int = 10,
    metric: str = "euclidean",
    rerank: RerankSettings | None = None,
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
    source: str = "features",
    progress: Callable[[str], None] | None = None,
) -> Scores:
    """Score ``fs`` under the SYSU-MM01 protocol (see the module docstring and the spec).

    With ``rerank`` each trial's distances are re-ranked (``rerank.md``) over its own queries
    and gallery.
    """
    _check_settings(mode, shots, sampling, trials)
    check_metric(metric)
    folders = folders_of(fs, source)
    if sampling == "official":
        if split is None:
            raise VireidError(
                "split: sampling 'official' needs the dataset authors' rand_perm_cam.mat "
                "(CLI: --split)"
            )
        if not isinstance(split, OfficialSplit):
            split = load_official_split(split)
        check_split_matches(split, folders, source)
    elif split is not None:
        raise VireidError("split: only used with sampling 'official'")
    queries = query_rows(folders)
    if queries.size == 0:
        raise VireidError(f"{source}: no query: the features hold no IR image (camera 3 or 6)")
    galleries = []
    for t in range(trials):
        if sampling == "official":
            assert isinstance(split, OfficialSplit)
            rows = official_gallery(folders, split, mode=mode, shots=shots, trial=t)
        else:
            rows = agw_gallery(folders, mode=mode, shots=shots, trial=t)
        if rows.size == 0:
            cams = ", ".join(map(str, MODES[mode]))
            raise VireidError(
                f"{source}: empty gallery: no test identity has an image in cameras {cams} "
                f"({mode} search)"
            )
        galleries.append(rows)

    # one distance matrix for every gallery row any trial uses (camera 2 last: camera-3 queries
    # skip them, their distances are not computed; sysu.md, "Computation"), sliced per trial
    union = np.unique(np.concatenate(galleries))
    union = union[np.argsort(fs.camids[union] == SYSU_SKIPPED_CAMERA, kind="stable")]
    width = int((fs.camids[union] != SYSU_SKIPPED_CAMERA).sum())
    dev = torch.device(device) if device is not None else torch.device("cpu")
    qf = features_of(fs, queries, dev)
    q_pids = torch.from_numpy(fs.pids[queries]).to(dev)
    q_cams = torch.from_numpy(fs.camids[queries]).to(dev)
    dist = None
    if rerank is None:  # re-ranking works trial by trial (below)
        short, g = q_cams == SYSU_QUERY_CAMERA, features_of(fs, union, dev)
        dist = pairwise_distance_partial(qf, g, metric, short_rows=short, width=width)

    g_pids = torch.from_numpy(fs.pids[union]).to(dev)
    g_cams = torch.from_numpy(fs.camids[union]).to(dev)
    order = np.argsort(union)  # each gallery row's column in the pool
    columns = [order[np.searchsorted(union, rows, sorter=order)] for rows in galleries]
    pooled = None
    if dist is not None:
        try:  # every trial at once (one row sort); same figures as the loop below
            pooled = rank_metrics_pooled(
                dist, q_pids, g_pids, q_cams, g_cams, columns,
                exclusion=EXCLUSION, cmc_kind=CMC_KIND, max_rank=MAX_RANK,
                chunk_size=chunk_size,
            )  # fmt: skip
        except VireidError:
            pooled = None  # the loop below names the failing trial
    results = []
    for t, rows in enumerate(galleries):
        if progress is not None:
            progress(f"SYSU-MM01 trial {t + 1}/{trials}: {queries.size} x {rows.size}")
        if pooled is not None:
            results.append(TrialScores(trial=t, metrics=pooled[t], num_gallery=int(rows.size)))
            continue
        if dist is not None:
            trial_dist = take_columns(dist, torch.from_numpy(columns[t]))
        else:
            gf = features_of(fs, rows, dev)
            trial_dist = reranked_distance(qf, gf, metric, rerank)
        results.append(
            score_trial(
                trial_dist, (q_pids, q_cams), labels_of(fs, rows, dev), trial=t,
                rules=(EXCLUSION, CMC_KIND, MAX_RANK), chunk_size=chunk_size,
                where=f"{source}: SYSU-MM01",
            )
        )  # fmt: skip

    settings = {
        "dataset": "sysu",
        "mode": mode,
        "shots": shots,
        "sampling": sampling,
        "trials": trials,
        "metric": metric,
        "exclusion": EXCLUSION,
        "cmc_kind": CMC_KIND,
        "max_rank": MAX_RANK,
        "features": source,
        "split": str(split.path) if isinstance(split, OfficialSplit) else None,
        "num_ids": len(folders.test_ids),
        "rerank": None if rerank is None else rerank.to_dict(),
    }
    shot_name = "single-shot" if shots == 1 else f"multi-shot ({shots})"
    title = (
        f"SYSU-MM01 {mode}-search, {shot_name}, {sampling} draw, {trials} trial"
        f"{'s' if trials != 1 else ''}, {metric} distance"
        + ("" if rerank is None else f", {rerank.describe()}")
    )
    return Scores(protocol="sysu", settings=settings, trials=tuple(results), title=title)
