"""The identity-balanced cross-modality sampler.

Spec: ``spec/data/sampler.md``. Every batch holds ``p`` distinct identities and, for each, ``k``
visible and ``k`` infrared images, in the fixed row order

    [V of id_1 (k rows), ..., V of id_p (k rows), I of id_1 (k rows), ..., I of id_p (k rows)]

which is the predecessor's order (its loader concatenates the visible half and the infrared half).
The epoch holds ``floor(N / (p * k)) + 1`` batches with ``N = max(#visible, #infrared)`` images
[predecessor]. The draw is a pure function of ``(seed, epoch)``; with ``world_size`` processes the
epoch's batches are dealt round-robin, rank ``r`` taking batches ``r, r + W, r + 2W, ...``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

from reference.checks import check_choice, check_integer
from reference.data.modality import Modality
from reference.errors import VireidError

IdentityOrder = Literal["random", "cycle"]

_BASE = (Modality.VISIBLE, Modality.INFRARED)
_NAMES = {Modality.VISIBLE: "visible (V)", Modality.INFRARED: "infrared (I)"}


def _as_int_array(values: object, field: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise VireidError(f"{field}: expected a 1-D array, got shape {array.shape}")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise VireidError(f"{field}: expected an integer array, got dtype {array.dtype}")
    return array.astype(np.int64)


def _check_count(value: object, field: str, what: str) -> int:
    check_integer(value, field)
    if value < 1:
        raise VireidError(f"{field}: expected at least 1 {what}, got {value}")
    return int(value)


def _distributed_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if world_size is None:
        world_size = torch.distributed.get_world_size() if initialised else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    world_size = _check_count(world_size, "world_size", "process")
    check_integer(rank, "rank")
    if not 0 <= rank < world_size:
        raise VireidError(f"rank: expected 0 <= rank < world_size={world_size}, got {rank}")
    return int(rank), world_size


class CrossModalitySampler(torch.utils.data.Sampler[list[int]]):
    """Yield index batches of ``p`` identities x (``k`` visible + ``k`` infrared) images.

    Args:
        labels: identity label of every image (1-D integers; any values, compared for equality).
        modality: 0 (visible) or 1 (infrared) per image.
        p: identities per batch, drawn without replacement within a batch.
        k: images per identity per modality.
        seed: the draw is a pure function of ``(seed, epoch)``.
        replacement: draw each identity's ``k`` images with replacement [predecessor]; ``False``
            walks a fresh random permutation of the identity's images per modality, restarting it
            only when it is used up [reconstruction].
        identities: ``"random"`` draws each batch's ``p`` identities independently
            [predecessor]; ``"cycle"`` walks random permutations of all identities so every
            identity appears once per ``C`` identity slots [reconstruction].
        num_batches: batches per epoch for the whole job; default ``floor(N / (p*k)) + 1``.
        rank, world_size: this process and the number of processes; default from an initialised
            ``torch.distributed`` process group, else 0 and 1.
    """

    def __init__(
        self,
        labels: np.ndarray | torch.Tensor,
        modality: np.ndarray | torch.Tensor,
        *,
        p: int,
        k: int,
        seed: int = 0,
        replacement: bool = True,
        identities: IdentityOrder = "random",
        num_batches: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.labels = _as_int_array(labels, "labels")
        self.modality = _as_int_array(modality, "modality")
        if self.modality.shape != self.labels.shape:
            raise VireidError(
                f"modality: expected shape {self.labels.shape} like labels, "
                f"got {self.modality.shape}"
            )
        if self.labels.size == 0:
            raise VireidError("labels: expected at least one image, got an empty array")
        bad = np.setdiff1d(self.modality, [int(m) for m in _BASE])
        if bad.size:
            raise VireidError(
                f"modality: expected 0 (V) or 1 (I) for every image, got {bad.tolist()}"
            )
        self.p = _check_count(p, "p", "identity per batch")
        self.k = _check_count(k, "k", "image per identity and modality")
        self.seed = check_integer(seed, "seed", low=0, expected="a non-negative integer")
        check_choice(identities, "identities", ("random", "cycle"), expected="'random' or 'cycle'")
        self.identities: IdentityOrder = identities
        self.replacement = bool(replacement)
        self.rank, self.world_size = _distributed_defaults(rank, world_size)

        self.ids = np.unique(self.labels)
        # pools[m]: image indices of modality m sorted by identity; starts/counts per identity
        self._pools: list[np.ndarray] = []
        self._starts: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        for m in _BASE:
            members = np.flatnonzero(self.modality == m)
            members = members[np.argsort(self.labels[members], kind="stable")]
            sorted_labels = self.labels[members]
            starts = np.searchsorted(sorted_labels, self.ids, side="left")
            counts = np.searchsorted(sorted_labels, self.ids, side="right") - starts
            missing = self.ids[counts == 0]
            if missing.size:
                raise VireidError(
                    f"labels: identity {int(missing[0])} has no {_NAMES[m]} image; every identity "
                    "needs at least one visible and one infrared image"
                )
            self._pools.append(members)
            self._starts.append(starts)
            self._counts.append(counts)
        if self.p > self.ids.size:
            raise VireidError(
                f"p: expected at most {self.ids.size} identities per batch (the number of "
                f"identities), got {self.p}"
            )
        n_max = max(pool.size for pool in self._pools)
        default_batches = n_max // (self.p * self.k) + 1
        self.num_batches = (
            default_batches
            if num_batches is None
            else _check_count(num_batches, "num_batches", "batch per epoch")
        )
        self.epoch = 0

    # -- the torch Sampler protocol -------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        """Rows per batch: ``2 * p * k``."""
        return 2 * self.p * self.k

    @property
    def total_batches(self) -> int:
        """Batches per epoch over all ranks: ``num_batches`` rounded up to a multiple of W."""
        return math.ceil(self.num_batches / self.world_size) * self.world_size

    def __len__(self) -> int:
        """Batches this rank yields per epoch."""
        return self.total_batches // self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw the next iteration yields (same call on every rank)."""
        self.epoch = check_integer(epoch, "epoch", low=0, expected="a non-negative integer")

    def __iter__(self) -> Iterator[list[int]]:
        rows = self.epoch_batches(self.epoch)[self.rank :: self.world_size]
        for row in rows:
            yield row.tolist()

    # -- the draw -------------------------------------------------------------------------------

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """All ranks' batches of ``epoch``: an int64 array (total_batches, 2*p*k)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        n_batches = self.total_batches
        slots = self._draw_identities(rng, n_batches)  # (B, p) positions in self.ids
        halves = [self._draw_images(rng, slots, m) for m in range(len(_BASE))]  # (B, p, k) each
        return np.concatenate([h.reshape(n_batches, -1) for h in halves], axis=1)

    def _draw_identities(self, rng: np.random.Generator, n_batches: int) -> np.ndarray:
        c = self.ids.size
        if self.identities == "random":
            # a uniformly random p-subset per batch, in random order
            return np.argsort(rng.random((n_batches, c)), axis=1)[:, : self.p]
        out = np.empty((n_batches, self.p), dtype=np.int64)
        cycle = rng.permutation(c)
        pos = 0
        for b in range(n_batches):
            take = cycle[pos : pos + self.p]
            if take.size < self.p:
                # the permutation is used up mid-batch: start a new one, moving the identities
                # already in this batch to its end so that none repeats within the batch
                cycle = rng.permutation(c)
                clash = np.isin(cycle, take)
                cycle = np.concatenate([cycle[~clash], cycle[clash]])
                pos = self.p - take.size
                take = np.concatenate([take, cycle[:pos]])
            else:
                pos += self.p
            out[b] = take
        return out

    def _draw_images(self, rng: np.random.Generator, slots: np.ndarray, m: int) -> np.ndarray:
        pool, starts, counts = self._pools[m], self._starts[m], self._counts[m]
        if self.replacement:
            offsets = rng.integers(0, counts[slots][..., None], size=(*slots.shape, self.k))
            return pool[starts[slots][..., None] + offsets]
        out = np.empty((*slots.shape, self.k), dtype=np.int64)
        flat = slots.reshape(-1)
        out_flat = out.reshape(-1, self.k)
        for ident in np.unique(flat):
            where = np.flatnonzero(flat == ident)  # the identity's draws, in batch order
            n = int(counts[ident])
            needed = where.size * self.k
            stream = np.concatenate([rng.permutation(n) for _ in range(-(-needed // n))])
            out_flat[where] = pool[starts[ident] + stream[:needed]].reshape(where.size, self.k)
        return out
