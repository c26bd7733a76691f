"""``vireid audit eval``: run another evaluation function and this project's on one battery.

Spec: ``spec/audit/eval.md`` (battery, explanations), ``spec/audit/adapters.md`` (signatures).

Each problem is a distance matrix with query and gallery identities and cameras. The target is
called through an adapter; the reference is :func:`reference.evaluation.metrics.rank_metrics`
with the protocol's settings, checked against the float64 loop oracle of
:mod:`reference.audit.eval_oracle` on every problem. When the target's CMC, mAP (and mINP, if it
returns one) differ from the reference's, the oracle is re-run with one choice changed at a time
(then two): the choices whose other value reproduces the target's figures name the difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from reference.audit import battery
from reference.audit.battery import Alternative, BatteryResult, Case, Observation, run_battery
from reference.audit.eval_adapters import (
    ADAPTERS,
    TargetFailure,
    call_target,
    check_adapter,
    detect_adapter,
)
from reference.audit.eval_oracle import Choices, oracle_figures
from reference.audit.eval_problems import (
    PROBES,
    EvalProblem,
    EvalProtocol,
    check_protocol,
    probe_strategy,
    spec_examples,
)
from reference.audit.target import Target
from reference.errors import VireidError
from reference.evaluation.metrics import rank_metrics

__all__ = [
    "ADAPTERS", "PROBES", "EvalProblem", "TargetFailure", "audit_eval", "call_target",
    "check_adapter", "check_protocol", "detect_adapter", "eval_cases", "explain",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# explanations
# ---------------------------------------------------------------------------------------------


#: agreement: figures equal to this (absolute; figures are fractions in [0, 1])
EXACT = 1e-10


def reference_choices(protocol: EvalProtocol) -> Choices:
    return Choices(cmc=protocol.cmc_kind, rule=protocol.exclusion)


def _single_changes(ref: Choices, square: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, variant label, changed fields) for every other value of every choice."""
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("ap-formula", "trapezoidal AP (Market-1501 code)", {"ap": "trapezoid"}),
        ("ap-formula", "interpolated AP (best precision at a later positive)",
         {"ap": "interpolated"}),
        ("cmc-kind", f"{'standard' if ref.cmc == 'identity' else 'identity'} CMC",
         {"cmc": "standard" if ref.cmc == "identity" else "identity"}),
    ]  # fmt: skip
    for rule in ("sysu", "same-id-same-camera", "none"):
        if rule != ref.rule:
            out.append(("camera-rule", f"rule {rule!r}", {"rule": rule}))
    out.append(("tie-order", "ties by descending gallery index", {"ties": "reverse"}))
    out.append(
        ("no-match", "queries without a match counted as misses (AP 0)", {"no_match": "miss"})
    )
    out.append(("orientation", "ranked largest first (a similarity read as a distance)",
                {"order": "descending"}))  # fmt: skip
    if square:
        out.append(("orientation", "the matrix transposed (rows read as gallery items)",
                    {"transpose": True}))  # fmt: skip
    return out


def _difference(target: tuple[np.ndarray, float, float | None], ref: Any) -> float:
    """Largest absolute difference of the figures the target returned (NaN vs NaN: equal)."""
    cmc, m_ap, m_inp = target
    pairs = [*zip(cmc.tolist(), ref.cmc[: cmc.size].tolist(), strict=True), (m_ap, ref.mAP)]
    if m_inp is not None:
        pairs.append((m_inp, ref.mINP))
    worst = 0.0
    for a, b in pairs:
        if math.isnan(a) and math.isnan(b):
            continue
        d = abs(a - b)
        worst = max(worst, d if d == d else math.inf)
    return worst


def _within(target: tuple[np.ndarray, float, float | None], low: Any, high: Any) -> bool:
    cmc, m_ap, m_inp = target
    pairs = [(cmc, low.cmc, high.cmc), (np.array([m_ap]), [low.mAP], [high.mAP])]
    if m_inp is not None:
        pairs.append((np.array([m_inp]), [low.mINP], [high.mINP]))
    return all(
        bool(np.all((t >= np.asarray(lo) - EXACT) & (t <= np.asarray(hi) + EXACT)))
        for t, lo, hi in pairs
    )


def _has_ties(p: EvalProblem) -> bool:
    return any(np.unique(row).size < row.size for row in p.distmat)


@dataclass(frozen=True)
class _Figures:
    cmc: np.ndarray
    mAP: float
    mINP: float


def reference_figures(p: EvalProblem, protocol: EvalProtocol) -> _Figures:
    m = rank_metrics(
        p.distmat.copy(), p.q_pids.copy(), p.g_pids.copy(), p.q_camids.copy(), p.g_camids.copy(),
        exclusion=protocol.exclusion, cmc_kind=protocol.cmc_kind, max_rank=p.max_rank,
    )  # fmt: skip
    return _Figures(m.cmc, m.mAP, m.mINP)


def _shown(figures: Any) -> dict[str, Any]:
    return {
        "cmc": [round(float(v), 12) for v in figures[0]],
        "mAP": figures[1],
        **({"mINP": figures[2]} if figures[2] is not None else {}),
    }


