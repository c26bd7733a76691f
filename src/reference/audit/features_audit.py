"""``vireid audit features F.npz --protocol P --claimed R1=..,mAP=..``: re-score and compare.

Spec: ``spec/audit/features.md``. Another implementation's features (the features file of
``spec/evaluation/features.md``; for ``market`` the same keys plus a boolean ``query`` array;
for ``llcm`` an LLCM features file, scored in one direction, ``i2v`` or ``v2i``) are
scored under this project's protocol, and the figures its authors report are compared with them.
When they differ by more than the tolerance, the same features are re-scored with one choice
changed at a time (CMC kind, camera rule, AP formula, distance): a variant that reproduces every
claimed figure names the kind of the difference; if none does, the finding is ``claim``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reference.audit.eval_oracle import Choices, oracle_figures
from reference.audit.kinds import Finding
from reference.audit.report import AuditReport
from reference.checks import check_choice, parse_number
from reference.errors import VireidError
from reference.evaluation import llcm, regdb, sysu
from reference.evaluation.distance import pairwise_distance
from reference.evaluation.features import load_features
from reference.evaluation.metrics import rank_metrics

FIGURES = ("R1", "R5", "R10", "R20", "mAP", "mINP")
MAX_RANK = 20


def parse_claimed(text: str) -> dict[str, float]:
    """``"R1=47.5,mAP=45.0"`` -> ``{"R1": 47.5, "mAP": 45.0}`` (percent)."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name not in FIGURES:
            raise VireidError(
                f"--claimed: expected NAME=PERCENT pairs with NAME in {', '.join(FIGURES)}, "
                f"got {part.strip()!r}"
            )
        number = parse_number(value, f"--claimed: {name}", expected="a number in percent")
        if not 0 <= number <= 100:
            raise VireidError(f"--claimed: {name}: expected a percentage in [0, 100], got {number}")
        out[name] = number
    return out


@dataclass(frozen=True)
class Trial:
    distmat: torch.Tensor  # euclidean
    cosine: torch.Tensor
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray


@dataclass(frozen=True)
class Variant:
    kind: str | None  # None: the reference
    label: str
    exclusion: str
    cmc_kind: str
    metric: str = "euclidean"
    ap: str = "exact"


PROTOCOL_SETTINGS = {
    "sysu": (sysu.EXCLUSION, sysu.CMC_KIND),
    "regdb": (regdb.EXCLUSION, regdb.CMC_KIND),
    "market": ("same-id-same-camera", "standard"),
    "llcm": (llcm.EXCLUSION, llcm.CMC_KIND),
}
#: the other camera rules tried as variants: none for RegDB, whose two cameras no rule separates;
#: LLCM's cameras are not SYSU-MM01's, so its camera-3 rule means nothing there
OTHER_RULES = {
    "sysu": ("same-id-same-camera", "none"),
    "regdb": (),
    "market": ("sysu", "none"),
    "llcm": ("none",),
}


def variants(protocol: str) -> list[Variant]:
    """The reference and the variants tried against a claim, in the report's order."""
    rule, kind = PROTOCOL_SETTINGS[protocol]
    other = "standard" if kind == "identity" else "identity"
    out = [
        Variant(None, "reference", rule, kind),
        Variant("cmc-kind", f"{other} CMC", rule, other),
        Variant("ap-formula", "trapezoidal AP (Market-1501 code)", rule, kind, ap="trapezoid"),
        Variant("distance", "cosine distance", rule, kind, metric="cosine"),
    ]
    for r in OTHER_RULES[protocol]:
        out.append(Variant("camera-rule", f"rule {r!r}", r, kind))
    return out


def _trial(features: np.ndarray, q: np.ndarray, g: np.ndarray, pids, camids) -> Trial:
    qf, gf = torch.from_numpy(features[q]), torch.from_numpy(features[g])
    return Trial(
        pairwise_distance(qf, gf, "euclidean"),
        pairwise_distance(qf, gf, "cosine"),
        pids[q], pids[g], camids[q], camids[g],
    )  # fmt: skip


