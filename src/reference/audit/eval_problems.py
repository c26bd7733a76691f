"""The evaluation audit's problems: protocols, the spec's worked examples and the probes.

Spec: ``spec/audit/eval.md`` ("The battery"). A problem is a distance matrix with query and
gallery identities and cameras; a probe is a family of generated problems (hypothesis draws sizes
and a seed, NumPy builds the problem from them, so shrinking makes the problem smaller).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.audit.eval_oracle import skips
from reference.checks import check_choice
from reference.evaluation import llcm, regdb, sysu

MAX_RANK = 20


@dataclass(frozen=True)
class EvalProtocol:
    name: str
    exclusion: str
    cmc_kind: str
    what: str


PROTOCOLS: dict[str, EvalProtocol] = {
    "sysu": EvalProtocol(
        "sysu",
        sysu.EXCLUSION,
        sysu.CMC_KIND,
        "SYSU-MM01: camera-3 queries skip camera 2; identity CMC",
    ),
    "regdb": EvalProtocol(
        "regdb", regdb.EXCLUSION, regdb.CMC_KIND, "RegDB: no camera rule; standard CMC"
    ),
    "market": EvalProtocol(
        "market",
        "same-id-same-camera",
        "standard",
        "Market-1501 style: same identity and camera skipped; standard CMC",
    ),
    "llcm": EvalProtocol(
        "llcm",
        llcm.EXCLUSION,
        llcm.CMC_KIND,
        "LLCM: same identity and camera skipped (camera k is one place in both modalities); "
        "identity CMC",
    ),
}


def check_protocol(name: str) -> EvalProtocol:
    check_choice(name, "protocol", PROTOCOLS)
    return PROTOCOLS[name]


def _array_text(a: np.ndarray) -> str:
    return np.array2string(
        np.asarray(a), separator=", ", threshold=10**9, max_line_width=96, floatmode="unique"
    )


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
    # infrared-to-visible: LLCM has no infrared camera 3
    "llcm": ((1, 2, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 5, 6, 7, 8, 9)),
}
_HEAVY = {
    "sysu": ((3,), (2, 2, 1)),
    "market": ((1, 2), (1, 2)),
    "regdb": ((2,), (1,)),
    "llcm": ((1, 2), (1, 2)),
}


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
        q_camids[0] = {
            "sysu": 6,
            "market": int(g_camids[0]) % 6 + 1,
            "llcm": 2 if int(g_camids[0]) == 1 else 1,
        }.get(protocol.name, q_camids[0])
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
