"""LLCM end to end: its presets, a training step on SynthVI's LLCM layout, extraction of the
test pool with ``modalities``, and ``vireid evaluate llcm`` on the file in both directions
(spec/training/presets.md, spec/training/extract.md, spec/evaluation/features.md)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from reference.cli import main
from reference.data.layout import detect_dataset
from reference.data.llcm import read_llcm_test, read_llcm_train
from reference.data.records import ImageRecords
from reference.errors import VireidError
from reference.evaluation.features import load_features
from reference.evaluation.llcm import evaluate_llcm
from reference.training.config import load_preset
from reference.training.engine import train
from reference.training.extract import extract_checkpoint
from reference.training.validation import read_training_data, score_retrieval
from tests.training.conftest import tiny_config

LLCM_PRESETS = ["baseline-llcm", "method_a-llcm", "method_b-llcm"]


@pytest.mark.parametrize("name", LLCM_PRESETS)
def test_llcm_presets_load(name):
    config = load_preset(name)
    assert config.data.dataset == "llcm" and config.losses.dataset == "llcm"
    assert config.model.kind == name.split("-")[0]
    assert config.pipeline.four_modality == (config.model.kind == "method_b")


def test_llcm_training_data_are_the_lists_with_labels_0_to_c(synth_roots):
    root = synth_roots["llcm"]
    data = read_training_data(tiny_config("baseline-llcm", root))
    train_records = read_llcm_train(root)
    assert len(data.train) == len(train_records) and data.test is None
    c = len(set(train_records.pids.tolist()))
    assert sorted(set(data.train.labels.tolist())) == list(range(c))
    assert set(data.train.modality.tolist()) == {0, 1}
    # the labels follow the identities one to one
    assert len({(a, b) for a, b in zip(data.train.labels, data.train.pids, strict=True)}) == c


@pytest.fixture(scope="module")
def llcm_run(synth_roots, tmp_path_factory):
    root = synth_roots["llcm"]
    out = tmp_path_factory.mktemp("llcm-run") / "run"
    result = train(tiny_config("baseline-llcm", root), out)
    assert result.steps == 1 and result.epochs == 1
    saved = json.loads((out / "config.json").read_text())
    assert saved["data"]["dataset"] == "llcm"
    assert saved["model"]["num_classes"] == len(set(read_llcm_train(root).pids.tolist()))
    return result.checkpoint


def test_llcm_run_extracts_and_scores_in_both_directions(synth_roots, llcm_run, tmp_path, capsys):
    root = synth_roots["llcm"]
    out = tmp_path / "llcm.npz"
    argv = ["extract", "--checkpoint", str(llcm_run), "--data-root", str(root), "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    fs = load_features(out, "llcm")
    test = read_llcm_test(root)
    ids = len(set(test.pids.tolist()))
    assert lines == [
        f"wrote {out}: {len(test)} images of {ids} identities (LLCM test pool, both "
        f"modalities), d=512",
        f"score it: vireid evaluate llcm --features {out} --direction i2v|v2i",
    ]
    # every test image of both modalities, in the reader's order, with its modality
    for name in ("pids", "camids", "frames"):
        np.testing.assert_array_equal(getattr(fs, name), getattr(test, name))
    np.testing.assert_array_equal(fs.modalities, test.modality)
    assert set(fs.modalities.tolist()) == {0, 1} and np.isfinite(fs.features).all()
    for direction in ("i2v", "v2i"):
        report = tmp_path / f"{direction}.json"
        command = ["evaluate", "llcm", "--features", str(out), "--direction", direction]
        assert main([*command, "--trials", "2", "--json", str(report)]) == 0
        capsys.readouterr()
        scores = json.loads(report.read_text())
        expected = json.loads(
            json.dumps(evaluate_llcm(fs, direction=direction, trials=2).to_dict())
        )
        name = {"i2v": "infrared-to-visible", "v2i": "visible-to-infrared"}[direction]
        assert scores["title"].startswith(f"LLCM {name}, 2 trials")
        assert (
            scores["summary"] == expected["summary"] and scores["summary"]["num_valid"]["mean"] > 0
        )
        assert [k for k in scores if scores[k] != expected[k]] == ["settings"]


def test_llcm_detection_and_bad_inputs(synth_roots, llcm_run, tmp_path, capsys):
    assert detect_dataset(synth_roots["llcm"]) == "llcm"
    with pytest.raises(VireidError) as exc:
        extract_checkpoint(llcm_run, synth_roots["llcm"], tmp_path / "x.npz", trial=2, device="cpu")
    assert str(exc.value) == (
        "trial: LLCM has one test pool (its trials are gallery draws made when scoring); "
        "got trial=2, expected none"
    )
    argv = ["extract", "--checkpoint", str(llcm_run), "--out", str(tmp_path / "y.npz")]
    assert main([*argv, "--data-root", str(synth_roots["sysu"]), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        f"error: {synth_roots['sysu']}: a SYSU-MM01 folder, but {llcm_run} was trained on "
        "LLCM; expected an LLCM folder\n"
    )
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "y.npz").exists()


class ValueEmbedding(nn.Module):
    """The embedding is the image's mean value (each test image painted with one value)."""

    def forward(self, images, modality):
        return SimpleNamespace(embedding=images.mean(dim=(1, 2, 3))[:, None].repeat(1, 4))


def test_validation_score_skips_same_identity_same_camera_on_llcm():
    # an infrared query of identity 1 in camera 2; visible gallery: identity 1 in camera 2 (the
    # nearest, skipped on LLCM), identity 2 in camera 2, identity 1 in camera 5 (the farthest)
    pids, modality, camids = np.array([1, 1, 2, 1]), np.array([1, 0, 0, 0]), np.array([2, 2, 2, 5])
    records = ImageRecords(
        paths=tuple(Path(f"{i}.jpg") for i in range(4)), labels=pids - 1, pids=pids,
        camids=camids, modality=modality, frames=np.zeros(4, dtype=np.int64),
    )  # fmt: skip
    values = np.array([100, 100, 110, 130], dtype=np.uint8)
    images = torch.from_numpy(values)[:, None, None, None].repeat(1, 3, 8, 4)
    config = tiny_config("baseline-llcm", Path("."))
    scores = score_retrieval(ValueEmbedding(), records, images, config)
    # ranking after the rule: identity 2, then identity 1 at rank 2
    assert scores == {"r1": 0.0, "mAP": 0.5, "mINP": 0.5}
    # the same rows under RegDB's (no rule) find the skipped image first
    regdb = tiny_config("baseline-regdb", Path("."))
    assert score_retrieval(ValueEmbedding(), records, images, regdb)["r1"] == 1.0


def test_train_refuses_a_trial_for_llcm(synth_roots, tmp_path, capsys):
    argv = ["train", "--preset", "baseline-llcm", "--data-root", str(synth_roots["llcm"])]
    assert main([*argv, "--trial", "2", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (
        "error: trial: LLCM has one training split (--trial is RegDB's); got --trial 2\n"
    )
    assert not (tmp_path / "run").exists()
