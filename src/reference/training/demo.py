"""The demo: SynthVI -> train the three methods -> extract -> score, on one CPU in minutes.

Spec: ``spec/training/demo.md``. For each method (baseline, Method A, Method B):

    config  = preset "<kind>-sysu" + the demo's reduced settings (``DemoConfig.overrides``)
    before  = score(extract(build_model(config.model)))     the run's own initial weights
    run     = train(config, out / kind)                      the training engine, unchanged
    after   = score(extract(load_model(run.checkpoint)))
    score   = the SYSU-MM01 protocol, all-search, single-shot, agw draw, ``trials`` trials

The SynthVI folder (SYSU-MM01 layout) and the decoded images are cached under ``cache`` and reused
by later runs. Nothing here prints; ``vireid demo`` (``training/commands.py``) prints the table.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from reference.checks import check_integer
from reference.data.cache import check_size, load_decoded
from reference.data.synthvi import sysu_split_sizes, write_sysu
from reference.data.sysu import read_sysu_test, read_sysu_train
from reference.errors import VireidError
from reference.evaluation.features import FeatureSet, save_features
from reference.evaluation.scores import Scores
from reference.evaluation.sysu import evaluate_sysu
from reference.fileio import atomic_write_text
from reference.models.build import build_model
from reference.results.curves import write_curves
from reference.results.ranks import write_ranks
from reference.training.config import TrainConfig, load_preset
from reference.training.engine import RUN_FILES, train
from reference.training.extract import ExtractConfig, embed_all, resolve_device

METHODS = ("baseline", "method_a", "method_b")
NAMES = {"baseline": "baseline", "method_a": "Method A", "method_b": "Method B"}
#: the files the demo adds to each run folder
DEMO_FILES = (
    "features-untrained.npz",
    "features.npz",
    "scores.json",
    "ranks.png",
    "curves.png",
)


@dataclass(frozen=True)
class DemoConfig:
    """The demo's reduced configuration (``spec/training/demo.md`` gives each value's reason)."""

    ids: int = 100  # SynthVI identities: 80 to train on (train + val lists), 20 to test
    image_size: tuple[int, int] = (64, 32)  # generated and trained at this size
    depth: int = 18  # a ResNet-18 (model.depth): half a ResNet-50's CPU time per step
    synth_seed: int = 0
    epochs: int = 12
    steps_per_epoch: int = 10
    p: int = 4  # identities per batch
    k: int = 4  # images per identity and modality
    lr_backbone: float = 0.1  # random weights: the from-scratch rate, not the fine-tuning 0.01
    lr_head: float = 0.1  # Method A's heads: 256-d reductions and their classifiers [predecessor]
    lr_head_baseline: float = 0.00125  # the baseline's classifier of the whole map: barely moves
    lr_head_method_b: float = 0.0125  # Method B's classifier of the whole map (spec)
    warmup_epochs: int = 2
    milestones: tuple[int, ...] = (11,)
    pad: int = 2  # pad-and-crop offset, scaled from 10 at 288 x 144
    # the methods whose residual blocks start as their shortcuts (model.zero_init_residual)
    zero_init_residual: tuple[str, ...] = ("method_a",)
    coarse_stripes: int = 2  # Method A: stripe counts that divide the 4-row map of 64 x 32
    fine_stripes: int = 4
    trials: int = 10
    device: str = "auto"
    threads: int | None = None  # torch threads; None: torch's default (the machine's cores)

    def __post_init__(self) -> None:
        for name in ("ids", "synth_seed", "epochs", "steps_per_epoch", "p", "k", "trials"):
            low = 0 if name == "synth_seed" else 1
            check_integer(getattr(self, name), name, low=low, numpy=False)
        for name in ("image_size", "milestones", "zero_init_residual"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)):
                raise VireidError(f"{name}: expected a list or tuple, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        check_size(self.image_size, "image_size")
        unknown = [kind for kind in self.zero_init_residual if kind not in METHODS]
        if unknown:
            raise VireidError(f"zero_init_residual: expected some of {METHODS}, got {unknown[0]!r}")

    def head_lr(self, kind: str) -> float:
        """The head's learning rate of ``kind``: ``lr_head`` for Method A, whose heads reduce
        the map to 256-d features and classify those; ``lr_head_baseline`` and
        ``lr_head_method_b`` for the two methods whose global branch classifies the pooled map
        itself (2048-d at depth 50, 512-d at depth 18); a classifier step moves the logits in
        proportion to the feature width. ``spec/training/demo.md`` gives the measurements behind
        each value."""
        rates = {
            "method_a": self.lr_head,
            "baseline": self.lr_head_baseline,
            "method_b": self.lr_head_method_b,
        }
        if kind not in rates:
            raise VireidError(f"method: expected one of {METHODS}, got {kind!r}")
        return rates[kind]

    def overrides(self, kind: str) -> list[str]:
        """The ``--set`` overrides that turn preset ``<kind>-sysu`` into the demo's run."""
        h, w = self.image_size
        sets = [
            f"model.depth={self.depth}",
            f"pipeline.transform.size=[{h}, {w}]",
            f"pipeline.transform.pad={self.pad}",
            f"pipeline.p={self.p}",
            f"pipeline.k={self.k}",
            f"pipeline.num_batches={self.steps_per_epoch}",
            f"optim.lr_backbone={self.lr_backbone}",
            f"optim.lr_head={self.head_lr(kind)}",
            f"schedule.warmup_epochs={self.warmup_epochs}",
            f"schedule.milestones={list(self.milestones)}",
            f"run.epochs={self.epochs}",
            f"run.checkpoint_every={self.epochs}",
            f"run.log_every={self.steps_per_epoch}",
            f'run.device="{self.device}"',
        ]
        if kind in self.zero_init_residual:
            sets.append("model.zero_init_residual=true")
        if kind == "method_a":
            sets += [
                f"model.coarse_stripes={self.coarse_stripes}",
                f"model.fine_stripes={self.fine_stripes}",
            ]
        return sets

    def describe(self) -> list[str]:
        """The reduced configuration in words (the demo's output and its spec say the same)."""
        h, w = self.image_size
        train_ids, val_ids, test_ids = sysu_split_sizes(self.ids)
        return [
            f"SynthVI (SYSU-MM01 layout), {self.ids} identities: {train_ids + val_ids} to train "
            f"on, {test_ids} to test; {h}x{w} images",
            f"reduced configuration: ResNet-{self.depth}, {self.epochs} epochs x "
            f"{self.steps_per_epoch} steps, "
            f"batches of {self.p} identities x {self.k} images x 2 modalities (Method B: x 4), "
            f"lr {self.lr_backbone:g} backbone; head {self.lr_head:g} (Method A), "
            f"{self.lr_head_baseline:g} (baseline), {self.lr_head_method_b:g} (Method B); warm-up "
            f"{self.warmup_epochs} epoch(s), x0.1 at epoch(s) "
            f"{', '.join(map(str, self.milestones))}, random initialisation (no ImageNet "
            f"weights); Method A with {self.coarse_stripes} coarse and {self.fine_stripes} "
            "fine stripes"
            + (
                f"; each residual block starting as its shortcut: {', '.join(names)}"
                if (names := [NAMES[k] for k in METHODS if k in self.zero_init_residual])
                else ""
            ),
        ]


