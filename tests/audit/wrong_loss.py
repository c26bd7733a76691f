"""Losses for the audit's tests: correct independent re-implementations and one wrong per kind.

Written as the field's code is (vectorised torch on the whole batch), independently of
``reference.losses``. Each wrong one changes exactly one thing, so an audit must name one kind.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MARGIN = 0.3


def _dist(x, y=None, *, squared=False, naive=False):
    y = x if y is None else y
    sq = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    if squared:
        return sq
    if naive:  # sqrt of every entry but the diagonal: NaN gradients where two rows coincide
        eye = torch.eye(sq.shape[0], dtype=sq.dtype) if y is x else 0
        return (sq + eye).sqrt() * (1 - eye) if y is x else sq.sqrt()
    positive = sq > 0
    return torch.where(positive, torch.where(positive, sq, 1.0).sqrt(), 0.0)


def _batch_hard(dist, same, pos, neg, margin_mode="hinge"):
    d_ap = torch.where(pos, dist, -torch.inf).amax(1)
    d_an = torch.where(neg, dist, torch.inf).amin(1)
    valid = pos.any(1) & neg.any(1)
    gap = d_ap[valid] - d_an[valid]
    if margin_mode == "outside":
        return F.relu(gap) + MARGIN
    return F.relu(MARGIN + gap)


def _triplet(features, labels, *, squared=False, naive=False, margin_mode="hinge", sum_=False):
    dist = _dist(features, squared=squared, naive=naive)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    terms = _batch_hard(dist, same, same & ~eye, ~same, margin_mode)
    if terms.numel() == 0:
        return features.sum() * 0
    return terms.sum() if sum_ else terms.mean()


def tri_correct(features, labels):
    return _triplet(features, labels)


def tri_squared(features, labels):
    return _triplet(features, labels, squared=True)


def tri_margin_outside(features, labels):
    return _triplet(features, labels, margin_mode="outside")


def tri_sum(features, labels):
    return _triplet(features, labels, sum_=True)


def tri_naive_sqrt(features, labels):
    return _triplet(features, labels, naive=True)


def tri_float32(features, labels):
    return _triplet(features.float(), labels).double()


def _hetero_centers(features, labels, modality):
    ids = labels.unique()
    centers = torch.stack(
        [
            torch.stack([features[(labels == p) & (modality == m)].mean(0) for m in (0, 1)])
            for p in ids
        ]
    )  # (P, 2, d)
    return ids, centers


def _hc_loss(centers):
    p = centers.shape[0]
    flat = centers.reshape(2 * p, -1)
    dist = _dist(flat)
    owner = torch.arange(p).repeat_interleave(2)
    same = owner[:, None] == owner[None, :]
    d_ap = dist[torch.arange(2 * p), torch.arange(2 * p) ^ 1]
    d_an = torch.where(same, torch.inf, dist).amin(1)
    return F.relu(MARGIN + d_ap - d_an).mean()


def hctri_correct(features, labels, modality):
    return _hc_loss(_hetero_centers(features, labels, modality)[1])


def hctri_contiguous(features, labels, modality):
    """The field's hetero-center code: each modality's rows cut into P equal chunks, assuming
    the rows of one identity are contiguous (true of the sampler's order, not of a shuffle)."""
    p = labels.unique().numel()
    per_modality = [features[modality == m].chunk(p, 0) for m in (0, 1)]
    centers = torch.stack(
        [torch.stack([per_modality[m][i].mean(0) for m in (0, 1)]) for i in range(p)]
    )
    return _hc_loss(centers)


def hctri_halves(features, labels):
    """The same, with the field's signature: visible half first, then infrared."""
    n = features.shape[0] // 2
    modality = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    return hctri_correct(features, labels, modality)


def hctri_label_index(features, labels, modality):
    """Indexes a (P, ...) tensor by label: crashes on labels that are not 0..P-1."""
    ids, centers = _hetero_centers(features, labels, modality)
    table = torch.zeros(ids.numel())
    table[labels] = 1.0  # IndexError for labels >= P
    return _hc_loss(centers)


def ca_correct(features, labels, modality, *, squared_pull=False):
    ids, centers = _hetero_centers(features, labels, modality)
    center = centers.mean(1)  # (P, d): mean of the two modality means
    own = torch.searchsorted(ids, labels)
    keep = modality <= 1
    diff = features[keep] - center[own[keep]]
    sq = (diff**2).sum(1)
    pull = sq if squared_pull else torch.where(sq > 0, torch.where(sq > 0, sq, 1.0).sqrt(), 0.0)
    between = _dist(center)
    eye = torch.eye(ids.numel(), dtype=torch.bool)
    push = F.relu(MARGIN - torch.where(eye, torch.inf, between).amin(1))
    return pull.mean() + push.mean()


def ca_squared_pull(features, labels, modality):
    return ca_correct(features, labels, modality, squared_pull=True)


def _directional(features, labels, modality, a, b):
    xa, ya = features[modality == a], labels[modality == a]
    xb, yb = features[modality == b], labels[modality == b]
    dist = _dist(xa, xb) if a != b else _dist(xa)
    same = ya[:, None] == yb[None, :]
    pos = same & ~torch.eye(len(ya), dtype=torch.bool) if a == b else same
    return _batch_hard(dist, same, pos, ~same).mean()


def mml_correct(features, labels, modality):
    return torch.stack([_directional(features, labels, modality, m, m) for m in range(4)]).mean()


DIRECTIONS = ((0, 1), (1, 0), (0, 3), (3, 0), (2, 1), (1, 2), (2, 3), (3, 2))


def mdl_correct(features, labels, modality):
    terms = [_directional(features, labels, modality, a, b) for a, b in DIRECTIONS]
    return torch.stack(terms).mean()


def mdl_sum(features, labels, modality):
    terms = [_directional(features, labels, modality, a, b) for a, b in DIRECTIONS]
    return torch.stack(terms).sum()


def id_correct(logits, labels):
    return F.cross_entropy(logits, labels)


def id_mean_over_classes(logits, labels):
    """Mean of -q * log p over every (row, class) element: the wrong axis for the mean."""
    target = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return -(target * logits.log_softmax(1)).mean()
