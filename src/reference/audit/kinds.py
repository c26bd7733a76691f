"""The deviation kinds the audit names, and one finding per kind seen.

Spec: ``spec/audit/kinds.md``. A kind says *what* another implementation does differently, not
only that a figure differs; each has a worked example in the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Kind:
    name: str
    audits: tuple[str, ...]  # "eval", "loss", "features"
    meaning: str


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "ap-formula",
            ("eval", "features"),
            "AP computed with another formula (trapezoidal or interpolated precision) instead of "
            "the non-interpolated mean of the precisions at the positives",
        ),
        Kind(
            "cmc-kind",
            ("eval", "features"),
            "the other CMC: standard (rank of the first positive) vs identity (rank of the "
            "query's identity among the distinct identities)",
        ),
        Kind(
            "camera-rule",
            ("eval", "features"),
            "another exclusion rule (sysu, same-id-same-camera or none) than the protocol's",
        ),
        Kind(
            "tie-order",
            ("eval",),
            "gallery items at equal distance ordered otherwise than by gallery index",
        ),
        Kind(
            "no-match",
            ("eval",),
            "queries without a positive (after exclusion) counted in the averages (as misses, "
            "or as NaN) instead of being left out",
        ),
        Kind(
            "orientation",
            ("eval",),
            "scores read the wrong way: a similarity ranked as a distance (largest first "
            "reversed), or the matrix transposed (rows read as gallery items)",
        ),
        Kind(
            "precision",
            ("eval", "loss"),
            "differences of float32 size (at most 1e-4): float32 accumulation or arithmetic",
        ),
        Kind(
            "reduction",
            ("loss",),
            "the terms reduced otherwise: a sum instead of a mean, a mean over another axis or "
            "count (the loss and its gradient scaled by one factor), or anchors pooled across "
            "terms",
        ),
        Kind(
            "distance",
            ("loss", "features"),
            "another distance: squared Euclidean instead of Euclidean (losses), or another "
            "metric (features)",
        ),
        Kind(
            "margin",
            ("loss",),
            "the margin applied otherwise: added outside the hinge, left out, or a soft margin",
        ),
        Kind(
            "row-order",
            ("loss",),
            "the value depends on the order of the batch's rows although the loss is defined by "
            "the labels and modality tags (for instance rows assumed contiguous per identity)",
        ),
        Kind(
            "non-finite",
            ("loss",),
            "NaN or inf in the value or gradient where the reference is finite (identical "
            "features: zero distances)",
        ),
        Kind(
            "crash",
            ("eval", "loss"),
            "the implementation raised an exception or returned something unusable",
        ),
        Kind(
            "claim",
            ("features",),
            "the reported figures are not reproduced by the features under the reference "
            "protocol, nor by any known variant of it",
        ),
        Kind(
            "unexplained",
            ("eval", "loss"),
            "a difference that no kind (nor two of them together) reproduces",
        ),
    )
}


@dataclass
class Finding:
    """One kind seen in an audit, with its evidence."""

    kind: str
    variants: list[str] = field(default_factory=list)  # how exactly, e.g. "trapezoid"
    difference: float = 0.0  # largest absolute difference seen
    problems: int = 0  # problems that show it
    cases: list[str] = field(default_factory=list)  # battery cases where it was seen
    smallest: dict[str, Any] = field(default_factory=dict)  # the smallest problem (see report)
    detail: str = ""  # e.g. the exception
    expected: bool = False
    note: str = ""  # from the known-deviations file

    @property
    def meaning(self) -> str:
        return KINDS[self.kind].meaning

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "meaning": self.meaning,
            "variants": list(self.variants),
            "difference": _finite(self.difference),
            "problems": self.problems,
            "cases": list(self.cases),
            "smallest": self.smallest,
            "detail": self.detail,
            "expected": self.expected,
            "note": self.note,
        }


def _finite(x: float) -> float | str:
    return x if x == x and abs(x) != float("inf") else repr(x)