def load_trials(path: Path, protocol: str, trials: int, direction: str = "i2v") -> list[Trial]:
    """The query/gallery trials of ``path`` under ``protocol`` (``direction``: LLCM's)."""
    if protocol == "sysu":
        fs = load_features(path, "sysu")
        folders = sysu.folders_of(fs, str(path))
        queries = sysu.query_rows(folders)
        if queries.size == 0:
            raise VireidError(f"{path}: no query: the features hold no IR image (camera 3 or 6)")
        galleries = [sysu.agw_gallery(folders, mode="all", shots=1, trial=t) for t in range(trials)]
        return [_trial(fs.features, queries, g, fs.pids, fs.camids) for g in galleries]
    if protocol == "regdb":
        fs = load_features(path, "regdb")
        q_cam, g_cam = regdb.DIRECTIONS["v2t"]
        q, g = np.flatnonzero(fs.camids == q_cam), np.flatnonzero(fs.camids == g_cam)
        if q.size == 0 or g.size == 0:
            raise VireidError(f"{path}: expected visible (camid 1) and thermal (camid 2) rows")
        return [_trial(fs.features, q, g, fs.pids, fs.camids)]
    if protocol == "llcm":
        fs = load_features(path, "llcm")
        folders = llcm.folders_of(fs, str(path))
        q_mod, g_mod = llcm.DIRECTIONS[direction]
        queries = llcm.query_rows(folders, q_mod)
        galleries = [llcm.gallery_rows(folders, g_mod, t) for t in range(trials)]
        if queries.size == 0 or galleries[0].size == 0:
            raise VireidError(
                f"{path}: expected visible and infrared rows for the {direction} direction"
            )
        # LLCM's camera k is one place in both modalities: the rule reads the camera ids as they are
        return [_trial(fs.features, queries, g, fs.pids, fs.camids) for g in galleries]
    return [_market_trial(path)]


def _market_trial(path: Path) -> Trial:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise VireidError(f"{path}: not a readable .npz features file ({exc})") from None
    for key in ("features", "pids", "camids", "query"):
        if key not in arrays:
            raise VireidError(
                f"{path}: missing key {key!r}; a market features file holds features, pids, "
                "camids and a boolean 'query' array"
            )
    query = arrays["query"]
    if query.dtype != np.bool_ or query.shape != arrays["pids"].shape:
        raise VireidError(f"{path}: query: expected a boolean array of shape (n,)")
    features = np.asarray(arrays["features"], dtype=np.float64)
    pids, camids = arrays["pids"].astype(np.int64), arrays["camids"].astype(np.int64)
    return _trial(features, np.flatnonzero(query), np.flatnonzero(~query), pids, camids)


def _score(trial: Trial, v: Variant) -> dict[str, float]:
    dist = trial.cosine if v.metric == "cosine" else trial.distmat
    max_rank = min(MAX_RANK, dist.shape[1])
    m = rank_metrics(dist, trial.q_pids, trial.g_pids, trial.q_camids, trial.g_camids,
                     exclusion=v.exclusion, cmc_kind=v.cmc_kind, max_rank=max_rank)  # fmt: skip
    out = {f"R{r}": float(m.cmc[min(r, max_rank) - 1]) for r in (1, 5, 10, 20)}
    out["mAP"], out["mINP"] = m.mAP, m.mINP
    if v.ap != "exact":
        choices = Choices(ap=v.ap, cmc=v.cmc_kind, rule=v.exclusion)
        out["mAP"] = oracle_figures(dist.numpy(), trial.q_pids, trial.g_pids, trial.q_camids,
                                    trial.g_camids, max_rank, choices).mAP  # fmt: skip
    return out


