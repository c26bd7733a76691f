"""Held-out identities and the retrieval score that selects the model (engine.md)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from reference.data.records import ImageRecords
from reference.errors import VireidError
from reference.training.validation import read_training_data, score_retrieval
from tests.training.conftest import tiny_config


def test_held_out_identities(synth_roots):
    whole = read_training_data(tiny_config("baseline-sysu", synth_roots["sysu"]))
    assert whole.val is None and whole.test is None
    config = tiny_config(
        "baseline-sysu", synth_roots["sysu"], "run.val_ids=2", "run.monitor_test=true"
    )
    data = read_training_data(config)
    assert len(np.unique(data.val.pids)) == 2
    assert not set(data.val.pids) & set(data.train.pids)
    assert set(data.val.pids) | set(data.train.pids) == set(whole.train.pids)
    assert len(data.train) + len(data.val) == len(whole.train)
    for part in (data.train, data.val):  # relabelled 0..C-1 in identity order
        labels = np.unique(part.labels)
        assert labels.tolist() == list(range(labels.size))
        assert (np.argsort(np.unique(part.pids)) == labels).all()
    assert data.test is not None and not set(data.test.pids) & set(whole.train.pids)
    # the draw is a function of run.seed
    again = read_training_data(config)
    assert np.array_equal(again.val.pids, data.val.pids)
    with pytest.raises(VireidError, match=r"run\.val_ids: 5 held out of 6 identities leaves"):
        read_training_data(tiny_config("baseline-sysu", synth_roots["sysu"], "run.val_ids=5"))


class PidEmbedding(nn.Module):
    """The embedding is the image's mean value: images painted with their identity."""

    def forward(self, images, modality):
        return SimpleNamespace(embedding=images.mean(dim=(1, 2, 3))[:, None].repeat(1, 4))


@pytest.mark.parametrize("dataset", ["sysu", "regdb"])
def test_score_retrieval_ranks_infrared_queries_against_visible_images(dataset):
    pids = np.array([1, 1, 2, 2, 3, 3, 1, 2, 3, 3])
    modality = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    camids = np.array([1, 2, 1, 4, 5, 2, 3, 6, 3, 6]) if dataset == "sysu" else modality + 1
    records = ImageRecords(
        paths=tuple(Path(f"{i}.jpg") for i in range(10)), labels=pids - 1, pids=pids,
        camids=camids, modality=modality, frames=np.zeros(10, dtype=np.int64),
    )  # fmt: skip
    images = torch.from_numpy((pids * 40).astype(np.uint8))[:, None, None, None].repeat(1, 3, 8, 4)
    config = tiny_config(f"baseline-{dataset}", Path("."))
    scores = score_retrieval(PidEmbedding(), records, images, config)
    assert scores == {"r1": 1.0, "mAP": 1.0, "mINP": 1.0}
    shuffled = images[torch.tensor([0, 1, 2, 3, 4, 5, 7, 8, 6, 9])]  # queries painted wrongly
    worse = score_retrieval(PidEmbedding(), records, shuffled, config)
    assert worse["mAP"] < 1.0
