"""The training engine: ``train(config, out_dir)`` and ``train_one_epoch``.

Spec: ``spec/training/engine.md``. One loop that reads top to bottom, per optimizer step:

    batch  = pipeline.make_batch(sampler rows, transform generator)     (x accumulate)
    output = model(batch.images, batch.modality)                       autocast when amp is set
    terms  = compute_losses(config.losses, output, batch.labels)
    stop if a term is not finite (NonFiniteLoss, exit status 3)
    (terms.total / accumulate).backward()
    optimizer.step(); log every term, the learning rates, images/s, data time, GPU memory
    checkpoint / stop after a Ctrl-C (Interrupted, exit status 130)

and per epoch: learning rates from the schedule, optional validation on held-out training
identities (``best-val.pt``), optional test monitoring (analysis only), ``last.pt``.

The run folder holds ``config.json`` (resolved config), ``log.csv``, ``eval.csv``, ``last.pt``,
``best-val.pt`` (with ``run.val_ids``), ``summary.json`` at the end and ``fault.json`` after a
non-finite loss. Several processes (``torchrun``): DistributedDataParallel, the rank-aware
sampler, rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from reference.config import config_diff
from reference.data.modality import Modality
from reference.data.pipeline import TrainPipeline
from reference.data.records import ImageRecords
from reference.data.transforms import TestTransform
from reference.errors import VireidError
from reference.fileio import atomic_write_text
from reference.losses.dispatch import compute_losses
from reference.models.build import build_model
from reference.training.checkpoint import (
    checkpoint_config,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from reference.training.config import TrainConfig, config_to_dict

#: exit status of a run stopped by a non-finite loss
EXIT_NONFINITE = 3
#: exit status of a run stopped by Ctrl-C (128 + SIGINT, the shell's convention)
EXIT_INTERRUPTED = 130
#: the files a run writes in its folder (``--force`` removes exactly these)
RUN_FILES = (
    "config.json",
    "log.csv",
    "eval.csv",
    "last.pt",
    "best-val.pt",
    "summary.json",
    "fault.json",
)
#: config fields that say where things are, not what is computed: they may differ on resume
RESUME_MAY_DIFFER = ("data.root", "data.cache_dir", "data.workers", "run.progress")


class TrainingStopped(Exception):
    """The run stopped before its last step; ``status`` is the process exit status."""

    status = 1

    def __init__(self, message: str, checkpoint: Path | None, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.report = report


class NonFiniteLoss(TrainingStopped):
    status = EXIT_NONFINITE


class Interrupted(TrainingStopped):
    status = EXIT_INTERRUPTED


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced (also written as ``summary.json``)."""

    out_dir: Path
    epochs: int
    steps: int
    checkpoint: Path  # the selected model: best-val.pt with run.val_ids, else last.pt
    last_checkpoint: Path
    wall_s: float
    images_per_s: float
    final_losses: dict[str, float]
    best_val: dict[str, float] | None = None


# --- processes and devices ------------------------------------------------------------------------


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


