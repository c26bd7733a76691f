"""``TrainConfig``: everything a training run depends on, as one frozen dataclass.

Spec: ``spec/training/config.md`` (fields), ``spec/training/presets.md`` (the shipped presets).

    TrainConfig = data + model (ModelConfig) + losses (LossSpec) + pipeline (PipelineConfig)
                  + optim + schedule + run

A preset is a versioned TOML file shipped in the package (``training/presets/<name>.toml``);
``load_preset(name, overrides)`` reads it, applies ``--set key=value`` overrides (TOML
literals) and builds the config with the generic loader (``reference.config.from_mapping``), so
an unknown field or a wrong type is a :class:`VireidError` naming the field path. The
``losses`` table is read by ``LossSpec.from_dict`` (the losses' own reader) and its errors get
the ``losses.`` prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reference.checks import (
    check_bool,
    check_choice,
    check_file,
    check_integer,
    check_number,
    fail,
    is_integer,
)
from reference.config import apply_overrides, from_mapping, load_toml, to_dict
from reference.data.pipeline import PipelineConfig
from reference.errors import VireidError
from reference.losses.loss_spec import LossSpec
from reference.models.build import ModelConfig

PRESET_DIR = Path(__file__).with_name("presets")
#: the shipped presets: ``<model kind>-<dataset>``
PRESETS = tuple(
    f"{kind}-{dataset}"
    for kind in ("baseline", "method_a", "method_b")
    for dataset in ("sysu", "regdb", "llcm")
)
#: the one preset file format this code reads
PRESET_FORMAT = 1
AMP = ("none", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset is read, from where, and how its images are held."""

    dataset: Literal["sysu", "regdb", "llcm"] = "sysu"
    root: Path | None = None  # the dataset folder (CLI: --data-root)
    trial: int = 1  # RegDB trial 1..10 (its train/test split); unused for SYSU-MM01 and LLCM
    sysu_ids: Literal["train+val", "train"] = "train+val"
    cache_dir: Path | None = None  # decoded-image cache folder (None: no cache)
    workers: int = 0  # decoding threads for the first read
    images_on_device: bool = False  # hold the decoded training images on the GPU

    def __post_init__(self) -> None:
        check_choice(self.dataset, "dataset", ("sysu", "regdb", "llcm"))
        check_integer(self.trial, "trial", low=1, high=10, numpy=False)
        check_choice(self.sysu_ids, "sysu_ids", ("train+val", "train"))
        check_integer(self.workers, "workers", low=0, numpy=False)


@dataclass(frozen=True)
class OptimConfig:
    """SGD with two learning rates: the backbone's and the new layers' (the head)."""

    lr_backbone: float = 0.01
    lr_head: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        for name in ("lr_backbone", "lr_head", "weight_decay"):
            check_number(getattr(self, name), name, low=0.0)
        check_number(self.momentum, "momentum", low=0.0, high=1.0, expected="a number in [0, 1)")
        check_bool(self.nesterov, "nesterov", expected="true or false")
        if self.nesterov and self.momentum == 0:
            raise VireidError("nesterov: needs momentum > 0")


@dataclass(frozen=True)
class ScheduleConfig:
    """Per-epoch learning-rate factor: linear warm-up, then x gamma at each milestone.

    ``factor(e) = (e + 1) / warmup_epochs`` for ``e < warmup_epochs``, else
    ``gamma ** #{m in milestones : m <= e}``.
    """

    warmup_epochs: int = 10
    milestones: tuple[int, ...] = (20, 50)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_integer(self.warmup_epochs, "warmup_epochs", low=0, numpy=False)
        if not isinstance(self.milestones, (list, tuple)):
            raise fail("milestones", "increasing positive integers", self.milestones)
        ms = tuple(self.milestones)
        if not all(is_integer(m, numpy=False) and m >= 1 for m in ms) or list(ms) != sorted(
            set(ms)
        ):
            raise fail("milestones", "increasing positive integers", list(ms))
        object.__setattr__(self, "milestones", ms)
        if check_number(self.gamma, "gamma", low=0.0, expected="a number > 0") == 0:
            raise fail("gamma", "a number > 0", self.gamma)

    def factor(self, epoch: int) -> float:
        """The learning-rate factor of ``epoch`` (0-based)."""
        if epoch < self.warmup_epochs:
            return (epoch + 1) / self.warmup_epochs
        return self.gamma ** sum(1 for m in self.milestones if m <= epoch)


