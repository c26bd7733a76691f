"""Hand-made scores and run records for the results tests: figures chosen, per-query values real.

Each identity gets its own difficulty around the target figures, so the bootstrap intervals have
the width a test set of that many identities gives.
"""

from __future__ import annotations

import numpy as np

from reference.evaluation.metrics import QueryValues, RankMetrics
from reference.evaluation.scores import Scores, TrialScores
from reference.results.record import ProtocolResult, RunRecord


def fake_metrics(
    rng: np.random.Generator, *, r1: float, m_ap: float, n_ids: int, per_id: int, kind: str
) -> RankMetrics:
    pids = np.repeat(np.arange(1, n_ids + 1), per_id).astype(np.int64)
    p_hit = np.clip(r1 + 0.2 * rng.standard_normal(n_ids), 0.0, 1.0)[pids - 1]
    first = np.where(rng.random(pids.size) < p_hit, 1, rng.integers(2, 40, pids.size))
    ap = np.clip(m_ap + 0.15 * rng.standard_normal(n_ids), 0.0, 1.0)[pids - 1]
    ap = np.clip(ap + 0.05 * rng.standard_normal(pids.size), 0.0, 1.0)
    inp = 0.7 * ap
    valid = np.ones(pids.size, dtype=bool)
    cmc = np.array([(first <= r).mean() for r in range(1, 21)])
    return RankMetrics(
        cmc=cmc,
        mAP=float(ap.mean()),
        mINP=float(inp.mean()),
        num_valid=int(pids.size),
        num_query=int(pids.size),
        max_rank=20,
        exclusion="sysu" if kind == "identity" else "none",
        cmc_kind=kind,
        queries=QueryValues(ap=ap, inp=inp, first_hit=first, valid=valid, pids=pids),
    )


def fake_scores(
    dataset: str = "sysu",
    *,
    mode: str = "all",
    shots: int = 1,
    sampling: str = "agw",
    direction: str = "v2t",
    r1: float = 0.6,
    m_ap: float = 0.55,
    trials: int = 3,
    n_ids: int = 96,
    per_id: int = 20,
    seed: int = 0,
    rerank: bool = False,
) -> Scores:
    rng = np.random.default_rng(seed)
    kind = "identity" if dataset == "sysu" else "standard"
    results = tuple(
        TrialScores(
            trial=t,
            metrics=fake_metrics(rng, r1=r1, m_ap=m_ap, n_ids=n_ids, per_id=per_id, kind=kind),
            num_gallery=301,
        )
        for t in range(trials)
    )
    if dataset == "sysu":
        settings = {"dataset": "sysu", "mode": mode, "shots": shots, "sampling": sampling}
    else:
        settings = {"dataset": dataset, "direction": direction}
    settings.update({"trials": trials, "metric": "euclidean", "max_rank": 20})
    if rerank:
        settings["rerank"] = True
    return Scores(protocol=dataset, settings=settings, trials=results, title=f"fake {dataset}")


def fake_record(*scores: Scores, name: str = "fake", resamples: int = 200) -> RunRecord:
    record = RunRecord.new(
        name=name,
        config={"kind": "method_b", "epochs": 1},
        seeds={"train": 0},
        training={"epochs": 1, "wall_time_s": 1.0, "images_per_s": 10.0},
        model_selection={"rule": "last epoch", "epoch": 1},
    )
    for s in scores:
        record = record.with_protocol(ProtocolResult.from_scores(s, resamples=resamples))
    return record
