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

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from reference.audit.battery import Alternative, BatteryResult, Case, Observation, run_battery
from reference.audit.eval_oracle import Choices, oracle_figures, skips
from reference.audit.target import Target
from reference.errors import VireidError
from reference.evaluation.metrics import rank_metrics

#: agreement: figures equal to this (absolute; figures are fractions in [0, 1])
EXACT = 1e-10
#: a difference no larger than this that no choice explains is float32-sized: ``precision``
FLOAT32_SIZED = 1e-4
MAX_RANK = 20


@dataclass(frozen=True)
class EvalProtocol:
    name: str
    exclusion: str
    cmc_kind: str
    what: str


PROTOCOLS: dict[str, EvalProtocol] = {
    "sysu": EvalProtocol(
        "sysu", "sysu", "identity", "SYSU-MM01: camera-3 queries skip camera 2; identity CMC"
    ),
    "regdb": EvalProtocol("regdb", "none", "standard", "RegDB: no camera rule; standard CMC"),
    "market": EvalProtocol(
        "market",
        "same-id-same-camera",
        "standard",
        "Market-1501 style: same identity and camera skipped; standard CMC",
    ),
}


def check_protocol(name: str) -> EvalProtocol:
    if name not in PROTOCOLS:
        raise VireidError(
            f"protocol: expected one of {', '.join(map(repr, PROTOCOLS))}, got {name!r}"
        )
    return PROTOCOLS[name]


# ---------------------------------------------------------------------------------------------
# problems
# ---------------------------------------------------------------------------------------------


def _array_text(a: np.ndarray) -> str:
    return np.array2string(np.asarray(a), separator=", ", threshold=10**9, max_line_width=96)