@dataclass(frozen=True)
class RunConfig:
    """How long, where and how the loop runs; what it records."""

    epochs: int = 60
    seed: int = 0  # seeds torch, numpy and Python's global generators at the start
    deterministic: bool = False  # torch.use_deterministic_algorithms + cuDNN deterministic
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False  # several processes: one BatchNorm statistic over all ranks' rows
    accumulate: int = 1  # batches per optimizer step (gradients averaged)
    val_ids: int = 0  # training identities held out for model selection (0: last epoch)
    val_every: int = 2  # epochs between validations (and test monitoring)
    monitor_test: bool = False  # score the test set per epoch, for analysis only
    log_every: int = 10  # steps between log.csv rows (and the last step of each epoch)
    checkpoint_every: int = 1  # epochs between last.pt writes (and always at the end)
    checkpoint_steps: int = 0  # also write last.pt every N steps (0: off)
    progress: bool = True  # tqdm bar on stderr
    keep_freed_memory: bool = True  # CPU runs under glibc: freed blocks reused (allocator.md)

    def __post_init__(self) -> None:
        for name, low in (
            ("epochs", 1),
            ("seed", 0),
            ("accumulate", 1),
            ("val_ids", 0),
            ("val_every", 1),
            ("log_every", 1),
            ("checkpoint_every", 1),
            ("checkpoint_steps", 0),
        ):
            check_integer(getattr(self, name), name, low=low, numpy=False)
        check_choice(self.amp, "amp", AMP)
        check_choice(self.device, "device", DEVICES)
        for name in ("deterministic", "channels_last", "compile", "sync_bn", "monitor_test",
                     "progress", "keep_freed_memory"):  # fmt: skip
            check_bool(getattr(self, name), name, expected="true or false")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``preset`` names the file it came from (recorded, not used)."""

    model: ModelConfig
    losses: LossSpec
    data: DataConfig = field(default_factory=DataConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    preset: str = ""
    format: int = PRESET_FORMAT

    def __post_init__(self) -> None:
        if self.format != PRESET_FORMAT:
            raise VireidError(f"format: expected {PRESET_FORMAT}, got {self.format!r}")
        parts = {
            "model": ModelConfig,
            "losses": LossSpec,
            "data": DataConfig,
            "pipeline": PipelineConfig,
            "optim": OptimConfig,
            "schedule": ScheduleConfig,
            "run": RunConfig,
            "preset": str,
        }
        for name, kind in parts.items():
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise VireidError(f"{name}: expected a {kind.__name__}, got {value!r}")
        if self.losses.dataset is not None and self.losses.dataset != self.data.dataset:
            raise VireidError(
                f"losses.dataset: {self.losses.dataset!r} does not match "
                f"data.dataset {self.data.dataset!r}"
            )
        four = self.model.kind == "method_b"
        if self.pipeline.four_modality != four:
            raise VireidError(
                f"pipeline.four_modality: model.kind {self.model.kind!r} needs "
                f"four_modality = {str(four).lower()}"
            )


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from plain data (a preset file's tables, or ``config.json``)."""
    if not isinstance(data, dict):
        raise VireidError(f"config: expected a table, got {type(data).__name__}")
    rest = dict(data)
    if "losses" not in rest or "model" not in rest:
        missing = [k for k in ("model", "losses") if k not in rest]
        raise VireidError(f"{missing[0]}: missing table")
    losses_data = rest.pop("losses")
    try:
        losses = LossSpec.from_dict(losses_data)
    except VireidError as exc:
        raise VireidError(f"losses.{exc}") from None
    except TypeError as exc:
        raise VireidError(f"losses: {exc}") from None
    model_data = rest.pop("model")
    if not isinstance(model_data, dict):
        raise VireidError(f"model: expected a table, got {model_data!r}")
    model = from_mapping(ModelConfig, model_data, "model")
    return from_mapping(TrainConfig, {**rest, "model": model, "losses": losses})


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain data of ``config``; ``config_from_dict`` reads it back to an equal config."""
    out = to_dict(config)
    out["losses"] = config.losses.to_dict()
    return out


def preset_path(name: str | Path) -> Path:
    """The file of a shipped preset name, or ``name`` itself when it is a ``.toml`` path."""
    if str(name).endswith(".toml"):
        return check_file(
            name, "preset", expected="a preset file (.toml)", missing="no such preset file"
        )
    if name not in PRESETS:
        raise VireidError(f"preset: expected one of {list(PRESETS)} or a .toml file, got {name!r}")
    return PRESET_DIR / f"{name}.toml"


def load_preset(name: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> TrainConfig:
    """The :class:`TrainConfig` of preset ``name`` (or a ``.toml`` file) with ``overrides``
    (``"optim.lr_head=0.05"``, values read as TOML literals) applied."""
    path = preset_path(name)
    data = load_toml(path)
    data = apply_overrides(data, overrides)
    data.setdefault("preset", str(name))
    return config_from_dict(data)
