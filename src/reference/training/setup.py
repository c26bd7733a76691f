"""Building what a run needs: the device, the determinism switches, the network and its optimizer.

Spec: ``spec/training/engine.md`` (section "Optimisation"). SGD with Nesterov momentum and two
parameter groups (``backbone``, ``head``) [predecessor], a per-epoch ``LambdaLR`` of the
schedule's factor, a gradient scaler for fp16; DistributedDataParallel (optionally with
SyncBatchNorm) under several processes, ``torch.compile`` when asked.

The optimizer's step runs torch's fused SGD kernel where this torch has one for the device
(:func:`fused_sgd_available`): one pass over each tensor instead of torch's default on the CPU,
a Python loop of several element-wise operations per tensor (7 ms against 36 ms a step for a
ResNet-18 Method A, 15 against 41 ms at depth 50, two threads). It computes the same values bit
for bit on the CPU: ``tests/training/test_setup.py::test_fused_sgd_equals_the_loop``. It reads
a gradient as laid out like its parameter, which autograd guarantees (a channels-last weight gets
a channels-last gradient); a gradient written by hand in another layout would be misread.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from reference.errors import VireidError
from reference.models.build import build_model
from reference.training.config import OptimConfig, TrainConfig
from reference.training.distributed import Processes


def pick_device(config: TrainConfig, procs: Processes) -> torch.device:
    """The device of ``run.device`` for this process; GPU-only switches refused on the CPU."""
    want = config.run.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda":
        if not torch.cuda.is_available():
            raise VireidError("run.device: 'cuda' requested but no GPU is available")
        return torch.device("cuda", procs.local_rank)
    if config.run.amp == "fp16":
        raise VireidError("run.amp: fp16 needs a GPU; use 'bf16' or 'none' on the CPU")
    if config.run.sync_bn:
        raise VireidError("run.sync_bn: SyncBatchNorm runs on GPUs only (torch has no CPU kernel)")
    return torch.device("cpu")


@contextlib.contextmanager
def determinism(config: TrainConfig, device: torch.device) -> Iterator[None]:
    """Seed the global generators; deterministic algorithms while the run lasts."""
    previous = torch.are_deterministic_algorithms_enabled()
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    seed = config.run.seed
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seed the legacy global generator too)
    random.seed(seed)
    if config.run.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn


#: the C++ compilers torch.compile's default backend (inductor) looks for on the CPU
CXX_NAMES = ("g++", "c++", "clang++")


def check_compiler(device: torch.device) -> None:
    """``run.compile`` on the CPU needs a C++ compiler for inductor's kernels (``$CXX`` or one
    of ``CXX_NAMES`` on PATH): say so before the run starts, not with a trace at the first step
    (on a GPU torch's own checks apply)."""
    if device.type != "cpu":
        return
    cxx = os.environ.get("CXX")
    if (cxx and shutil.which(cxx)) or any(shutil.which(name) for name in CXX_NAMES):
        return
    raise VireidError(
        "run.compile: torch.compile's default backend (inductor) needs a C++ compiler on the "
        f"CPU ($CXX or one of {', '.join(CXX_NAMES)} on PATH) and none was found; install one "
        "or set run.compile=false"
    )


def build_for_training(
    config: TrainConfig, device: torch.device, procs: Processes, *, initialise: bool = True
):
    """``(network, model, optimizer, scheduler, scaler)``: ``network`` is the plain
    ``ReidNetwork`` (state dicts, evaluation), ``model`` what the loop calls (DDP / compiled).

    ``initialise=False`` (a resumed run, whose checkpoint then sets every tensor): the network
    is built without drawing its initialisation or reading ``pretrained``
    (``build_model(..., initialise=False)``)."""
    network = build_model(config.model, initialise=initialise).to(device)
    if config.run.channels_last:
        network = network.to(memory_format=torch.channels_last)
    model: nn.Module = network
    if procs.distributed:
        if config.run.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(network)
            network = model
        model = nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.run.compile:
        check_compiler(device)
        model = torch.compile(model)
    optimizer = build_optimizer(network.parameter_groups(), config.optim, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: config.schedule.factor(epoch)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=config.run.amp == "fp16")
    return network, model, optimizer, scheduler, scaler


def build_optimizer(
    groups: dict[str, list[nn.Parameter]], optim: OptimConfig, device: torch.device
) -> torch.optim.SGD:
    """SGD with Nesterov momentum over the ``backbone`` and ``head`` parameter groups
    (``ReidNetwork.parameter_groups()``), each at its learning rate, weight decay on both; the
    fused kernel where :func:`fused_sgd_available` says ``device`` has one."""
    fused = {"fused": True} if fused_sgd_available(device.type) else {}
    return torch.optim.SGD(
        [
            {"params": groups["backbone"], "lr": optim.lr_backbone, "name": "backbone"},
            {"params": groups["head"], "lr": optim.lr_head, "name": "head"},
        ],
        lr=optim.lr_head,
        momentum=optim.momentum,
        nesterov=optim.nesterov,
        weight_decay=optim.weight_decay,
        **fused,
    )


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, keeping ``optimizer``'s kernel choice (``fused``,
    ``foreach``): the saved groups carry the choice of the run that saved them (the same values
    either way), which this torch or device may not support."""
    kernels = [(g.get("fused"), g.get("foreach")) for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, (fused, foreach) in zip(optimizer.param_groups, kernels, strict=True):
        group["fused"], group["foreach"] = fused, foreach


@functools.cache
def fused_sgd_available(device_type: str) -> bool:
    """Whether this torch's SGD takes ``fused=True`` for float32 tensors on ``device_type``
    (older versions have no such argument, or a fused kernel for CUDA only): one momentum step
    on a one-element tensor, tried once per device type."""
    try:
        weight = torch.zeros(1, device=device_type, requires_grad=True)
        weight.grad = torch.ones(1, device=device_type)
        torch.optim.SGD([weight], lr=0.1, momentum=0.9, nesterov=True, fused=True).step()
    except (TypeError, RuntimeError):
        return False
    return True
