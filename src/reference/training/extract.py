"""Feature extraction: a model's test embeddings of a dataset's test pool, as a features file.

Spec: ``spec/training/extract.md``. For the rows of the test pool (SYSU-MM01: every image of the
test identities in the six cameras, :func:`~reference.data.sysu.read_sysu_test`; RegDB: the test
split of one trial, both modalities, :func:`~reference.data.regdb.read_regdb`; LLCM: every test
image of both modalities, :func:`~reference.data.llcm.read_llcm_test`), in batches:

    x    = decode(paths[rows], size)                  uint8, the training pipeline's decoding
    x    = (x / 255 - mean) / std                     the test transform, on ``device``
    e    = model(x, modality[rows]).embedding         model in eval mode, no gradients
    e    = (e + model(hflip(x), modality).embedding) / 2      with ``flip`` only

and the rows' ``pids``, ``camids`` and ``frames`` (and for LLCM, whose cameras carry both
modalities, ``modalities``) become the features file's fields
(``spec/evaluation/features.md``). The embedding is the model's own switch
(``ModelConfig.embedding``); the test pools hold base-modality images only, so a Method B model is
fed visible and infrared rows and never a derivative.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from reference.data.cache import decode_all
from reference.data.layout import detect_dataset
from reference.data.llcm import read_llcm_test
from reference.data.records import ImageRecords
from reference.data.regdb import check_trial, read_regdb
from reference.data.sysu import read_sysu_test
from reference.data.transforms import TestTransform, TransformConfig, check_uint8_images
from reference.errors import VireidError
from reference.evaluation.features import FeatureSet, save_features
from reference.fileio import check_writable

Dataset = Literal["sysu", "regdb", "llcm"]
DATASETS = ("sysu", "regdb", "llcm")


@dataclass(frozen=True)
class ExtractConfig:
    """How to extract: the test transform's size and normalisation, batch size, flip averaging.

    ``transform`` is the training run's transform config; only ``size``, ``mean`` and ``std``
    are used (the test transform has nothing random). ``workers`` threads decode the images.
    """

    transform: TransformConfig = field(default_factory=TransformConfig)
    batch_size: int = 64
    flip: bool = False
    workers: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.transform, TransformConfig):
            raise VireidError(f"transform: expected a TransformConfig, got {self.transform!r}")
        for name, low in (("batch_size", 1), ("workers", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise VireidError(f"{name}: expected an integer >= {low}, got {value!r}")
        if not isinstance(self.flip, bool):
            raise VireidError(f"flip: expected True or False, got {self.flip!r}")


def test_records(root: str | Path, dataset: Dataset, trial: int | None = None) -> ImageRecords:
    """The test pool: SYSU-MM01's test identities in all six cameras, RegDB trial ``trial``'s
    test split in both modalities, or every LLCM test image of both modalities."""
    if dataset == "sysu":
        if trial is not None:
            raise VireidError(
                f"trial: SYSU-MM01 has one test pool (its trials are gallery draws made when "
                f"scoring); got trial={trial!r}, expected none"
            )
        return read_sysu_test(root)
    if dataset == "regdb":
        if trial is None:
            raise VireidError("trial: RegDB needs the trial (1..10) whose test split to extract")
        return read_regdb(root, trial=check_trial(trial), split="test")
    if dataset == "llcm":  # LLCM: one test pool, both modalities
        if trial is not None:
            raise VireidError(
                f"trial: LLCM has one test pool (its trials are gallery draws made when "
                f"scoring); got trial={trial!r}, expected none"
            )
        return read_llcm_test(root)
    raise VireidError(f"dataset: expected one of {DATASETS}, got {dataset!r}")


test_records.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


@torch.no_grad()
def embed_images(
    model: nn.Module,
    images: torch.Tensor,
    modality: torch.Tensor,
    *,
    transform: TransformConfig | None = None,
    flip: bool = False,
) -> torch.Tensor:
    """Embeddings ``(B, D)`` (float32, on the model's device) of one uint8 batch.

    The caller puts the model in eval mode (:func:`embed_all` does). ``flip`` averages the
    embeddings of the images and of their horizontal mirror images.
    """
    x = TestTransform(transform)(check_uint8_images(images))
    emb = model(x, modality).embedding.float()
    if flip:
        emb = (emb + model(x.flip(-1), modality).embedding.float()) / 2
    return emb


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def embed_all(
    model: nn.Module,
    records: ImageRecords,
    config: ExtractConfig | None = None,
    *,
    images: torch.Tensor | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Embeddings ``(N, D)`` float32 of every row of ``records``, in row order, on the CPU.

    Batches of ``config.batch_size`` rows are decoded (unless the decoded uint8 ``images`` are
    given, one row per record) and run on the model's device with the model in eval mode; the
    model's mode is restored afterwards.
    """
    config = config or ExtractConfig()
    n = len(records)
    if n == 0:
        raise VireidError("records: the test pool is empty; expected at least one image")
    if images is not None:
        check_uint8_images(images)
        if images.shape[0] != n:
            raise VireidError(f"images: expected {n} rows (one per record), got {images.shape[0]}")
    device = _device_of(model)
    size = config.transform.size
    modality = torch.tensor(records.modality)
    was_training = model.training
    model.eval()
    out: list[torch.Tensor] = []
    try:
        bar = tqdm(
            total=n, desc="extract", unit="img", file=sys.stderr, disable=not progress, leave=False
        )
        with bar:
            for start in range(0, n, config.batch_size):
                rows = np.arange(start, min(n, start + config.batch_size))
                if images is None:
                    raw = decode_all(records.subset(rows), size, workers=config.workers)
                else:
                    raw = images[start : start + len(rows)]
                emb = embed_images(
                    model,
                    raw.to(device),
                    modality[start : start + len(rows)].to(device),
                    transform=config.transform,
                    flip=config.flip,
                )
                out.append(emb.cpu())
                bar.update(len(rows))
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


def extract_features(
    model: nn.Module,
    root: str | Path,
    *,
    dataset: Dataset | None = None,
    trial: int | None = None,
    config: ExtractConfig | None = None,
    progress: bool = True,
) -> FeatureSet:
    """The features file contents of ``root``'s test pool, embedded by ``model``.

    ``dataset`` defaults to the one ``root``'s folders show (``data.layout.detect_dataset``);
    ``trial`` is RegDB's (required there, refused for SYSU-MM01).
    """
    dataset = detect_dataset(root) if dataset is None else dataset
    records = test_records(root, dataset, trial)
    features = embed_all(model, records, config, progress=progress)
    if not np.isfinite(features).all():
        rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
        raise VireidError(
            f"model: produced NaN or inf embeddings for {len(rows)} of {len(records)} test "
            f"images (first: {records.paths[int(rows[0])]}); the checkpoint's weights are not "
            f"usable"
        )
    return FeatureSet.create(
        features,
        records.pids,
        records.camids,
        records.frames,
        dataset=dataset,
        # LLCM's cameras carry both modalities: the file says each row's [protocol]
        modalities=records.modality if dataset == "llcm" else None,
        source=f"features of {root}",
    )


@dataclass(frozen=True)
class Extraction:
    """What :func:`extract_checkpoint` wrote: the features, RegDB's trial (else None), where."""

    features: FeatureSet
    trial: int | None
    out: Path


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: the GPU when there is one, else the CPU; otherwise the named torch device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise VireidError(
            f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VireidError(f"device: {device!r} asked for, but no CUDA GPU is available")
    return dev


def extract_checkpoint(
    checkpoint: str | Path,
    root: str | Path,
    out: str | Path,
    *,
    trial: int | None = None,
    flip: bool = False,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    force: bool = False,
    progress: bool = True,
) -> Extraction:
    """Extract ``root``'s test pool with the model of ``checkpoint`` and write it to ``out``.

    The transform's size and normalisation come from the run's config, and the folder must be
    the run's dataset; RegDB's trial defaults to the run's and may not differ from it. ``out``
    is written atomically and replaced only with ``force`` (checked before any work).
    """
    from reference.training.checkpoint import load_model

    out = check_writable(out, overwrite=force)
    config = ExtractConfig(batch_size=batch_size, flip=flip)  # checks the values first
    model, run = load_model(checkpoint, resolve_device(device))
    dataset = detect_dataset(root)
    if dataset != run.data.dataset:
        raise VireidError(
            f"{root}: {_A_NAMES[dataset]} folder, but {checkpoint} was trained on "
            f"{_NAMES[run.data.dataset]}; expected {_A_NAMES[run.data.dataset]} folder"
        )
    if dataset == "regdb":
        if trial is None:
            trial = run.data.trial
        elif check_trial(trial) != run.data.trial:
            raise VireidError(
                f"trial: {checkpoint} was trained on RegDB trial {run.data.trial}, whose test "
                f"identities are the only ones it has not seen; got trial {trial}"
            )
    config = replace(config, transform=run.pipeline.transform, workers=run.data.workers)
    fs = extract_features(
        model, root, dataset=dataset, trial=trial, config=config, progress=progress
    )
    save_features(out, fs, overwrite=force)
    return Extraction(fs, trial, out)


_NAMES = {"sysu": "SYSU-MM01", "regdb": "RegDB", "llcm": "LLCM"}
_A_NAMES = {"sysu": "a SYSU-MM01", "regdb": "a RegDB", "llcm": "an LLCM"}
