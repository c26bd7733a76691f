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
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from reference.data.pipeline import TrainPipeline
from reference.errors import VireidError
from reference.losses.dispatch import compute_losses
from reference.training.allocator import keep_freed_memory
from reference.training.checkpoint import (
    check_resume,
    read_checkpoint,
)
from reference.training.config import TrainConfig, config_to_dict
from reference.training.distributed import (
    any_rank,
    mean_over_ranks,
    processes_from_env,
)
from reference.training.faults import (
    EXIT_INTERRUPTED,
    EXIT_NONFINITE,
    Interrupted,
    NonFiniteLoss,
    StopFlag,
    TrainingStopped,
    nonfinite_message,
    nonfinite_terms,
)
from reference.training.loop import Loop
from reference.training.runfolder import (
    RUN_FILES,
    RunLog,
    prepare_folder,
    write_json,
    write_summary,
)
from reference.training.setup import build_for_training, determinism, pick_device
from reference.training.validation import (
    TrainingData,
    check_root,
    read_training_data,
    score_retrieval,
)

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_NONFINITE",
    "RUN_FILES",
    "Interrupted",
    "Loop",
    "NonFiniteLoss",
    "TrainResult",
    "TrainingStopped",
    "train",
    "train_one_epoch",
]


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


# --- the loop -------------------------------------------------------------------------------------


def check_finite(loop: Loop, terms: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
    """Stop at once when a loss term is not finite on any process; also agree on Ctrl-C."""
    values, bad = nonfinite_terms(terms)
    any_bad, stop = any_rank([bool(bad), loop.stop.requested], loop.procs, loop.device)
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
        write_json(loop.out_dir / "fault.json", {"ranks": reports})
    first = next(r for r in reports if r["nonfinite"])
    ckpt = loop.out_dir / "last.pt" if first["checkpoint"] else None
    raise NonFiniteLoss(nonfinite_message(first, loop.procs.distributed), ckpt, first)


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
                check_finite(loop, {**terms.terms, "total": total}, batch.labels)
                scaler.scale(total / accumulate).backward()
            for k, v in terms.as_floats().items():  # logged: the mean over the batches
                step_terms[k] = step_terms.get(k, 0.0) + v / accumulate
        scaler.step(optimizer)
        scaler.update()
        loop.step += 1
        loop.epoch_step = step_in_epoch + 1
        loop.images_seen += images * loop.procs.world_size
        loop.last_terms = mean_over_ranks(step_terms, loop.procs, loop.device)
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
            score_retrieval(loop.network, data.val, val_images, loop.config)
            if (loop.procs.writer)
            else None
        )
        loop.log.evaluation(done, loop.step, "val", scores or {})
        if loop.procs.writer:
            better = loop.best_val is None or scores["mAP"] > loop.best_val["mAP"]
            if better:
                loop.best_val = {"epoch": done, "step": loop.step, **scores}
        better = any_rank([loop.procs.writer and better], loop.procs, loop.device)[0]
        if better:
            loop.save("best-val.pt")
    if evaluate and data.test is not None:
        if loop.procs.writer:
            scores = score_retrieval(loop.network, data.test, test_images, loop.config)
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
    procs = processes_from_env()
    own_group = False
    if procs.distributed and not dist.is_initialized():
        backend = "nccl" if config.run.device != "cpu" and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        own_group = True
    try:
        device = pick_device(config, procs)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        elif config.run.keep_freed_memory:
            keep_freed_memory()  # a step's activations reuse freed blocks (allocator.md)
        check_root(config)  # before anything is written
        if procs.writer:
            prepare_folder(out_dir, resume=resume, force=force)
        if procs.distributed:
            dist.barrier()
        with determinism(config, device), StopFlag() as stop:
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
        check_resume(config, checkpoint, out_dir / "last.pt", procs.world_size)
    elif procs.writer:
        write_json(out_dir / "config.json", config_to_dict(config))
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
    # a resumed run's checkpoint sets every tensor: no initialisation to draw (build.md)
    network, model, optimizer, scheduler, scaler = build_for_training(
        config, device, procs, initialise=not resume
    )
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
        write_summary(out_dir, result, loop.train_s, loop.images_seen, procs.world_size, device,
                      config.preset, resume)  # fmt: skip
    return result
