"""How the evaluation audit calls another implementation: the field's common signatures.

Spec: ``spec/audit/adapters.md``. An adapter passes a problem's arrays (copies: a target may
write into them) and reads ``(cmc, mAP[, mINP])`` back; anything it cannot read, and any exception
of the target, is a :class:`TargetFailure` (the audit's ``crash`` kind).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.audit.eval_problems import EvalProblem
from reference.audit.target import Target, TargetFailure, target_failures
from reference.checks import check_choice
from reference.errors import VireidError

__all__ = ["ADAPTERS", "TargetFailure", "call_target", "check_adapter", "detect_adapter"]

ADAPTERS: dict[str, str] = {
    "distance": "f(distmat, q_pids, g_pids, q_camids, g_camids, max_rank) -> (cmc, mAP[, mINP]);"
    " smaller = closer",
    "similarity": "f(simmat, q_pids, g_pids, q_camids, g_camids, max_rank) -> (cmc, mAP[, mINP]);"
    " larger = closer (the audit passes -distmat)",
    "torchreid": "evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=..., "
    "use_metric_cuhk03=False, ...) -> (cmc, mAP)",
}


def detect_adapter(target: Target) -> str:
    """The adapter of ``target``'s signature, where its names make it unambiguous."""
    names = [p.name for p in target.parameters()]
    if target.name == "evaluate_rank" or "use_metric_cuhk03" in names:
        return "torchreid"
    first = names[0].lower() if names else ""
    if "sim" in first or "score" in first:
        return "similarity"
    if "dist" in first:
        return "distance"
    raise VireidError(
        f"adapter: cannot tell the signature of {target.spec} (first parameter "
        f"{first or 'unknown'!r}); name one with --adapter: {', '.join(ADAPTERS)}"
    )


def check_adapter(name: str) -> str:
    check_choice(name, "adapter", ADAPTERS)
    return name


def _figures(out: Any, max_rank: int) -> tuple[np.ndarray, float, float | None]:
    if isinstance(out, dict):
        low = {str(k).lower(): v for k, v in out.items()}
        out = tuple(low[k] for k in ("cmc", "map", "minp") if k in low)
    if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
        raise TargetFailure(
            f"returned {type(out).__name__}; expected (cmc, mAP) or (cmc, mAP, mINP)"
        )
    values = [v.detach().cpu().numpy() if hasattr(v, "detach") else v for v in out]
    try:
        cmc = np.asarray(values[0], dtype=np.float64).ravel()
        scalars = [float(np.asarray(v, dtype=np.float64)) for v in values[1:]]
    except (TypeError, ValueError) as exc:
        raise TargetFailure(f"returned figures that are not numbers ({exc})") from None
    if cmc.size < max_rank:
        raise TargetFailure(f"returned a CMC of length {cmc.size}; expected {max_rank}")
    return cmc[:max_rank], scalars[0], scalars[1] if len(scalars) == 2 else None


def call_target(
    target: Target, adapter: str, p: EvalProblem
) -> tuple[np.ndarray, float, float | None]:
    """The target's (cmc[:max_rank], mAP, mINP or None) on ``p``; :class:`TargetFailure` else."""
    matrix = -p.distmat if adapter == "similarity" else p.distmat.copy()
    args = [matrix, *(a.copy() for a in (p.q_pids, p.g_pids, p.q_camids, p.g_camids))]
    names = [q.name for q in target.parameters()]
    kwargs: dict[str, Any] = {}
    if "max_rank" in names:
        kwargs["max_rank"] = p.max_rank
    elif len(names) >= 6:
        args.append(p.max_rank)
    if adapter == "torchreid":
        for name, value in (("use_metric_cuhk03", False), ("use_cython", False)):
            if name in names:
                kwargs[name] = value
    with target_failures():
        out = target.function(*args, **kwargs)
    return _figures(out, p.max_rank)