@dataclass(frozen=True)
class MethodResult:
    kind: str
    untrained: Scores
    trained: Scores
    run_dir: Path
    train_s: float


@dataclass(frozen=True)
class DemoResult:
    root: Path  # the SynthVI folder
    synth_s: float  # seconds spent writing SynthVI (0 when cached)
    methods: tuple[MethodResult, ...]
    wall_s: float
    config: DemoConfig = field(default_factory=DemoConfig)


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/vireid``, else ``~/.cache/vireid``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vireid"


def synthvi_root(cache: Path, config: DemoConfig) -> tuple[Path, float]:
    """The cached SynthVI folder of ``config`` (written when absent) and the seconds spent."""
    h, w = config.image_size
    root = Path(cache) / f"synthvi-sysu-{config.ids}ids-{h}x{w}-seed{config.synth_seed}"
    if root.is_dir():
        return root, 0.0  # written atomically: a folder that exists is complete
    start = time.perf_counter()
    write_sysu(root, ids=config.ids, seed=config.synth_seed, image_size=(h, w))
    return root, time.perf_counter() - start


def check_out(out: Path, methods: tuple[str, ...], force: bool) -> None:
    """Refuse, before any work, to replace a run folder's files without ``force``."""
    for kind in methods:
        folder = Path(out) / kind
        found = [n for n in (*RUN_FILES, *DEMO_FILES) if (folder / n).exists()]
        if found and not force:
            raise VireidError(
                f"{folder}: already holds a run ({', '.join(found)}); pass --force to replace it "
                f"or choose another --out"
            )