def _mean(trials: list[Trial], v: Variant) -> dict[str, float]:
    per = [_score(t, v) for t in trials]
    return {name: 100 * float(np.mean([p[name] for p in per])) for name in FIGURES}


def check_protocol_direction(protocol: object, direction: object = None) -> str:
    """``protocol`` one of ``PROTOCOL_SETTINGS`` and ``direction`` LLCM's (``None``: ``'i2v'``
    for LLCM), else an error naming the argument; the direction to score."""
    check_choice(protocol, "protocol", PROTOCOL_SETTINGS)
    if protocol != "llcm" and direction is not None:
        raise VireidError(f"direction: only used with protocol 'llcm', got {direction!r}")
    direction = "i2v" if direction is None else direction
    return check_choice(direction, "direction", llcm.DIRECTIONS, expected="'i2v' or 'v2i'")


def audit_features(
    path: str | os.PathLike[str],
    *,
    protocol: str,
    claimed: dict[str, float],
    tolerance: float = 0.5,
    trials: int = 10,
    direction: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Score ``path`` under ``protocol``; compare with ``claimed``; name what reproduces it.

    ``direction``: LLCM's, ``'i2v'`` (default) or ``'v2i'``; no other protocol takes one."""
    direction = check_protocol_direction(protocol, direction)
    if not claimed:
        raise VireidError("--claimed: expected at least one figure, e.g. R1=47.5,mAP=45.0")
    if not tolerance > 0:
        raise VireidError(f"--tolerance: expected a positive number of points, got {tolerance}")
    path = Path(path)
    data = load_trials(path, protocol, trials, direction)
    table: list[dict[str, Any]] = []
    findings: list[Finding] = []
    for v in variants(protocol):
        if progress is not None:
            progress(v.label)
        figures = _mean(data, v)
        gaps = {k: figures[k] - claimed[k] for k in claimed}
        worst = max(abs(g) for g in gaps.values())
        table.append({"variant": v.label, "kind": v.kind, "figures": figures, "worst": worst})
        if v.kind is None and worst <= tolerance:
            break  # the reference reproduces the claim: nothing to explain
        if v.kind is not None and worst <= tolerance:
            found = next((f for f in findings if f.kind == v.kind), None)
            if found is None:
                found = Finding(v.kind, problems=1, cases=["claimed figures"])
                findings.append(found)
            found.variants.append(f"{v.kind}: {v.label} reproduces the claim")
            found.difference = max(found.difference, table[0]["worst"])
    reference_worst = table[0]["worst"]
    if reference_worst > tolerance and not findings:
        findings.append(Finding(
            "claim", [f"no variant comes within {tolerance} points of every claimed figure"],
            reference_worst, 1, ["claimed figures"],
        ))  # fmt: skip
    head = "| figure | claimed | " + " | ".join(row["variant"] for row in table) + " |"
    lines = ["Figures in percent (mean over trials):", "", head,
             "|---" * (len(table) + 2) + "|"]  # fmt: skip
    for name in FIGURES:
        cells = [f"{row['figures'][name]:.2f}" for row in table]
        claim = f"{claimed[name]:.2f}" if name in claimed else "—"
        lines.append(f"| {name} | {claim} | " + " | ".join(cells) + " |")
    settings = {
        "protocol": protocol,
        "reference": "rank_metrics(exclusion={!r}, cmc_kind={!r}), euclidean distance".format(
            *PROTOCOL_SETTINGS[protocol]
        ),
        "trials": len(data),
        "tolerance_points": tolerance,
        "claimed": claimed,
    }
    if protocol == "sysu":
        settings["draw"] = "all-search, single-shot, the common code's gallery draw"
    if protocol == "llcm":
        settings["direction"] = direction
        settings["draw"] = "the public code's gallery draw, one image per identity and camera"
    return AuditReport(
        "features", str(path), settings, findings, [], len(data),
        extra={"claims": table, "claims_markdown": lines},
    )  # fmt: skip