def explain(
    p: EvalProblem,
    protocol: EvalProtocol,
    run: Callable[[EvalProblem], tuple[np.ndarray, float, float | None]],
) -> Observation:
    """Compare ``run(p)`` (the target) with the reference; name what reproduces a difference."""
    ref = reference_figures(p, protocol)
    base = reference_choices(protocol)
    args = (p.distmat, p.q_pids, p.g_pids, p.q_camids, p.g_camids, p.max_rank)
    oracle = oracle_figures(*args, base)
    if _difference((ref.cmc, ref.mAP, ref.mINP), oracle) > EXACT:
        raise VireidError(  # a bug of this project, not of the target
            f"audit: the reference and its oracle disagree on {p.describe()}: please report "
            f"{p.to_dict()}"
        )
    reference = {"cmc": [round(float(v), 12) for v in ref.cmc], "mAP": ref.mAP, "mINP": ref.mINP}
    try:
        got = run(p)
    except TargetFailure as exc:
        return battery.crashed(exc, {"reference": reference, "target": None})
    evidence = {"reference": reference, "target": _shown(got)}
    diff = _difference(got, ref)
    if diff <= EXACT:
        return Observation(evidence=evidence)

    square = p.shape[0] == p.shape[1]
    singles = _single_changes(base, square)
    found: list[Alternative] = []
    for kind, label, change in singles:
        if _difference(got, oracle_figures(*args, base.but(**change))) <= EXACT:
            found.append((frozenset({kind}), (f"{kind}: {label}",)))
    if not found and math.isnan(got[1]) and not math.isnan(ref.mAP):
        miss = oracle_figures(*args, base.but(no_match="miss"))
        if miss.num_valid < len(p.q_pids):
            label = "no-match: NaN figures when a query has no match"
            found.append((frozenset({"no-match"}), (label,)))
    exact = bool(found)
    # some order of the tied items gives figures in [pessimistic, optimistic]: a loose
    # explanation, so it stands beside the exact ones (the battery resolves the ambiguity)
    tied = (
        not any("tie-order" in k for k, _ in found)
        and diff > battery.FLOAT32_SIZED
        and _has_ties(p)
    )
    if tied:
        low = oracle_figures(*args, base.but(ties="pessimistic"))
        high = oracle_figures(*args, base.but(ties="optimistic"))
        if _within(got, low, high):
            found.append((frozenset({"tie-order"}), ("tie-order: another order of tied items",)))
    if not exact:
        for (k1, l1, c1), (k2, l2, c2) in combinations(singles, 2):
            if k1 == k2:
                continue
            if _difference(got, oracle_figures(*args, base.but(**c1, **c2))) <= EXACT:
                found.append((frozenset({k1, k2}), (f"{k1}: {l1}", f"{k2}: {l2}")))
    return battery.concluded(found, diff, evidence)


# ---------------------------------------------------------------------------------------------
# the audit
# ---------------------------------------------------------------------------------------------


def eval_cases(protocol: EvalProtocol, *, scale: float = 1.0) -> list[Case]:
    """The default battery: the spec's worked examples, then one case per probe."""
    what = "a worked example of spec/evaluation"
    cases = [Case(f"spec: {name}", what, (p,)) for name, p in spec_examples()]
    for probe in PROBES:
        examples = max(1, round(probe.examples * scale))
        cases.append(Case(probe.name, probe.what, (), probe_strategy(protocol, probe), examples))
    return cases


def audit_eval(
    target: Target,
    *,
    protocol: str = "sysu",
    adapter: str | None = None,
    scale: float = 1.0,
    shrink_budget_s: float = 10.0,
    progress: Callable[[str], None] | None = None,
) -> tuple[BatteryResult, dict[str, Any]]:
    """Run the battery; the result and the settings (protocol, adapter) it ran with."""
    proto = check_protocol(protocol)
    adapter = detect_adapter(target) if adapter is None else check_adapter(adapter)
    _check_callable(target, adapter)

    def visit(p: EvalProblem) -> Observation:
        return explain(p, proto, lambda q: call_target(target, adapter, q))

    result = run_battery(
        eval_cases(proto, scale=scale), visit, shrink_budget_s=shrink_budget_s, progress=progress
    )
    settings = {
        "protocol": proto.name,
        "protocol_meaning": proto.what,
        "adapter": adapter,
        "adapter_signature": ADAPTERS[adapter],
        "reference": f"rank_metrics(exclusion={proto.exclusion!r}, cmc_kind={proto.cmc_kind!r})",
    }
    return result, settings


def _check_callable(target: Target, adapter: str) -> None:
    params = target.parameters()
    required = target.required()
    if params and not any(q.kind == q.VAR_POSITIONAL for q in params) and len(params) < 5:
        raise VireidError(
            f"target: {target.spec} takes {len(params)} parameters; the {adapter!r} adapter "
            f"passes 5 or 6: {ADAPTERS[adapter]}"
        )
    if len(required) > 6:
        raise VireidError(
            f"target: {target.spec} requires {len(required)} arguments; the {adapter!r} adapter "
            f"passes at most 6: {ADAPTERS[adapter]}"
        )
