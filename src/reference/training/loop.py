"""``Loop``: everything one epoch needs, and the run's position, as one object.

Spec: ``spec/training/engine.md`` and ``spec/training/checkpoint.md``. ``train`` builds it,
``train_one_epoch`` runs it; ``state()`` is what a checkpoint holds (every process's generators
gathered to rank 0) and ``restore()`` puts a checkpoint back, down to the transform generator
part-way through an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from reference.data.pipeline import TrainPipeline
from reference.training.checkpoint import rng_state, save_checkpoint, set_rng_state
from reference.training.config import TrainConfig, config_to_dict
from reference.training.distributed import Processes
from reference.training.faults import StopFlag
from reference.training.runfolder import RunLog
from reference.training.setup import load_optimizer_state


@dataclass
class Loop:
    """Everything one epoch needs; ``train`` builds it, ``train_one_epoch`` runs it."""

    config: TrainConfig
    out_dir: Path
    procs: Processes
    device: torch.device
    pipeline: TrainPipeline
    model: nn.Module  # what is called (DDP / compiled wrapper)
    network: nn.Module  # the plain network (state dict, evaluation)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    log: RunLog
    stop: StopFlag
    label_pids: np.ndarray  # training label -> dataset identity
    epoch: int = 0
    epoch_step: int = 0
    step: int = 0
    images_seen: int = 0
    train_s: float = 0.0
    best_val: dict[str, float] | None = None
    last_terms: dict[str, float] = field(default_factory=dict)
    stopping: bool = False  # a Ctrl-C seen by some process, agreed by all
    generator: torch.Generator | None = None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.pipeline) // self.config.run.accumulate

    def state(self) -> dict[str, Any]:
        """The checkpoint state (a collective call with several processes)."""
        rngs = [rng_state(self.generator)]
        if self.procs.distributed:
            rngs = [None] * self.procs.world_size
            dist.all_gather_object(rngs, rng_state(self.generator))
        return {
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "world_size": self.procs.world_size,
            "rng": rngs,
            "config": config_to_dict(self.config),
            "extra": {
                "images_seen": self.images_seen,
                "train_s": self.train_s,
                "best_val": self.best_val,
                "last_terms": self.last_terms,
            },
        }

    def save(self, name: str = "last.pt") -> Path:
        path = self.out_dir / name
        state = self.state()
        if self.procs.writer:
            save_checkpoint(path, state)
        return path

    def restore(self, data: dict[str, Any]) -> None:
        self.network.load_state_dict(data["model"])
        load_optimizer_state(self.optimizer, data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        if data["scaler"]:
            self.scaler.load_state_dict(data["scaler"])
        self.epoch, self.epoch_step, self.step = data["epoch"], data["epoch_step"], data["step"]
        extra = data["extra"]
        self.images_seen, self.train_s = extra["images_seen"], extra["train_s"]
        self.best_val, self.last_terms = extra["best_val"], extra["last_terms"]
        self.pipeline.set_epoch(self.epoch)
        self.generator = self.pipeline.epoch_generator()
        set_rng_state(data["rng"][self.procs.rank], self.generator if self.epoch_step else None)