def _processes_from_env() -> Processes:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes()
    return Processes(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def _device(config: TrainConfig, procs: Processes) -> torch.device:
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
def _determinism(config: TrainConfig, device: torch.device) -> Iterator[None]:
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


class _StopFlag:
    """Ctrl-C sets a flag (a second Ctrl-C interrupts at once); the loop stops after the step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# --- data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingData:
    train: ImageRecords
    val: ImageRecords | None
    test: ImageRecords | None


def _relabel(records: ImageRecords) -> ImageRecords:
    """Labels 0..C-1 in identity order (after identities were held out)."""
    _, labels = np.unique(records.pids, return_inverse=True)
    return replace(records, labels=labels.astype(np.int64))


def _check_root(config: TrainConfig) -> None:
    root = config.data.root
    if root is None:
        raise VireidError("data.root: no dataset folder given (CLI: --data-root ROOT)")
    if not Path(root).is_dir():
        raise VireidError(f"data.root: {root} is not a folder")


def read_training_data(config: TrainConfig) -> TrainingData:
    """The training records (minus ``run.val_ids`` held-out identities), the held-out ones, and
    the test records when ``run.monitor_test`` is set."""
    from reference.data.regdb import read_regdb
    from reference.data.sysu import read_sysu_test, read_sysu_train

    data = config.data
    _check_root(config)
    if data.dataset == "sysu":
        train = read_sysu_train(data.root, ids=data.sysu_ids)
        test = read_sysu_test(data.root) if config.run.monitor_test else None
    else:
        train = read_regdb(data.root, trial=data.trial, split="train")
        test = (
            read_regdb(data.root, trial=data.trial, split="test")
            if config.run.monitor_test
            else None
        )
    val = None
    n_val = config.run.val_ids
    if n_val:
        ids = np.unique(train.pids)
        if n_val > ids.size - config.pipeline.p:
            raise VireidError(
                f"run.val_ids: {n_val} held out of {ids.size} identities leaves fewer than "
                f"pipeline.p = {config.pipeline.p} to train on"
            )
        rng = np.random.default_rng([config.run.seed, 0x7A1])
        held = np.sort(rng.choice(ids, size=n_val, replace=False))
        mask = np.isin(train.pids, held)
        val = _relabel(train.subset(mask))
        train = _relabel(train.subset(~mask))
    return TrainingData(train, val, test)


# --- scoring (validation and test monitoring) -----------------------------------------------------


@torch.no_grad()
def embed_images(
    model: nn.Module,
    images: torch.Tensor,
    modality: torch.Tensor,
    transform: TestTransform,
    device: torch.device,
    batch_size: int = 128,
) -> torch.Tensor:
    """Test embeddings (float32, CPU) of decoded uint8 images, in eval mode, batched."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = transform(images[start : start + batch_size].to(device))
        m = modality[start : start + batch_size].to(device)
        out.append(model(x, m).embedding.float().cpu())
    model.train(was_training)
    return torch.cat(out)


def _score(
    model: nn.Module, records: ImageRecords, images: torch.Tensor, config: TrainConfig, device
) -> dict[str, float]:
    """Cross-modality retrieval on ``records``: infrared queries against the visible gallery,
    the dataset's camera rule (SYSU-MM01: camera 3 skips camera 2) and CMC kind."""
    from reference.evaluation.metrics import rank_metrics_from_features

    modality = torch.from_numpy(records.modality.copy())
    feats = embed_images(model, images, modality, TestTransform(config.pipeline.transform), device)
    q = records.modality == int(Modality.INFRARED)
    g = ~q
    sysu = config.data.dataset == "sysu"
    m = rank_metrics_from_features(
        feats[torch.from_numpy(q)],
        feats[torch.from_numpy(g)],
        records.pids[q],
        records.pids[g],
        records.camids[q],
        records.camids[g],
        exclusion="sysu" if sysu else "none",
        cmc_kind="identity" if sysu else "standard",
        max_rank=min(20, int(g.sum())),
    )
    return {"r1": m.rank(1), "mAP": m.mAP, "mINP": m.mINP}


# --- the run folder -------------------------------------------------------------------------------


class RunLog:
    """``log.csv`` (every term by name, learning rates, images/s, data time, GPU memory) and,
    when installed, TensorBoard; rank 0 only. On resume, rows past the checkpoint's step are
    dropped so the log reads as one run."""

    def __init__(self, out_dir: Path, *, enabled: bool, resume_step: int | None) -> None:
        self.path = out_dir / "log.csv"
        self.eval_path = out_dir / "eval.csv"
        self.enabled = enabled
        self.columns: list[str] | None = None
        self.tb = None
        if not enabled:
            return
        if resume_step is not None:
            for path in (self.path, self.eval_path):
                self._truncate(path, resume_step)
            if self.path.exists():
                with self.path.open(newline="") as handle:
                    self.columns = next(csv.reader(handle), None)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"))
        except ImportError:  # the optional extra is not installed
            self.tb = None

    @staticmethod
    def _truncate(path: Path, step: int) -> None:
        if not path.exists():
            return
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            return
        at = rows[0].index("step")
        keep = [rows[0]] + [r for r in rows[1:] if int(r[at]) <= step]
        text = "".join(",".join(r) + "\n" for r in keep)
        atomic_write_text(path, text, overwrite=True)

    def step(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.columns is None:
            self.columns = list(row)
            with self.path.open("w", newline="") as handle:
                csv.writer(handle).writerow(self.columns)
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([_cell(row.get(c, "")) for c in self.columns])
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("epoch", "step"):
                    self.tb.add_scalar(key, value, int(row["step"]))

    def evaluation(self, epoch: int, step: int, split: str, scores: dict[str, float]) -> None:
        if not self.enabled:
            return
        new = not self.eval_path.exists()
        with self.eval_path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["epoch", "step", "split", "r1", "mAP", "mINP"])
            writer.writerow(
                [epoch, step, split, *(_cell(scores[k]) for k in ("r1", "mAP", "mINP"))]
            )
        if self.tb is not None:
            for key, value in scores.items():
                self.tb.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _cell(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _prepare_folder(out_dir: Path, *, resume: bool, force: bool) -> None:
    if resume and force:
        raise VireidError("resume and force: choose one (force starts the run again)")
    if out_dir.exists() and not out_dir.is_dir():
        raise VireidError(f"{out_dir}: exists and is not a folder")
    if resume:
        if not (out_dir / "last.pt").is_file():
            raise VireidError(f"{out_dir}: no last.pt to resume from")
        return
    ours = [n for n in RUN_FILES if (out_dir / n).exists()]
    if ours and not force:
        raise VireidError(
            f"{out_dir}: already holds a run ({', '.join(ours)}); pass resume=True (CLI: "
            "--resume) to continue it or force=True (--force) to start it again"
        )
    for name in ours:
        (out_dir / name).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", overwrite=True)


# --- the loop -------------------------------------------------------------------------------------


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
    stop: _StopFlag
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
        self.optimizer.load_state_dict(data["optimizer"])
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


def _any_rank(flags: list[bool], procs: Processes, device: torch.device) -> list[bool]:
    """Each flag OR-ed over the processes (every rank takes the same branch)."""
    if not procs.distributed:
        return flags
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def _mean_over_ranks(values: dict[str, float], procs: Processes, device) -> dict[str, float]:
    """The mean of each value over the processes (what is logged is the whole step's)."""
    if not procs.distributed:
        return values
    keys = list(values)  # the same terms, in the same order, on every process
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: v / procs.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def _check_finite(loop: Loop, terms: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
    """Stop at once when a loss term is not finite on any process; also agree on Ctrl-C."""
    values = {k: float(v.detach()) for k, v in terms.items()}
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    any_bad, stop = _any_rank([bool(bad), loop.stop.requested], loop.procs, loop.device)
    loop.stopping = loop.stopping or stop
    if not any_bad:
        return
    report = {
        "step": loop.step + 1,
        "epoch": loop.epoch + 1,
        "rank": loop.procs.rank,
        "nonfinite": {k: repr(v) for k, v in bad.items()},
        "terms": {k: repr(v) for k, v in values.items()},
        "identities": sorted({int(loop.label_pids[i]) for i in labels.cpu().tolist()}),
        "checkpoint": "last.pt" if (loop.out_dir / "last.pt").exists() else None,
    }
    reports = [report]
    if loop.procs.distributed:
        reports = [None] * loop.procs.world_size
        dist.all_gather_object(reports, report)
    if loop.procs.writer:
        _write_json(loop.out_dir / "fault.json", {"ranks": reports})
    first = next(r for r in reports if r["nonfinite"])
    where = f"rank {first['rank']}: " if loop.procs.distributed else ""
    terms_text = ", ".join(f"{k} = {v}" for k, v in first["nonfinite"].items())
    message = (
        f"{where}non-finite loss at step {first['step']} (epoch {first['epoch']}): {terms_text}; "
        f"batch identities {first['identities']}; the last good checkpoint is "
        f"{first['checkpoint'] or 'none (no checkpoint was written yet)'}"
    )
    ckpt = loop.out_dir / "last.pt" if first["checkpoint"] else None
    raise NonFiniteLoss(message, ckpt, first)


def train_one_epoch(loop: Loop, bar: Any = None) -> None:
    """Run the optimizer steps of ``loop.epoch`` from ``loop.epoch_step`` to its end."""
    config, run = loop.config, loop.config.run
    model, optimizer, scaler = loop.model, loop.optimizer, loop.scaler
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(run.amp)
    accumulate = run.accumulate
    model.train()
    rows = loop.pipeline.sampler.epoch_batches(loop.epoch)[loop.procs.rank :: loop.procs.world_size]
    window: dict[str, float] = {}
    window_steps, window_images, window_data, window_start = 0, 0, 0.0, time.perf_counter()
    for step_in_epoch in range(loop.epoch_step, loop.steps_per_epoch):
        step_start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        data_s, images, step_terms = 0.0, 0, {}
        for j in range(accumulate):
            t0 = time.perf_counter()
            batch = loop.pipeline.make_batch(rows[step_in_epoch * accumulate + j], loop.generator)
            x = batch.images
            if run.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            data_s += time.perf_counter() - t0
            images += x.shape[0]
            sync = j == accumulate - 1 or not loop.procs.distributed
            with contextlib.nullcontext() if sync else model.no_sync():
                with torch.autocast(
                    loop.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
                ):
                    output = model(x, batch.modality)
                    terms = compute_losses(config.losses, output, batch.labels)
                    total = terms.total
                _check_finite(loop, {**terms.terms, "total": total}, batch.labels)
                scaler.scale(total / accumulate).backward()
            for k, v in terms.as_floats().items():  # logged: the mean over the batches
                step_terms[k] = step_terms.get(k, 0.0) + v / accumulate
        scaler.step(optimizer)
        scaler.update()
        loop.step += 1
        loop.epoch_step = step_in_epoch + 1
        loop.images_seen += images * loop.procs.world_size
        loop.last_terms = _mean_over_ranks(step_terms, loop.procs, loop.device)
        # log: window means of every term, the learning rates, throughput, data time, memory
        for k, v in loop.last_terms.items():
            window[k] = window.get(k, 0.0) + v
        window_steps += 1
        window_images += images * loop.procs.world_size
        window_data += data_s
        loop.train_s += time.perf_counter() - step_start
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loop.last_terms['total']:.4f}", refresh=False)
        last = loop.epoch_step == loop.steps_per_epoch
        if loop.step % run.log_every == 0 or last:
            elapsed = time.perf_counter() - window_start
            loop.log.step(
                {
                    "epoch": loop.epoch + 1,
                    "step": loop.step,
                    **{f"lr_{g['name']}": g["lr"] for g in optimizer.param_groups},
                    **{k: v / window_steps for k, v in window.items()},
                    "images_per_s": window_images / elapsed if elapsed > 0 else 0.0,
                    "data_s": window_data / window_steps,
                    "step_s": elapsed / window_steps,
                    "gpu_mem_mb": torch.cuda.max_memory_allocated(loop.device) / 2**20
                    if loop.device.type == "cuda"
                    else 0.0,
                }
            )
            window, window_steps, window_images, window_data = {}, 0, 0, 0.0
            window_start = time.perf_counter()
        if run.checkpoint_steps and loop.step % run.checkpoint_steps == 0 and not last:
            loop.save()
        if loop.stopping and not last:
            path = loop.save()
            raise Interrupted(
                f"interrupted after step {loop.step} (epoch {loop.epoch + 1}); "
                f"resume with --resume from {path}",
                path,
                {"step": loop.step, "epoch": loop.epoch},
            )


def _end_of_epoch(loop: Loop, data: TrainingData, val_images, test_images) -> None:
    """Schedule step, validation / test monitoring, checkpoints; the epoch counter moves on."""
    run = loop.config.run
    loop.scheduler.step()
    done = loop.epoch + 1
    loop.epoch, loop.epoch_step = done, 0
    final = done == run.epochs
    evaluate = done % run.val_every == 0 or final
    if evaluate and data.val is not None:
        scores = (
            _score(loop.network, data.val, val_images, loop.config, loop.device)
            if (loop.procs.writer)
            else None
        )
        loop.log.evaluation(done, loop.step, "val", scores or {})
        if loop.procs.writer:
            better = loop.best_val is None or scores["mAP"] > loop.best_val["mAP"]
            if better:
                loop.best_val = {"epoch": done, "step": loop.step, **scores}
        better = _any_rank([loop.procs.writer and better], loop.procs, loop.device)[0]
        if better:
            loop.save("best-val.pt")
    if evaluate and data.test is not None:
        if loop.procs.writer:
            scores = _score(loop.network, data.test, test_images, loop.config, loop.device)
            loop.log.evaluation(done, loop.step, "test (analysis only)", scores)
    if done % run.checkpoint_every == 0 or final or loop.stopping:
        loop.save()
    if loop.procs.distributed:
        dist.barrier()
    if loop.stopping and not final:
        path = loop.out_dir / "last.pt"
        raise Interrupted(
            f"interrupted after step {loop.step} (end of epoch {done}); resume with --resume "
            f"from {path}",
            path,
            {"step": loop.step, "epoch": done},
        )


def _build(config: TrainConfig, device: torch.device, procs: Processes):
    network = build_model(config.model).to(device)
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
        model = torch.compile(model)
    groups = network.parameter_groups()
    optim = config.optim
    optimizer = torch.optim.SGD(
        [
            {"params": groups["backbone"], "lr": optim.lr_backbone, "name": "backbone"},
            {"params": groups["head"], "lr": optim.lr_head, "name": "head"},
        ],
        lr=optim.lr_head,
        momentum=optim.momentum,
        nesterov=optim.nesterov,
        weight_decay=optim.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: config.schedule.factor(epoch)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=config.run.amp == "fp16")
    return network, model, optimizer, scheduler, scaler


def _check_resume(config: TrainConfig, data: dict[str, Any], path: Path, procs: Processes):
    saved = checkpoint_config(data, path)
    diff = [d for d in config_diff(config_to_dict(config), config_to_dict(saved))]
    diff = [d for d in diff if d not in RESUME_MAY_DIFFER and d != "preset"]
    if diff:
        raise VireidError(
            f"{path}: the run was made with a different config; differing fields: "
            f"{', '.join(diff)} (start a new run with --force or another --out)"
        )
    if data["world_size"] != procs.world_size:
        raise VireidError(
            f"{path}: written by {data['world_size']} process(es); this run has "
            f"{procs.world_size}: resume with the same number"
        )


def train(
    config: TrainConfig, out_dir: str | Path, resume: bool = False, force: bool = False
) -> TrainResult:
    """Train ``config`` into the run folder ``out_dir`` (see the module docstring).

    ``resume=True`` continues the run of ``out_dir/last.pt`` exactly where it stopped (same
    config required); ``force=True`` replaces an existing run. Raises :class:`NonFiniteLoss`
    or :class:`Interrupted` (both :class:`TrainingStopped`, with an exit ``status``) when the
    run stops early, :class:`VireidError` for bad input.
    """
    if not isinstance(config, TrainConfig):
        raise VireidError(f"config: expected a TrainConfig, got {type(config).__name__}")
    out_dir = Path(out_dir)
    procs = _processes_from_env()
    own_group = False
    if procs.distributed and not dist.is_initialized():
        backend = "nccl" if config.run.device != "cpu" and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        own_group = True
    try:
        device = _device(config, procs)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        _check_root(config)  # before anything is written
        if procs.writer:
            _prepare_folder(out_dir, resume=resume, force=force)
        if procs.distributed:
            dist.barrier()
        with _determinism(config, device), _StopFlag() as stop:
            return _run(config, out_dir, resume, procs, device, stop)
    finally:
        if own_group:
            dist.destroy_process_group()


def _run(config, out_dir, resume, procs, device, stop) -> TrainResult:
    wall_start = time.perf_counter()
    data = read_training_data(config)
    config = replace(config, model=replace(config.model, num_classes=data.train.num_classes))
    checkpoint = None
    if resume:
        checkpoint = read_checkpoint(out_dir / "last.pt")
        _check_resume(config, checkpoint, out_dir / "last.pt", procs)
    elif procs.writer:
        _write_json(out_dir / "config.json", config_to_dict(config))
    pipeline = TrainPipeline.from_records(
        data.train,
        config.pipeline,
        device=device,
        cache_dir=config.data.cache_dir,
        workers=config.data.workers,
        progress=config.run.progress and procs.writer,
        images_on_device=config.data.images_on_device,
        rank=procs.rank,
        world_size=procs.world_size,
    )
    if len(pipeline) < config.run.accumulate:
        raise VireidError(
            f"run.accumulate: {config.run.accumulate} batches per step, but an epoch has "
            f"{len(pipeline)} per process"
        )
    size = config.pipeline.transform.size
    from reference.data.cache import load_decoded

    def decoded(records):
        if records is None or not procs.writer:
            return None
        return load_decoded(records, size=size, cache_dir=config.data.cache_dir,
                            workers=config.data.workers)  # fmt: skip

    val_images, test_images = decoded(data.val), decoded(data.test)
    network, model, optimizer, scheduler, scaler = _build(config, device, procs)
    label_pids = np.zeros(data.train.num_classes, dtype=np.int64)
    label_pids[data.train.labels] = data.train.pids
    loop = Loop(
        config, out_dir, procs, device, pipeline, model, network, optimizer, scheduler, scaler,
        RunLog(out_dir, enabled=procs.writer, resume_step=checkpoint["step"] if resume else None),
        stop, label_pids,
    )  # fmt: skip
    if checkpoint is not None:
        loop.restore(checkpoint)
    run = config.run
    total_steps = run.epochs * loop.steps_per_epoch
    bar = None
    if run.progress and procs.writer:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=loop.step, unit="step", dynamic_ncols=True)
    try:
        while loop.epoch < run.epochs:
            if bar is not None:
                bar.set_description(f"epoch {loop.epoch + 1}/{run.epochs}")
            if loop.epoch_step == 0:
                pipeline.set_epoch(loop.epoch)
                loop.generator = pipeline.epoch_generator()
            train_one_epoch(loop, bar)
            _end_of_epoch(loop, data, val_images, test_images)
    finally:
        if bar is not None:
            bar.close()
        loop.log.close()
    last = out_dir / "last.pt"
    selected = out_dir / "best-val.pt" if loop.best_val is not None else last
    result = TrainResult(
        out_dir=out_dir,
        epochs=loop.epoch,
        steps=loop.step,
        checkpoint=selected,
        last_checkpoint=last,
        wall_s=time.perf_counter() - wall_start,
        images_per_s=loop.images_seen / loop.train_s if loop.train_s > 0 else 0.0,
        final_losses=loop.last_terms,
        best_val=loop.best_val,
    )
    if procs.writer:
        _write_json(
            out_dir / "summary.json",
            {
                "epochs": result.epochs,
                "steps": result.steps,
                "wall_s": result.wall_s,
                "train_s": loop.train_s,
                "images_seen": loop.images_seen,
                "images_per_s": result.images_per_s,
                "selected_checkpoint": selected.name,
                "selection": "best validation mAP" if loop.best_val else "last epoch",
                "last_checkpoint": last.name,
                "best_val": loop.best_val,
                "final_losses": result.final_losses,
                "world_size": procs.world_size,
                "device": str(device),
                "preset": config.preset,
                "resumed": bool(resume),
            },
        )
    return result
