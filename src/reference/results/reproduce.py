"""Reproduce a preset's published row: train, extract, score every protocol, record, check.

Spec: ``spec/results/reproduce.md``.

The output folder ``OUT`` holds::

    run.json                    the run record (reference.results.record), updated per stage
    train/                      SYSU-MM01: the training run folder (config.json, log.csv, last.pt,
                                summary.json)
    train/                      LLCM: the same
    trial-01/ ... trial-10/     RegDB: one training run folder per trial (a model per trial)
    features/sysu.npz           SYSU-MM01: the test pool's features
    features/llcm.npz           LLCM: the test pool's features (both modalities)
    features/trial-01.npz ...   RegDB: each trial's test split's features

Stages, each skipped when its output exists (so an interrupted reproduction resumes where it
stopped): training (a run with ``summary.json`` is finished; one with ``last.pt`` resumes),
extraction (the features file), scoring (the protocol's entry in ``run.json``). SYSU-MM01 is
scored in all/indoor search x single/multi-shot x the ``agw`` draw, and the ``official`` draw too
when the dataset authors' ``rand_perm_cam.mat`` is given; RegDB in both directions over the
trials' models; LLCM in both directions (10 gallery draws each). Then the record is checked
against the preset's published row.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from reference.config import to_dict
from reference.errors import VireidError
from reference.evaluation.features import FeatureSet, load_features, save_features
from reference.evaluation.llcm import evaluate_llcm
from reference.evaluation.regdb import evaluate_regdb
from reference.evaluation.scores import Scores
from reference.evaluation.sysu import evaluate_sysu, load_official_split
from reference.results import compare, published
from reference.results.record import (
    RUN_FILE,
    ProtocolResult,
    RunRecord,
    dataset_fingerprint,
    protocol_key,
    protocol_of,
    read_record,
    write_record,
)
from reference.training.checkpoint import load_model
from reference.training.config import TrainConfig, load_preset
from reference.training.engine import train
from reference.training.extract import ExtractConfig, extract_features

SYSU_PROTOCOLS: tuple[tuple[str, int], ...] = (
    ("all", 1),
    ("all", 10),
    ("indoor", 1),
    ("indoor", 10),
)
REGDB_TRIALS = 10
REGDB_DIRECTIONS = ("v2t", "t2v")
LLCM_DIRECTIONS = ("i2v", "v2i")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Reproduction:
    """What a reproduction produced: the record, and the check (None without a published row)."""

    out_dir: Path
    record: RunRecord
    check: compare.Check | None
    reference: str | None
    skipped: tuple[str, ...]  # the stages found finished


def _literal(path: str | os.PathLike[str]) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _device(config: TrainConfig) -> torch.device:
    if config.run.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def _train_stage(
    config: TrainConfig, folder: Path, progress: Progress, skipped: list[str]
) -> dict[str, Any]:
    summary = folder / "summary.json"
    if summary.is_file():
        skipped.append(f"train {folder.name}")
        progress(f"training {folder}: finished before, kept")
    else:
        resume = (folder / "last.pt").is_file()
        force = folder.exists() and not resume  # a run stopped before its first checkpoint
        progress(f"training {folder}" + (" (resuming)" if resume else ""))
        train(config, folder, resume=resume, force=force)
    return json.loads(summary.read_text(encoding="utf-8"))


def _extract_stage(
    config: TrainConfig,
    run_folder: Path,
    summary: dict[str, Any],
    out: Path,
    trial: int | None,
    progress: Progress,
    skipped: list[str],
) -> FeatureSet:
    dataset = config.data.dataset
    if out.is_file():
        skipped.append(f"extract {out.name}")
        progress(f"features {out}: extracted before, kept")
        return load_features(out, dataset)
    model, _ = load_model(run_folder / summary["selected_checkpoint"], _device(config))
    extract = ExtractConfig(transform=config.pipeline.transform)
    progress(f"extracting {out}")
    fs = extract_features(
        model,
        config.data.root,
        dataset=dataset,
        trial=trial,
        config=extract,
        progress=config.run.progress,
    )
    save_features(out, fs)
    return fs


def _training_entry(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    wall = sum(float(s.get("wall_s", 0.0)) for s in summaries)
    images = sum(float(s.get("images_seen", 0.0)) for s in summaries)
    train_s = sum(float(s.get("train_s", 0.0)) for s in summaries)
    return {
        "models": len(summaries),
        "epochs": summaries[0].get("epochs") if summaries else None,
        "wall_time_s": wall,
        "images_per_s": images / train_s if train_s > 0 else None,
        "per_model": list(summaries),
    }


def reproduce(
    preset: str,
    data_root: str | os.PathLike[str],
    pretrained: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    split: str | os.PathLike[str] | None = None,
    against: str | None = None,
    tolerance: dict[str, float] | None = None,
    trials: int = REGDB_TRIALS,
    resamples: int = 1000,
    progress: Progress = lambda message: None,
) -> Reproduction:
    """Run or resume the reproduction of ``preset`` in ``out_dir`` (see the module docstring)."""
    root = Path(data_root)
    if not root.is_dir():
        raise VireidError(f"--data-root: {root} is not a folder")
    if pretrained is not None and not Path(pretrained).is_file():
        raise VireidError(f"--pretrained: {pretrained} is not a file")
    assignments = [f"data.root={_literal(root.resolve())}"]
    if pretrained is not None:
        assignments.append(f"model.pretrained={_literal(Path(pretrained).resolve())}")
    config = load_preset(preset, [*assignments, *overrides])
    dataset = config.data.dataset
    if dataset != "regdb" and trials != REGDB_TRIALS:
        raise VireidError("--trials: only for RegDB (the number of trials, a model each)")
    if dataset != "sysu" and split is not None:
        raise VireidError("--split: only for SYSU-MM01 (the official gallery draw)")
    if not 1 <= trials <= REGDB_TRIALS:
        raise VireidError(f"--trials: expected 1..{REGDB_TRIALS}, got {trials}")
    reference = against if against is not None else published.PRESET_ROWS.get(Path(preset).stem)
    rows = published.select(reference) if reference is not None else None  # fail early
    official = load_official_split(split) if split is not None else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []

    if (out / RUN_FILE).is_file():
        record = read_record(out)
        if record.config.get("preset") != config.preset:
            raise VireidError(
                f"{out / RUN_FILE}: a reproduction of {record.config.get('preset')!r}, not of "
                f"{config.preset!r}: use another --out"
            )
        progress(f"resuming the reproduction in {out}")
    else:
        record = RunRecord.new(
            name=out.name,
            config=to_dict(config),
            dataset={**dataset_fingerprint(root), "dataset": dataset},
            seeds={
                "run": config.run.seed,
                "pipeline": config.pipeline.seed,
                "model_init": config.model.init_seed,
                "bootstrap": 0,
            },
        )
        write_record(out, record)

    def stage(
        record: RunRecord, settings: dict[str, Any], score: Callable[[], Scores]
    ) -> RunRecord:
        """``record`` with the protocol of ``settings`` scored by ``score``, written; as it is
        when it holds that protocol already (a resumed reproduction)."""
        key = protocol_key(protocol_of(settings))
        if key in record.protocols:
            skipped.append(f"score {key}")
            return record
        progress(f"scoring {key}")
        scored = record.with_protocol(ProtocolResult.from_scores(score(), resamples=resamples))
        write_record(out, scored)
        return scored

    if dataset == "regdb":  # a model per trial
        summaries = []
        sets = []
        for t in range(1, trials + 1):
            trial_config = replace(config, data=replace(config.data, trial=t))
            folder = out / f"trial-{t:02d}"
            summary = _train_stage(trial_config, folder, progress, skipped)
            summaries.append(summary)
            path = out / "features" / f"trial-{t:02d}.npz"
            sets.append(_extract_stage(trial_config, folder, summary, path, t, progress, skipped))
        sources = [str(out / "features" / f"trial-{t:02d}.npz") for t in range(1, trials + 1)]
        for direction in REGDB_DIRECTIONS:
            record = stage(
                record,
                {"dataset": "regdb", "direction": direction},
                functools.partial(evaluate_regdb, sets, direction=direction, sources=sources),
            )
    else:  # SYSU-MM01 and LLCM: one model, one test pool
        summary = _train_stage(config, out / "train", progress, skipped)
        summaries = [summary]
        pool = out / "features" / f"{dataset}.npz"
        fs = _extract_stage(config, out / "train", summary, pool, None, progress, skipped)
        if dataset == "sysu":
            draws = ["agw"] + (["official"] if official is not None else [])
            for draw in draws:
                for mode, shots in SYSU_PROTOCOLS:
                    record = stage(
                record,
                        {"dataset": "sysu", "mode": mode, "shots": shots, "sampling": draw},
                        functools.partial(
                            evaluate_sysu, fs, mode=mode, shots=shots, sampling=draw,
                            split=official, source=str(pool),
                        ),
                    )  # fmt: skip
        else:
            for direction in LLCM_DIRECTIONS:
                record = stage(
                    record,
                    {"dataset": "llcm", "direction": direction},
                    functools.partial(evaluate_llcm, fs, direction=direction, source=str(pool)),
                )
    selection = {
        "rule": summaries[0].get("selection"),
        "checkpoints": [s.get("selected_checkpoint") for s in summaries],
    }
    record = replace(record, training=_training_entry(summaries), model_selection=selection)
    write_record(out, record)
    result = None
    if rows is not None and reference is not None:
        result = compare.check(record, rows, reference, tolerance, run_name=out.name)
    return Reproduction(out, record, result, reference, tuple(skipped))
