"""What a run trains on and how it selects its model without the test set.

Spec: ``spec/training/engine.md`` (section "Model selection never looks at the test set").
``read_training_data`` reads the training records and, with ``run.val_ids = N``, holds out N
training identities (relabelling the rest 0..C-1); ``score_retrieval`` ranks every infrared image
of a set of identities against every visible one, with the dataset's camera rule, on the test
transform's embeddings (validation, and the analysis-only test monitor).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from reference.checks import check_path
from reference.data.modality import Modality
from reference.data.records import ImageRecords
from reference.errors import VireidError
from reference.training.config import TrainConfig
from reference.training.extract import ExtractConfig, embed_all

#: the stream of ``numpy.random.default_rng([run.seed, VAL_STREAM])`` that draws the held-out ids
VAL_STREAM = 0x7A1
#: images per forward pass when validation embeds its held-out (or test) images
EMBED_BATCH = 128


@dataclass(frozen=True)
class TrainingData:
    """The training records, the held-out validation identities, the monitored test set."""

    train: ImageRecords
    val: ImageRecords | None
    test: ImageRecords | None


def _relabel(records: ImageRecords) -> ImageRecords:
    """Labels 0..C-1 in identity order (after identities were held out)."""
    _, labels = np.unique(records.pids, return_inverse=True)
    return replace(records, labels=labels.astype(np.int64))


def check_root(config: TrainConfig) -> None:
    """A dataset folder is given and exists (checked before the run folder is made)."""
    root = config.data.root
    if root is None:
        raise VireidError("data.root: no dataset folder given (CLI: --data-root ROOT)")
    if not check_path(root, "data.root").is_dir():
        raise VireidError(f"data.root: {root} is not a folder")


def read_training_data(config: TrainConfig) -> TrainingData:
    """The training records (minus ``run.val_ids`` held-out identities), the held-out ones, and
    the test records when ``run.monitor_test`` is set."""
    from reference.data.llcm import read_llcm_test, read_llcm_train
    from reference.data.regdb import read_regdb
    from reference.data.sysu import read_sysu_test, read_sysu_train

    data = config.data
    check_root(config)
    if data.dataset == "sysu":
        train = read_sysu_train(data.root, ids=data.sysu_ids)
        test = read_sysu_test(data.root) if config.run.monitor_test else None
    elif data.dataset == "llcm":
        train = read_llcm_train(data.root)  # labels already 0..C-1 in label order
        test = read_llcm_test(data.root) if config.run.monitor_test else None
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
        rng = np.random.default_rng([config.run.seed, VAL_STREAM])
        held = np.sort(rng.choice(ids, size=n_val, replace=False))
        mask = np.isin(train.pids, held)
        val = _relabel(train.subset(mask))
        train = _relabel(train.subset(~mask))
    return TrainingData(train, val, test)


def score_retrieval(
    model: nn.Module,
    records: ImageRecords,
    images: torch.Tensor,
    config: TrainConfig,
) -> dict[str, float]:
    """Cross-modality retrieval on ``records``: infrared queries against the visible gallery,
    the dataset's camera rule (SYSU-MM01: camera 3 skips camera 2; LLCM: same identity and
    camera skipped, its cameras carry both modalities) and CMC kind.

    The embeddings are the test transform's, computed by :func:`~reference.training.extract.
    embed_all` (the one embedding loop: eval mode on the model's device, mode restored)."""
    from reference.evaluation.metrics import rank_metrics_from_features

    extract = ExtractConfig(transform=config.pipeline.transform, batch_size=EMBED_BATCH)
    feats = torch.from_numpy(embed_all(model, records, extract, images=images, progress=False))
    q = records.modality == int(Modality.INFRARED)
    g = ~q
    dataset = config.data.dataset
    rule = {"sysu": "sysu", "llcm": "same-id-same-camera"}.get(dataset, "none")
    m = rank_metrics_from_features(
        feats[torch.from_numpy(q)],
        feats[torch.from_numpy(g)],
        records.pids[q],
        records.pids[g],
        records.camids[q],
        records.camids[g],
        exclusion=rule,
        cmc_kind="standard" if dataset == "regdb" else "identity",
        max_rank=min(20, int(g.sum())),
    )
    return {"r1": m.rank(1), "mAP": m.mAP, "mINP": m.mINP}
