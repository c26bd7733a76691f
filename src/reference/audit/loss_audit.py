"""``vireid audit loss NAME TARGET``: value and gradient against the reference and its oracle.

Spec: ``spec/audit/loss.md``. Batches are P identities x K rows in each modality (the form the
training samplers give), float64. Each batch is run through the target (by its adapter), the
reference loss of :mod:`reference.losses` and the float64 oracle of
:mod:`reference.audit.loss_oracle` (the last two must agree, or the audit stops with an error that
is this project's bug). A difference of the target is named by the oracle switch that reproduces
it (distance, margin, reduction), by a common factor of value and gradient (reduction), by the
target changing when the rows are permuted (row-order), or by NaN/inf (non-finite).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from itertools import combinations
from typing import Any

import numpy as np
import torch

from reference.audit import battery
from reference.audit.battery import Alternative, BatteryResult, Case, Observation, run_battery
from reference.audit.loss_oracle import ORACLES, LossChoices
from reference.audit.loss_problems import (
    ADAPTERS,
    LOSSES,
    LossInfo,
    LossProblem,
    batch_strategy,
    build_batch,
    check_loss,
)
from reference.audit.target import Target, TargetFailure, target_failures
from reference.errors import VireidError

#: value and gradient agree within this relative tolerance (float64 throughout)
EXACT = 1e-9

__all__ = [
    "LOSSES", "LossProblem", "audit_loss", "build_batch", "call_target", "check_loss",
    "detect_adapter", "explain", "loss_cases", "oracle_value", "reference_value",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# running the target, the reference and the oracle
# ---------------------------------------------------------------------------------------------


def _tensors(p: LossProblem) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    f, y, m = p.shown()
    x = torch.tensor(f, dtype=torch.float64, requires_grad=True)
    return x, torch.tensor(y), None if m is None else torch.tensor(m)


def _value_and_grad(loss: Any, x: torch.Tensor) -> tuple[float, np.ndarray]:
    if isinstance(loss, (tuple, list)) and loss:
        loss = loss[0]
    if hasattr(loss, "total") and not isinstance(loss, torch.Tensor):
        loss = loss.total
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        got = type(loss).__name__ if not isinstance(loss, torch.Tensor) else tuple(loss.shape)
        raise TargetFailure(f"returned {got}; expected a scalar tensor")
    if not loss.requires_grad:
        raise TargetFailure("returned a loss with no gradient to the features")
    (grad,) = torch.autograd.grad(loss.reshape(()), x, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(x)
    return float(loss.detach()), grad.detach().numpy()


def call_target(target: Target, adapter: str, p: LossProblem) -> tuple[float, np.ndarray]:
    x, y, m = _tensors(p)
    args = (x, y) if adapter in ("plain", "halves") else (x, y, m)
    with target_failures():
        return _value_and_grad(target.function(*args), x)


def reference_value(info: LossInfo, p: LossProblem) -> tuple[float, np.ndarray]:
    x, y, m = _tensors(p)
    return _value_and_grad(info.reference(x, y, m), x)


def oracle_value(info: LossInfo, p: LossProblem, choices: LossChoices) -> tuple[float, np.ndarray]:
    x, y, m = _tensors(p)
    ml = None if m is None else m.tolist()
    return _value_and_grad(ORACLES[info.name](x, y.tolist(), ml, choices), x)


def _close(a: tuple[float, np.ndarray], b: tuple[float, np.ndarray], grads: bool,
           tol: float = EXACT) -> bool:  # fmt: skip
    (va, ga), (vb, gb) = a, b
    if not (abs(va - vb) <= tol * (1 + abs(vb))):
        return False
    return not grads or bool(np.all(np.abs(ga - gb) <= tol * (1 + np.abs(gb).max(initial=0))))


def _rel_difference(a: tuple[float, np.ndarray], b: tuple[float, np.ndarray], grads: bool) -> float:
    (va, ga), (vb, gb) = a, b
    d = abs(va - vb) / (1 + abs(vb))
    if grads:
        d = max(d, float(np.abs(ga - gb).max(initial=0)) / (1 + float(np.abs(gb).max(initial=0))))
    return d if d == d else math.inf


def _scale(
    got: tuple[float, np.ndarray], other: tuple[float, np.ndarray], grads: bool
) -> float | None:
    """The factor ``k != 1`` with got = k * other in value and gradient, if there is one."""
    (vg, _), (vo, go) = got, other
    if vo == 0 or not math.isfinite(vg):
        return None
    k = vg / vo
    if abs(k - 1) <= 1e-6 or not 1e-3 <= k <= 1e3:
        return None
    if not grads or not np.abs(go).max(initial=0) > 0:
        # no gradient to confirm the factor: only a ratio of small counts is taken as one
        f = Fraction(k).limit_denominator(64)
        return k if f.numerator <= 4096 and abs(float(f) - k) <= EXACT * k else None
    return k if _close(got, (vo * k, go * k), grads) else None


def _factor(k: float) -> str:
    f = Fraction(k).limit_denominator(64)
    text = str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"
    return text if abs(float(f) - k) < 1e-9 * k else f"{k:.6g}"


def _shown(v: tuple[float, np.ndarray]) -> dict[str, Any]:
    return {"value": v[0], "gradient": np.round(v[1], 12).tolist()}


def _explain_difference(info: LossInfo, p: LossProblem, got, ref, base: LossChoices,
                        grads: bool) -> list[Alternative]:  # fmt: skip
    singles = [(kind, label, base.but(**change)) for kind, label, change in info.variants]
    outs = {label: oracle_value(info, p, c) for _, label, c in singles}
    found: list[Alternative] = []
    for kind, label, _ in singles:
        if _close(got, outs[label], grads):
            found.append((frozenset({kind}), (f"{kind}: {label}",)))
    k = _scale(got, ref, grads)
    if k is not None and not any("reduction" in kinds for kinds, _ in found):
        found.append((frozenset({"reduction"}),
                      (f"reduction: value and gradient scaled by {_factor(k)}",)))  # fmt: skip
    if found:
        return found
    for (k1, l1, c1), (k2, l2, c2) in combinations(singles, 2):
        if k1 != k2:
            both = base.but(**{f: getattr(c1, f) for f in ("distance", "margin", "reduction")
                               if getattr(c1, f) != getattr(base, f)})  # fmt: skip
            both = both.but(**{f: getattr(c2, f) for f in ("distance", "margin", "reduction")
                               if getattr(c2, f) != getattr(base, f)})  # fmt: skip
            if _close(got, oracle_value(info, p, both), grads):
                found.append((frozenset({k1, k2}), (f"{k1}: {l1}", f"{k2}: {l2}")))
    for kind, label, _ in singles:
        if kind != "reduction":
            k = _scale(got, outs[label], grads)
            if k is not None:
                found.append((frozenset({kind, "reduction"}),
                              (f"{kind}: {label}",
                               f"reduction: scaled by {_factor(k)}")))  # fmt: skip
    return found


def explain(info: LossInfo, p: LossProblem, run: Callable[[LossProblem], Any]) -> Observation:
    """Compare ``run(p)`` (the target's value and gradient) with the reference and name it."""
    grads = not p.values_only
    ref = reference_value(info, p)
    base = LossChoices()
    oracle = oracle_value(info, p, base)
    if not _close(ref, oracle, grads, tol=1e-8):
        raise VireidError(  # a bug of this project, not of the target
            f"audit: the reference {info.name} loss and its oracle disagree on {p.describe()} "
            f"(value {ref[0]!r} vs {oracle[0]!r}): please report {p.to_dict()}"
        )
    evidence: dict[str, Any] = {"reference": _shown(ref)}
    try:
        got = run(p)
    except TargetFailure as exc:
        evidence["target"] = None
        return battery.crashed(exc, evidence)
    evidence["target"] = _shown(got)
    finite = math.isfinite(got[0]) and bool(np.isfinite(got[1]).all())
    if not finite:
        where = "value" if not math.isfinite(got[0]) else "gradient"
        alt = (frozenset({"non-finite"}), (f"non-finite: NaN or inf in the {where}",))
        if not math.isfinite(got[0]) or _close(got, ref, grads=False):
            return Observation((alt,), math.inf, "", evidence)
        others = _explain_difference(info, p, got, ref, base, grads=False)
        alts = tuple((kinds | {"non-finite"}, (*labels, *alt[1])) for kinds, labels in others)
        return Observation(alts or (alt,), math.inf, "", evidence)
    if _close(got, ref, grads):
        return Observation(evidence=evidence)
    diff = _rel_difference(got, ref, grads)

    found: list[Alternative] = []
    if p.perm is not None:
        canonical = p.canonical()
        try:
            in_order = run(canonical)
        except TargetFailure:
            in_order = None
        if in_order is not None:
            ref_c = reference_value(info, canonical)
            label = ("row-order: the value changes when the rows are permuted",)
            if _close(in_order, ref_c, grads):
                return Observation(((frozenset({"row-order"}), label),), diff, "", evidence)
            # float32-sized changes with the order are rounding, not a dependence on it
            moved = not _close(got, (in_order[0], got[1]), grads=False, tol=battery.FLOAT32_SIZED)
            rest = _explain_difference(info, canonical, in_order, ref_c, base, grads)
            if moved:
                rest = [(k | {"row-order"}, (*lab, *label)) for k, lab in rest] or [
                    (frozenset({"row-order"}), label)
                ]
            found = rest
    else:
        found = _explain_difference(info, p, got, ref, base, grads)
    return battery.concluded(found, diff, evidence)


# ---------------------------------------------------------------------------------------------
# the audit
# ---------------------------------------------------------------------------------------------

PROBES = (
    ("canonical", "P x K batches, rows by modality then identity", 30),
    ("shuffled", "the same batches with their rows permuted", 25),
    ("identical", "every row of one identity identical (zero distances)", 15),
)


def detect_adapter(info: LossInfo, target: Target) -> str:
    params = target.parameters()
    n = len(target.required())
    if n >= 3 and "tags" in info.adapters:
        return "tags"
    if n == 2 and {"plain", "halves"} & set(info.adapters):
        return "plain" if "plain" in info.adapters else "halves"
    if not params and len(info.adapters) == 1:
        return info.adapters[0]
    raise VireidError(
        f"adapter: cannot tell how to call {target.spec} ({n} required parameters) for "
        f"{info.name}; name one with --adapter: {', '.join(info.adapters)}"
    )


def loss_cases(info: LossInfo, adapter: str, *, scale: float = 1.0) -> list[Case]:
    return [
        Case(name, what, (), batch_strategy(info, adapter, name), max(1, round(n * scale)))
        for name, what, n in PROBES
    ]


def audit_loss(
    name: str,
    target: Target,
    *,
    adapter: str | None = None,
    scale: float = 1.0,
    shrink_budget_s: float = 5.0,
    progress: Callable[[str], None] | None = None,
) -> tuple[BatteryResult, dict[str, Any]]:
    info = check_loss(name)
    if adapter is None:
        adapter = detect_adapter(info, target)
    elif adapter not in info.adapters:
        raise VireidError(
            f"adapter: {name} takes one of {', '.join(map(repr, info.adapters))}, got {adapter!r}"
        )

    def visit(p: LossProblem) -> Observation:
        return explain(info, p, lambda q: call_target(target, adapter, q))

    result = run_battery(loss_cases(info, adapter, scale=scale), visit,
                         shrink_budget_s=shrink_budget_s, progress=progress)  # fmt: skip
    settings = {
        "loss": name,
        "reference": info.title,
        "adapter": adapter,
        "adapter_signature": ADAPTERS[adapter],
        "batches": "float64, P x K rows per identity and modality",
    }
    return result, settings
