"""SynthVI's split planning: which identities are train, val and test, and how many images
each identity has in each camera.

Spec: ``spec/data/synthvi.md`` (sections on the splits). SYSU-MM01: the real 296/99/96 split
proportions (at least 2/1/2 identities) and, per identity and camera, a presence draw and an
image count; every identity has both modalities. RegDB: ten trials, each a random half of the
identities for training (an odd count favours test).
"""

from __future__ import annotations

import numpy as np

from reference.checks import check_integer
from reference.data.synthvi_render import S_IDENTITY, S_REGDB_SPLIT, S_SPLIT, rng
from reference.datasets import REGDB_TRIALS, SYSU_IDS, SYSU_IR_CAMERAS, SYSU_RGB_CAMERAS

__all__ = [
    "MAX_IDS",
    "MAX_SEED",
    "MIN_IDS_REGDB",
    "MIN_IDS_SYSU",
    "check_ids",
    "check_synth_int",
    "regdb_split",
    "sysu_plan",
    "sysu_split_sizes",
]

# Real SYSU-MM01: 296 train, 99 val, 96 test of 491 identities.
_SYSU_PROPORTIONS = tuple(SYSU_IDS[s] / SYSU_IDS["available"] for s in ("train", "val", "test"))
MIN_IDS_SYSU = 5
MIN_IDS_REGDB = 4
# Four-digit SYSU-MM01 identity folders; five-digit RegDB frame numbers (10 images per id).
MAX_IDS = 9999
MAX_SEED = 2**32 - 1
# Images per identity per SYSU camera, inclusive range; camera presence probability.
_SYSU_IMAGES = (2, 6)
_SYSU_PRESENCE = 0.75


def check_synth_int(name: str, value: object, low: int, high: int | None, why: str = "") -> int:
    """``int(value)`` if it is an integer from ``low`` to ``high``; ``why`` ends the message."""
    bound = f"from {low} to {high}" if high is not None else f">= {low}"
    return check_integer(value, name, low=low, high=high, expected=f"an integer {bound}{why}")


def check_ids(ids: object, layout: str) -> int:
    """The identity count of a ``layout`` (``sysu`` or ``regdb``) dataset, checked."""
    if layout == "sysu":
        why = " (train, val and test need at least 2, 1 and 2 identities)"
        return check_synth_int("ids", ids, MIN_IDS_SYSU, MAX_IDS, why)
    why = " (each half, train and test, needs at least 2 identities)"
    return check_synth_int("ids", ids, MIN_IDS_REGDB, MAX_IDS, why)


def sysu_split_sizes(ids: int) -> tuple[int, int, int]:
    """(train, val, test) identity counts: the real 296/99/96 proportions, at least 2/1/2."""
    ids = check_ids(ids, "sysu")
    test = max(2, round(ids * _SYSU_PROPORTIONS[2]))
    val = max(1, round(ids * _SYSU_PROPORTIONS[1]))
    return ids - val - test, val, test


def sysu_plan(ids: int, seed: int) -> tuple[dict[str, list[int]], dict[int, np.ndarray]]:
    """Split and per-camera image counts: counts[pid][cam - 1] (0 = absent)."""
    n_train, n_val, _ = sysu_split_sizes(ids)
    pids = np.arange(1, ids + 1)
    perm = rng(seed, S_SPLIT).permutation(pids)
    split = {
        "train": sorted(int(p) for p in perm[:n_train]),
        "val": sorted(int(p) for p in perm[n_train : n_train + n_val]),
        "test": sorted(int(p) for p in perm[n_train + n_val :]),
    }
    counts = {}
    rgb = np.array(SYSU_RGB_CAMERAS) - 1
    ir = np.array(SYSU_IR_CAMERAS) - 1
    for pid in pids:
        g = rng(seed, S_IDENTITY, int(pid), 1)
        present = g.random(6) < _SYSU_PRESENCE
        # Every identity has both modalities (the readers reject one-modality identities).
        if not present[rgb].any():
            present[g.choice(rgb)] = True
        if not present[ir].any():
            present[g.choice(ir)] = True
        n = g.integers(_SYSU_IMAGES[0], _SYSU_IMAGES[1] + 1, size=6)
        counts[int(pid)] = np.where(present, n, 0)
    return split, counts


def regdb_split(ids: int, seed: int, trial: int) -> tuple[list[int], list[int]]:
    """(train pids, test pids) of RegDB trial ``trial`` (1..10); an odd id count favours test."""
    ids = check_ids(ids, "regdb")
    seed = check_synth_int("seed", seed, 0, MAX_SEED)
    trial = check_synth_int("trial", trial, 1, REGDB_TRIALS)
    perm = rng(seed, S_REGDB_SPLIT, trial).permutation(np.arange(1, ids + 1))
    n_train = ids // 2
    return sorted(int(p) for p in perm[:n_train]), sorted(int(p) for p in perm[n_train:])
