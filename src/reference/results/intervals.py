"""95% bootstrap confidence intervals over query identities.

Spec: ``spec/results/intervals.md``.

Per trial ``t`` the evaluation keeps, for each query ``q``, its identity ``p_q``, whether it is
valid, its AP, INP and the 1-based rank of its first hit (``QueryValues``). A figure is a mean
over the valid queries of one per-query value ``v_q`` (``R_k``: ``[first_hit_q <= k]``; mAP:
``AP_q``; mINP: ``INP_q``), averaged over the trials. One bootstrap replicate draws ``n`` of the
``n`` query identities of a trial with replacement; identity ``u`` drawn ``c_u`` times weighs each
of its valid queries by ``c_u``::

    f_t* = sum_u c_u S_tu / sum_u c_u N_tu      S_tu = sum of v_q over valid queries of u
                                                 N_tu = number of valid queries of u
    f*   = (1/T) sum_t f_t*

Trials that share their set of query identities (SYSU-MM01: the same queries every trial) use
the same draw; trials with different sets (RegDB: a split per trial) are drawn independently,
in order of first appearance, from ``numpy.random.default_rng(seed)`` (:func:`draw_counts`).
With ``B`` replicates the interval is the percentile interval: the ``(1-level)/2`` and
``(1+level)/2`` quantiles (linear interpolation) of ``f*``. Replicates in which some trial has no
valid query are left out and counted. Vectorised: a replicate is a row of a ``(B, n)`` count
matrix and every figure of every trial comes out of two matrix products.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.errors import VireidError
from reference.evaluation.metrics import QueryValues

FIGURES: tuple[str, ...] = ("R1", "R5", "R10", "R20", "mAP", "mINP")
DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A figure's value (mean over trials, a fraction) and its bootstrap interval."""

    figure: str
    value: float
    low: float
    high: float
    level: float
    resamples: int  # replicates used (drawn minus those left out)

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "resamples": self.resamples,
        }


def per_query_values(queries: QueryValues, figure: str) -> np.ndarray:
    """``v_q`` of ``figure`` for every query (float64; anything for invalid queries)."""
    if figure.startswith("R") and figure[1:].isdigit():
        return (queries.first_hit <= int(figure[1:])).astype(np.float64)
    if figure == "mAP":
        return np.asarray(queries.ap, dtype=np.float64)
    if figure == "mINP":
        return np.asarray(queries.inp, dtype=np.float64)
    raise VireidError(f"figures: unknown figure {figure!r}; expected R<k>, mAP or mINP")


def _identity_sums(
    queries: QueryValues, ids: np.ndarray, figures: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``S`` (n_ids, n_figures) and ``N`` (n_ids,) of one trial over its identities ``ids``."""
    label = np.searchsorted(ids, queries.pids)
    valid = np.asarray(queries.valid, dtype=bool)
    n = np.bincount(label[valid], minlength=ids.size).astype(np.float64)
    s = np.stack(
        [
            np.bincount(
                label[valid], weights=per_query_values(queries, f)[valid], minlength=ids.size
            )
            for f in figures
        ],
        axis=1,
    )
    return s, n


def _check(per_trial: Sequence[QueryValues | None], resamples: int, level: float) -> None:
    if len(per_trial) == 0:
        raise VireidError("trials: expected the per-query values of at least one trial")
    for t, q in enumerate(per_trial):
        if q is None:
            raise VireidError(
                f"trial {t}: no per-query values (metrics.queries is None); intervals need the "
                "scores of a fresh evaluation, not ones read back from a summary"
            )
        if not np.asarray(q.valid).any():
            raise VireidError(f"trial {t}: no valid query")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise VireidError(f"resamples: expected a positive integer, got {resamples!r}")
    if not (isinstance(level, float) and 0.0 < level < 1.0):
        raise VireidError(f"level: expected a float in (0, 1), got {level!r}")


def draw_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """``(resamples, n)`` int64: how often each of ``n`` identities is drawn in each replicate.

    One ``rng.integers(0, n, (resamples, n))`` call: replicate ``b`` draws identities
    ``draws[b, 0..n-1]`` (positions in the sorted identity list).
    """
    draws = rng.integers(0, n, size=(resamples, n))
    offsets = (np.arange(resamples) * n)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=resamples * n).reshape(resamples, n)


def bootstrap_replicates(
    per_trial: Sequence[QueryValues],
    *,
    figures: Sequence[str] = FIGURES,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """``(resamples, len(figures))`` replicates ``f*`` (NaN rows: a trial without valid query)."""
    _check(per_trial, resamples, DEFAULT_LEVEL)
    rng = np.random.default_rng(seed)
    n_trials = len(per_trial)
    out = np.zeros((resamples, len(figures)), dtype=np.float64)
    groups: dict[bytes, list[int]] = {}
    ids_of: list[np.ndarray] = []
    for t, q in enumerate(per_trial):
        ids = np.unique(q.pids)
        ids_of.append(ids)
        groups.setdefault(ids.astype(np.int64).tobytes(), []).append(t)
    for trials in groups.values():
        ids = ids_of[trials[0]]
        n = ids.size
        counts = draw_counts(rng, n, resamples).astype(np.float64)
        sums = [_identity_sums(per_trial[t], ids, figures) for t in trials]
        s = np.concatenate([s for s, _ in sums], axis=1)  # (n, T_g * F)
        v = np.stack([v for _, v in sums], axis=1)  # (n, T_g)
        num = (counts @ s).reshape(resamples, len(trials), len(figures))
        den = counts @ v  # (B, T_g)
        with np.errstate(invalid="ignore", divide="ignore"):
            out += (num / den[:, :, None]).sum(axis=1)
    return out / n_trials


def bootstrap_intervals(
    per_trial: Sequence[QueryValues | None],
    *,
    figures: Sequence[str] = FIGURES,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict[str, Interval]:
    """The interval of each figure (see the module docstring); fractions, not percent."""
    _check(per_trial, resamples, level)
    queries = [q for q in per_trial if q is not None]
    reps = bootstrap_replicates(queries, figures=figures, resamples=resamples, seed=seed)
    kept = reps[np.isfinite(reps).all(axis=1)]
    if kept.shape[0] == 0:
        raise VireidError("resamples: every replicate drew identities without a valid query")
    low, high = np.quantile(kept, [(1 - level) / 2, (1 + level) / 2], axis=0)
    result = {}
    for i, f in enumerate(figures):
        value = float(
            np.mean([per_query_values(q, f)[q.valid].mean() for q in queries], dtype=np.float64)
        )
        result[f] = Interval(f, value, float(low[i]), float(high[i]), level, int(kept.shape[0]))
    return result
