"""The loop's state: what a checkpoint holds and how it is put back (checkpoint.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from reference.data.pipeline import PipelineConfig, TrainPipeline
from reference.data.transforms import TransformConfig
from reference.training.checkpoint import KEYS, read_checkpoint
from reference.training.distributed import Processes
from reference.training.faults import StopFlag
from reference.training.loop import Loop
from reference.training.runfolder import RunLog
from tests.training.conftest import tiny_config


def make_loop(out_dir: Path, seed: int) -> Loop:
    torch.manual_seed(seed)
    labels = np.repeat(np.arange(3), 4)
    modality = np.tile([0, 0, 1, 1], 3)
    images = torch.randint(0, 255, (12, 3, 8, 4), dtype=torch.uint8)
    pipeline = TrainPipeline(
        images, labels, modality, np.ones(12, dtype=np.int64),
        PipelineConfig(p=2, k=2, num_batches=3, transform=TransformConfig(size=(8, 4), pad=1)),
    )  # fmt: skip
    network = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return Loop(
        tiny_config("baseline-sysu", Path(".")), out_dir, Processes(), torch.device("cpu"),
        pipeline, network, network, optimizer, scheduler, scaler,
        RunLog(out_dir, enabled=False, resume_step=None), StopFlag(), labels,
    )  # fmt: skip


def test_state_round_trips_mid_epoch(tmp_path):
    loop = make_loop(tmp_path, seed=0)
    loop.pipeline.set_epoch(2)
    loop.generator = loop.pipeline.epoch_generator()
    loop.pipeline.make_batch([0, 1, 2, 3, 4, 5, 6, 7], loop.generator)  # one batch drawn
    loop.network(torch.ones(1, 3)).sum().backward()
    loop.optimizer.step()
    loop.epoch, loop.epoch_step, loop.step = 2, 1, 7
    loop.save()
    data = read_checkpoint(tmp_path / "last.pt")
    assert set(KEYS) <= set(data) and data["world_size"] == 1 and len(data["rng"]) == 1
    expected = torch.rand(3, generator=loop.generator)

    fresh = make_loop(tmp_path, seed=1)
    fresh.restore(data)
    assert (fresh.epoch, fresh.epoch_step, fresh.step) == (2, 1, 7)
    assert torch.equal(fresh.network.weight, loop.network.weight)
    assert torch.equal(
        fresh.optimizer.state_dict()["state"][0]["momentum_buffer"],
        loop.optimizer.state_dict()["state"][0]["momentum_buffer"],
    )
    # the transform generator goes on where the stopped epoch left it
    assert torch.equal(torch.rand(3, generator=fresh.generator), expected)