def method_config(
    kind: str, root: Path, cache: Path, config: DemoConfig, progress: bool = True
) -> TrainConfig:
    """Preset ``<kind>-sysu`` with the demo's overrides, reading ``root``."""
    if kind not in METHODS:
        raise VireidError(f"method: expected one of {METHODS}, got {kind!r}")
    data = [f'data.root="{root}"', f'data.cache_dir="{Path(cache) / "decoded"}"']
    shown = [f"run.progress={str(progress).lower()}"]
    return load_preset(f"{kind}-sysu", [*data, *config.overrides(kind), *shown])


def _features(model, records, images, extract: ExtractConfig, progress: bool, what: str):
    emb = embed_all(model, records, extract, images=images, progress=progress)
    if not np.isfinite(emb).all():
        raise VireidError(
            f"{what}: the model gives NaN or inf embeddings (the training diverged: lower "
            f"the learning rates)"
        )
    return FeatureSet.create(emb, records.pids, records.camids, records.frames, dataset="sysu")


def _score(fs: FeatureSet, config: DemoConfig, title: str) -> Scores:
    return evaluate_sysu(
        fs, mode="all", shots=1, sampling="agw", trials=config.trials, source=title
    )


def run_demo(
    out: str | Path,
    *,
    cache: str | Path | None = None,
    config: DemoConfig | None = None,
    methods: tuple[str, ...] = METHODS,
    force: bool = False,
    progress: bool = True,
    notify: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the demo (see the module docstring); every run folder is ``out / <kind>``.

    ``notify`` receives one line per stage (the command prints it on stderr)."""
    import torch

    from reference.training.checkpoint import load_model

    say = notify or (lambda message: None)
    start = time.perf_counter()
    config = config or DemoConfig()
    out = Path(out)
    cache = Path(cache) if cache is not None else default_cache()
    check_out(out, methods, force)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    say(
        f"SynthVI: {config.ids} identities at {config.image_size[0]}x{config.image_size[1]} "
        f"in {cache}"
    )
    root, synth_s = synthvi_root(cache, config)
    test = read_sysu_test(root)
    train_classes = read_sysu_train(root).num_classes
    test_images = load_decoded(test, size=config.image_size, cache_dir=cache / "decoded")
    results = []
    for kind in methods:
        run_config = method_config(kind, root, cache, config, progress)
        extract = ExtractConfig(transform=run_config.pipeline.transform)
        run_dir = out / kind

        # the run's own starting point: the engine builds the same config with these classes
        initial = build_model(replace(run_config.model, num_classes=train_classes))
        initial = initial.to(resolve_device(config.device))
        say(f"{kind}: extracting the untrained model's features")
        before = _features(initial, test, test_images, extract, progress, f"{kind} untrained")
        del initial
        say(
            f"{kind}: training, {config.epochs} epochs x {config.steps_per_epoch} steps "
            f"-> {run_dir}"
        )
        result = train(run_config, run_dir, force=force)
        say(f"{kind}: extracting the trained model's features")
        model, _ = load_model(result.checkpoint, resolve_device(config.device))
        after = _features(model, test, test_images, extract, progress, f"{kind} trained")
        save_features(run_dir / "features-untrained.npz", before, overwrite=force)
        save_features(run_dir / "features.npz", after, overwrite=force)
        untrained = _score(before, config, f"{kind} untrained")
        trained = _score(after, config, f"{kind} trained")
        scores = {"untrained": untrained.to_dict(), "trained": trained.to_dict()}
        atomic_write_text(
            run_dir / "scores.json", json.dumps(scores, indent=2) + "\n", overwrite=force
        )
        # the pictures people look at first: queries beside their top-10 gallery images, and
        # the training curves (no TensorBoard needed)
        write_ranks(after, root, run_dir / "ranks.png", force=force)
        write_curves([run_dir], run_dir / "curves.png", force=force)
        results.append(MethodResult(kind, untrained, trained, run_dir, result.wall_s))
    return DemoResult(root, synth_s, tuple(results), time.perf_counter() - start, config)
