"""Float64 loop oracles of the six losses, with a switch for each way others are known to differ.

Spec: ``spec/audit/loss.md`` ("Oracles"). Written from ``spec/losses/`` (triplet, hetero_center,
center_alignment, mml, mdl, identity), one anchor or center at a time on float64 tensors, so
autograd gives their gradients; independent of the vectorised code in :mod:`reference.losses`
(the audit checks that they agree on every batch it draws). With the default :class:`LossChoices`
they compute the reference's losses with its default settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

MARGIN = 0.3
#: Method B's MDL directions by default: every ordered pair of modalities with different bases
MDL_DIRECTIONS = ((0, 1), (1, 0), (0, 3), (3, 0), (2, 1), (1, 2), (2, 3), (3, 2))


@dataclass(frozen=True)
class LossChoices:
    distance: str = "euclidean"  # "euclidean" | "squared" | "squared-pull" (center alignment)
    margin: str = "hinge"  # "hinge" | "outside" (added after the hinge) | "zero" | "soft"
    reduction: str = "mean"  # "mean" | "sum" | "pooled" (one mean over every anchor)

    def but(self, **changes: str) -> LossChoices:
        return replace(self, **changes)


def distance(a: Tensor, b: Tensor, squared: bool) -> Tensor:
    """``||a - b||`` (gradient 0 at zero distance: ``spec/losses/distances.md``), or its square.

    ``b`` may be a matrix: then the distances from ``a`` to each of its rows (one anchor or
    centre against its candidates in one call; each row's sum is its own)."""
    s = ((b - a) ** 2).sum(dim=-1)
    if squared:
        return s
    return torch.where(s > 0, torch.sqrt(torch.where(s > 0, s, torch.ones_like(s))), s * 0)


def hinge(d_ap: Tensor, d_an: Tensor, margin: str) -> Tensor:
    if margin == "outside":
        return torch.relu(d_ap - d_an) + MARGIN
    if margin == "zero":
        return torch.relu(d_ap - d_an)
    if margin == "soft":
        return torch.nn.functional.softplus(d_ap - d_an)
    return torch.relu(MARGIN + d_ap - d_an)


def _batch_hard(x, y, m, anchors, candidates, c: LossChoices) -> list[Tensor | None]:
    """One term per anchor row (None: no positive or no negative among the candidates)."""
    sq = c.distance == "squared"
    out: list[Tensor | None] = []
    others = x[list(candidates)]
    for i in anchors:
        pos = [k for k, j in enumerate(candidates) if j != i and y[j] == y[i]]
        neg = [k for k, j in enumerate(candidates) if y[j] != y[i]]
        if not pos or not neg:
            out.append(None)
            continue
        d = distance(x[i], others, sq)  # to every candidate
        out.append(hinge(d[pos].amax(), d[neg].amin(), c.margin))
    return out


def _mean(terms: list[Tensor]) -> Tensor:
    return torch.stack(terms).sum() / len(terms)


def triplet(x: Tensor, y: list[int], m: list[int] | None, c: LossChoices) -> Tensor:
    rows = list(range(len(y)))
    terms = _batch_hard(x, y, m, rows, rows, c)
    valid = [t for t in terms if t is not None]
    if not valid:
        return x.sum() * 0
    if c.reduction == "sum":
        return torch.stack(valid).sum()
    if c.reduction == "pooled":  # every anchor counted, those without a triplet as 0
        return torch.stack(valid).sum() / len(terms)
    return _mean(valid)


def _reduce_terms(per_term: list[list[Tensor]], reduction: str) -> Tensor:
    """Mean (or sum) over terms of each term's mean over its anchors; pooled: one mean."""
    if reduction == "pooled":
        return _mean([a for anchors in per_term for a in anchors])
    means = [_mean(anchors) for anchors in per_term]
    return torch.stack(means).sum() if reduction == "sum" else _mean(means)


def mml(x: Tensor, y: list[int], m: list[int], c: LossChoices) -> Tensor:
    per = []
    for mod in (0, 1, 2, 3):
        rows = [i for i in range(len(y)) if m[i] == mod]
        per.append([t for t in _batch_hard(x, y, m, rows, rows, c) if t is not None])
    return _reduce_terms(per, c.reduction)


def mdl(x: Tensor, y: list[int], m: list[int], c: LossChoices) -> Tensor:
    per = []
    for a, b in MDL_DIRECTIONS:
        anchors = [i for i in range(len(y)) if m[i] == a]
        candidates = [j for j in range(len(y)) if m[j] == b]
        per.append([t for t in _batch_hard(x, y, m, anchors, candidates, c) if t is not None])
    return _reduce_terms(per, c.reduction)


def _centers(
    x: Tensor, y: list[int], m: list[int]
) -> tuple[list[int], dict[tuple[int, int], Tensor]]:
    ids = sorted(set(y))
    centers = {}
    for p in ids:
        for mod in (0, 1):
            rows = [i for i in range(len(y)) if y[i] == p and m[i] == mod]
            centers[(p, mod)] = torch.stack([x[i] for i in rows]).sum(0) / len(rows)
    return ids, centers


def hetero_center(x: Tensor, y: list[int], m: list[int], c: LossChoices) -> Tensor:
    ids, centers = _centers(x, y, m)
    sq = c.distance == "squared"
    terms = []
    for p in ids:
        for mod in (0, 1):
            a = centers[(p, mod)]
            d_ap = distance(a, centers[(p, 1 - mod)], sq)
            others = torch.stack([centers[(q, r)] for q in ids if q != p for r in (0, 1)])
            d_an = distance(a, others, sq).amin()
            terms.append(hinge(d_ap, d_an, c.margin))
    return torch.stack(terms).sum() if c.reduction == "sum" else _mean(terms)


def center_alignment(x: Tensor, y: list[int], m: list[int], c: LossChoices) -> Tensor:
    ids, centers = _centers(x, y, m)
    center = {p: (centers[(p, 0)] + centers[(p, 1)]) / 2 for p in ids}
    rows = [i for i in range(len(y)) if m[i] in (0, 1)]
    pull_sq = c.distance in ("squared", "squared-pull")
    push_sq = c.distance == "squared"
    pull = [distance(x[i], center[y[i]], pull_sq) for i in rows]
    push = []
    for p in ids:
        others = torch.stack([center[q] for q in ids if q != p])
        d = distance(center[p], others, push_sq).amin()
        if c.margin == "zero":
            push.append(torch.relu(-d))
        elif c.margin == "soft":
            push.append(torch.nn.functional.softplus(MARGIN - d))
        elif c.margin == "outside":
            push.append(torch.relu(-d) + MARGIN)
        else:
            push.append(torch.relu(MARGIN - d))
    if c.reduction == "sum":
        return torch.stack(pull).sum() + torch.stack(push).sum()
    return _mean(pull) + _mean(push)


def identity(z: Tensor, y: list[int], m: list[int] | None, c: LossChoices) -> Tensor:
    terms = [-(z[i][y[i]] - torch.logsumexp(z[i], dim=0)) for i in range(len(y))]
    return torch.stack(terms).sum() if c.reduction == "sum" else _mean(terms)


ORACLES = {
    "tri": triplet,
    "hctri": hetero_center,
    "ca": center_alignment,
    "mml": mml,
    "mdl": mdl,
    "id": identity,
}
