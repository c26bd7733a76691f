"""The RegDB protocol: one trial per features file, visible-to-thermal or thermal-to-visible.

Spec: ``spec/evaluation/regdb.md``.

Trial ``t`` (features file ``t``): ``v2t`` queries are the visible rows (camid 1) and the gallery
the thermal rows (camid 2); ``t2v`` the reverse. Every query is ranked against the whole gallery
with no camera rule (exclusion ``none``) and the standard CMC (first positive). Figures are
averaged over the files given, with their population standard deviation (``Scores``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from reference.checks import check_choice
from reference.errors import VireidError
from reference.evaluation.distance import check_metric
from reference.evaluation.features import FeatureSet
from reference.evaluation.rerank import RerankSettings
from reference.evaluation.scores import Scores
from reference.evaluation.trials import features_of, score_trial, trial_distance

DIRECTIONS: dict[str, tuple[int, int]] = {"v2t": (1, 2), "t2v": (2, 1)}  # (query, gallery) cam
MODALITY_NAMES = {1: "visible", 2: "thermal"}
MAX_RANK = 20
#: the protocol's ranking rules [protocol]: no camera rule (two cameras, one per modality); the
#: standard CMC
EXCLUSION, CMC_KIND = "none", "standard"


def evaluate_regdb(
    feature_sets: Sequence[FeatureSet],
    *,
    direction: str = "v2t",
    metric: str = "euclidean",
    rerank: RerankSettings | None = None,
    sources: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Scores:
    """Score one RegDB features file per trial (see the module docstring and the spec)."""
    check_choice(direction, "direction", DIRECTIONS, expected="'v2t' or 't2v'")
    check_metric(metric)
    if len(feature_sets) == 0:
        raise VireidError("features: expected at least one RegDB features file (one per trial)")
    if sources is not None and len(sources) != len(feature_sets):
        raise VireidError(
            f"sources: expected {len(feature_sets)} names (one per features file), "
            f"got {len(sources)}"
        )
    q_cam, g_cam = DIRECTIONS[direction]
    dev = torch.device(device) if device is not None else torch.device("cpu")
    results = []
    names = [f"trial {t + 1}" for t in range(len(feature_sets))] if sources is None else sources
    for t, (fs, source) in enumerate(zip(feature_sets, names, strict=True)):
        if fs.dataset != "regdb":
            raise VireidError(f"{source}: expected a RegDB features file (dataset 'regdb')")
        if progress is not None:
            progress(f"RegDB trial {t + 1}/{len(feature_sets)}: {source}")
        q = np.flatnonzero(fs.camids == q_cam)
        g = np.flatnonzero(fs.camids == g_cam)
        for rows, cam, role in ((q, q_cam, "query"), (g, g_cam, "gallery")):
            if rows.size == 0:
                raise VireidError(
                    f"{source}: no {MODALITY_NAMES[cam]} images (camid {cam}): the {role} set "
                    f"of direction {direction} is empty"
                )
        qf, gf = features_of(fs, q, dev), features_of(fs, g, dev)
        results.append(
            score_trial(
                trial_distance(qf, gf, metric, rerank), (fs.pids[q], fs.camids[q]),
                (fs.pids[g], fs.camids[g]), trial=t + 1, rules=(EXCLUSION, CMC_KIND, MAX_RANK),
                chunk_size=chunk_size, where=f"{source}: RegDB",
                source=None if sources is None else source,
            )
        )  # fmt: skip
    settings = {
        "dataset": "regdb",
        "direction": direction,
        "trials": len(feature_sets),
        "metric": metric,
        "exclusion": EXCLUSION,
        "cmc_kind": CMC_KIND,
        "max_rank": MAX_RANK,
        "features": None if sources is None else list(sources),
        "rerank": None if rerank is None else rerank.to_dict(),
    }
    name = "visible-to-thermal" if direction == "v2t" else "thermal-to-visible"
    n = len(feature_sets)
    title = f"RegDB {name}, {n} trial{'s' if n != 1 else ''}, {metric} distance" + (
        "" if rerank is None else f", {rerank.describe()}"
    )
    return Scores(protocol="regdb", settings=settings, trials=tuple(results), title=title)