@dataclass(frozen=True, eq=False)
class EvalProblem:
    """One ranking problem; ``max_rank <= n_gallery``."""

    distmat: np.ndarray  # float64 (n_query, n_gallery), smaller = closer
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray
    max_rank: int
    params: tuple[Any, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        return self.distmat.shape

    @property
    def size(self) -> int:
        return int(self.distmat.size)

    def describe(self) -> str:
        q, g = self.shape
        return f"{q} {'query' if q == 1 else 'queries'} x {g} gallery items"

    def to_dict(self) -> dict[str, Any]:
        return {
            "distmat": self.distmat.tolist(),
            "q_pids": self.q_pids.tolist(),
            "g_pids": self.g_pids.tolist(),
            "q_camids": self.q_camids.tolist(),
            "g_camids": self.g_camids.tolist(),
            "max_rank": self.max_rank,
        }

    def snippet(self) -> str:
        if self.size > 400:
            return (
                f"# {self.describe()}: too large to print; rebuild it from the JSON report's "
                "'problem' field"
            )
        lines = ["import numpy as np", ""]
        lines.append(f"distmat = np.array({_array_text(self.distmat)})")
        for name in ("q_pids", "g_pids", "q_camids", "g_camids"):
            lines.append(f"{name} = np.array({_array_text(getattr(self, name))})")
        lines.append(f"max_rank = {self.max_rank}")
        return "\n".join(lines)


def problem(
    distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, max_rank: int = MAX_RANK
) -> EvalProblem:
    """An :class:`EvalProblem` from array-likes (``max_rank`` capped at the gallery size)."""
    d = np.array(distmat, dtype=np.float64, ndmin=2)
    ids = [np.array(v, dtype=np.int64) for v in (q_pids, g_pids, q_camids, g_camids)]
    for a in (d, *ids):
        a.setflags(write=False)
    return EvalProblem(d, *ids, max_rank=min(max_rank, d.shape[1]), params=("fixed", id(d)))


def spec_examples() -> tuple[tuple[str, EvalProblem], ...]:
    """The worked examples of ``spec/evaluation/differences.md`` and ``exclusion.md``, named."""
    n = 3803  # differences.md section 6: many per-query values of 1/3
    many = problem(
        np.tile([0.1, 0.2, 0.3], (n, 1)), [1] * n, [2, 3, 1], [6] * n, [1, 1, 1], max_rank=3
    )
    return (
        ("differences 1: AP formula",
         problem([[0.1, 0.2, 0.3]], [1], [1, 2, 1], [6], [1, 1, 1])),
        ("differences 2: CMC kind",
         problem([[0.1, 0.2, 0.3, 0.4, 0.5]], [1], [2, 2, 2, 1, 3], [6], [1] * 5, 4)),
        ("differences 3: camera rule", problem([[0.1, 0.2]], [1], [2, 1], [3], [2, 1])),
        ("differences 4: tie order", problem([[0.3, 0.3, 0.9]], [1], [4, 1, 5], [6], [1, 1, 1])),
        ("differences 5: identities kept",
         problem([[0.1, 0.2, 0.3]] * 2, [1, 1], [2, 3, 1], [3, 6], [2, 2, 1])),
        ("differences 6: float32 accumulation", many),
        ("exclusion: camera-2 items of both identities",
         problem([[0.1, 0.2, 0.3]], [1], [2, 1, 1], [3], [2, 2, 4])),
    )  # fmt: skip


#: (query cameras, gallery cameras) drawn from, per protocol; RegDB: one direction per problem
_CAMERAS = {
    "sysu": ((3, 6), (1, 2, 4, 5)),
    "market": ((1, 2, 3, 4, 5, 6), (1, 2, 3, 4, 5, 6)),
    "regdb": ((1,), (2,)),
}
_HEAVY = {"sysu": ((3,), (2, 2, 1)), "market": ((1, 2), (1, 2)), "regdb": ((2,), (1,))}


@dataclass(frozen=True)
class Probe:
    """A family of generated problems that exposes some choices."""

    name: str
    what: str
    query: tuple[int, int]
    gallery: tuple[int, int] | None  # None: square (n_gallery = n_query)
    ids: tuple[int, int]
    ties: float  # probability that a problem's distances are small integers (many ties)
    unmatched: float  # fraction of queries of an identity absent from the gallery
    heavy_cameras: bool
    examples: int


PROBES: tuple[Probe, ...] = (
    Probe("ranking", "distinct distances, small problems", (1, 6), (1, 16), (1, 5),
          0, 0, False, 40),
    Probe("ties", "distances drawn from {0, 1, 2}: many ties", (1, 6), (1, 16), (1, 5),
          1, 0, False, 40),
    Probe("no match", "queries whose identity has no gallery item", (1, 6), (1, 12), (1, 4),
          0.3, 0.4, False, 40),
    Probe("camera rule", "cameras the protocol's rule acts on", (1, 6), (1, 12), (1, 4),
          0.3, 0, True, 40),
    Probe("few identities", "queries keeping different numbers of identities (tiny galleries)",
          (1, 4), (1, 5), (1, 3), 0.3, 0, True, 30),
    Probe("square", "as many queries as gallery items", (1, 8), None, (1, 4), 0.3, 0.1, False, 30),
    Probe("large gallery", "a few queries, hundreds of gallery items", (1, 3), (17, 400),
          (5, 60), 0.5, 0, False, 6),
    Probe("many queries", "hundreds of queries, a few gallery items", (1, 1500), (2, 8), (2, 4),
          0, 0, False, 4),
)  # fmt: skip


def build_problem(
    protocol: EvalProtocol, probe: Probe, n_query: int, n_gallery: int, n_ids: int, seed: int
) -> EvalProblem:
    """A problem of ``probe``'s family from its sizes and a seed (deterministic)."""
    rng = np.random.default_rng(seed)
    g_pids = rng.integers(0, n_ids, n_gallery)
    q_pids = rng.choice(g_pids, n_query)
    if probe.unmatched:
        q_pids[rng.random(n_query) < probe.unmatched] = n_ids  # an identity with no gallery item
    q_cams, g_cams = (_HEAVY if probe.heavy_cameras else _CAMERAS)[protocol.name]
    if protocol.name == "regdb" and rng.random() < 0.5:  # the other direction
        q_cams, g_cams = g_cams, q_cams
    q_camids = rng.choice(q_cams, n_query)
    g_camids = rng.choice(g_cams, n_gallery)
    if rng.random() < probe.ties:
        distmat = rng.integers(0, 3, (n_query, n_gallery)).astype(np.float64)
    else:
        distmat = rng.random((n_query, n_gallery))
    # at least one valid query, else there is nothing to score (the reference refuses)
    if not _has_valid(q_pids, g_pids, q_camids, g_camids, protocol.exclusion):
        q_pids[0] = g_pids[0]
        q_camids[0] = {"sysu": 6, "market": int(g_camids[0]) % 6 + 1}.get(
            protocol.name, q_camids[0]
        )
    out = problem(distmat, q_pids, g_pids, q_camids, g_camids)
    return EvalProblem(
        out.distmat, out.q_pids, out.g_pids, out.q_camids, out.g_camids, out.max_rank,
        params=(probe.name, n_query, n_gallery, n_ids, seed),
    )  # fmt: skip


def _has_valid(q_pids, g_pids, q_camids, g_camids, rule: str) -> bool:
    return any(
        qp == gp and not skips(qp, qc, gp, gc, rule)
        for qp, qc in zip(q_pids.tolist(), q_camids.tolist(), strict=True)
        for gp, gc in zip(g_pids.tolist(), g_camids.tolist(), strict=True)
    )


def probe_strategy(protocol: EvalProtocol, probe: Probe):
    """Hypothesis strategy of ``probe``'s problems; sizes shrink first, then the seed."""
    from hypothesis import strategies as st

    @st.composite
    def draw(draw_: Any) -> EvalProblem:
        n_query = draw_(st.integers(*probe.query))
        n_gallery = n_query if probe.gallery is None else draw_(st.integers(*probe.gallery))
        n_ids = draw_(st.integers(*probe.ids))
        seed = draw_(st.integers(0, 2**32 - 1))
        return build_problem(protocol, probe, n_query, n_gallery, n_ids, seed)

    return draw()


# ---------------------------------------------------------------------------------------------
# adapters
# ---------------------------------------------------------------------------------------------

ADAPTERS: dict[str, str] = {
    "distance": "f(distmat, q_pids, g_pids, q_camids, g_camids, max_rank) -> (cmc, mAP[, mINP]);"
    " smaller = closer",
    "similarity": "f(simmat, q_pids, g_pids, q_camids, g_camids, max_rank) -> (cmc, mAP[, mINP]);"
    " larger = closer (the audit passes -distmat)",
    "torchreid": "evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=..., "
    "use_metric_cuhk03=False, ...) -> (cmc, mAP)",
}


class TargetFailure(Exception):
    """The target raised, or returned something the adapter cannot read."""


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
    if name not in ADAPTERS:
        raise VireidError(
            f"adapter: expected one of {', '.join(map(repr, ADAPTERS))}, got {name!r}"
        )
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
    try:
        out = target.function(*args, **kwargs)
    except Exception as exc:
        raise TargetFailure(f"{type(exc).__name__}: {exc}") from exc
    return _figures(out, p.max_rank)


# ---------------------------------------------------------------------------------------------
# explanations
# ---------------------------------------------------------------------------------------------


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
        cause = exc.__cause__
        what = type(cause).__name__ if cause is not None else "unusable output"
        alt: Alternative = (frozenset({"crash"}), (f"crash: {what}",))
        return Observation((alt,), math.inf, str(exc), {"reference": reference, "target": None})
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
    tied = not any("tie-order" in k for k, _ in found) and diff > FLOAT32_SIZED and _has_ties(p)
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
    if not found and diff <= FLOAT32_SIZED:
        found.append((frozenset({"precision"}), ("precision: float32-sized differences",)))
    if not found:
        found.append((frozenset({"unexplained"}), ("unexplained: no choice reproduces it",)))
    return Observation(tuple(found), diff, "", evidence)


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
    required = [
        q for q in params
        if q.default is inspect.Parameter.empty
        and q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)
    ]  # fmt: skip
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
