"""Several training processes (``torchrun``): who this process is, and what they agree on.

Spec: ``spec/training/engine.md`` (section "Several processes"). ``processes_from_env`` reads
torchrun's ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``; rank 0 alone writes. ``any_rank`` and
``mean_over_ranks`` are the two small all-reduces the loop needs so that every process takes the
same branch (stop on a Ctrl-C or a non-finite loss) and logs the whole step's losses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes (torchrun's environment)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def writer(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def processes_from_env() -> Processes:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes()
    return Processes(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def any_rank(flags: list[bool], procs: Processes, device: torch.device) -> list[bool]:
    """Each flag OR-ed over the processes (every rank takes the same branch)."""
    if not procs.distributed:
        return flags
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def mean_over_ranks(
    values: dict[str, float], procs: Processes, device: torch.device
) -> dict[str, float]:
    """The mean of each value over the processes (what is logged is the whole step's)."""
    if not procs.distributed:
        return values
    keys = list(values)  # the same terms, in the same order, on every process
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: v / procs.world_size for k, v in zip(keys, t.tolist(), strict=True)}
