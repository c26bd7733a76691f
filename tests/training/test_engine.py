"""The training engine end to end on a tiny SynthVI (spec/training/engine.md)."""

from __future__ import annotations

import csv
import json
import math
import os
import signal

import pytest
import torch

from reference.errors import VireidError
from reference.losses.terms import LossTerms
from reference.training import engine
from reference.training.checkpoint import load_model, read_checkpoint
from reference.training.config import PRESETS
from reference.training.engine import (
    EXIT_INTERRUPTED,
    EXIT_NONFINITE,
    Interrupted,
    NonFiniteLoss,
    train,
)
from tests.training.conftest import tiny_config

TIMING = {"images_per_s", "data_s", "step_s", "gpu_mem_mb"}


def log_rows(run_dir):
    with (run_dir / "log.csv").open(newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


def assert_same_state(a, b):
    """Bit-identical model and optimizer state of two checkpoints."""
    ca, cb = read_checkpoint(a), read_checkpoint(b)
    assert ca["step"] == cb["step"] and ca["epoch"] == cb["epoch"]
    for key, value in ca["model"].items():
        assert torch.equal(value, cb["model"][key]), key
    for i, state in ca["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, cb["optimizer"]["state"][i][key]), (i, key)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_trains_one_step(preset, synth_roots, tmp_path, device):
    dataset = preset.split("-")[1]
    config = tiny_config(preset, synth_roots[dataset], f"run.device='{device.type}'")
    result = train(config, tmp_path / "run")
    assert result.steps == 1 and result.epochs == 1
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "log.csv", "last.pt", "summary.json"} <= names
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["selected_checkpoint"] == "last.pt" and summary["steps"] == 1
    row = log_rows(tmp_path / "run")[0]
    # every loss term is logged by name, with both learning rates (warm-up factor 1/1)
    assert set(result.final_losses) <= set(row)
    assert float(row["lr_backbone"]) == 0.01 and float(row["lr_head"]) == 0.1
    model, saved = load_model(result.checkpoint, "cpu")
    assert saved.model.kind == preset.split("-")[0] and not model.training
    # the resolved config records the identities actually read
    assert (
        saved.model.num_classes
        == json.loads((tmp_path / "run" / "config.json").read_text())["model"]["num_classes"]
    )


def _sigint_at(monkeypatch, calls):
    """compute_losses sends this process a SIGINT (a Ctrl-C) at the given call numbers."""
    real = engine.compute_losses
    count = {"n": 0}

    def wrapped(*args, **kwargs):
        count["n"] += 1
        if count["n"] in calls:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "compute_losses", wrapped)


def test_resume_is_bit_identical_inside_an_epoch_and_at_its_end(synth_roots, tmp_path, monkeypatch):
    config = tiny_config("baseline-sysu", synth_roots["sysu"], steps=2, epochs=2)
    train(config, tmp_path / "whole")
    real = engine.compute_losses

    stopped = tmp_path / "stopped"
    _sigint_at(monkeypatch, {1})  # Ctrl-C during step 1: stops after step 1, inside epoch 1
    with pytest.raises(Interrupted) as info:
        train(config, stopped)
    assert info.value.status == EXIT_INTERRUPTED and "after step 1 (epoch 1)" in str(info.value)
    assert read_checkpoint(stopped / "last.pt")["epoch_step"] == 1
    _sigint_at(monkeypatch, {1})  # first step after resuming = step 2, the end of epoch 1
    with pytest.raises(Interrupted, match="after step 2 \\(end of epoch 1\\)"):
        train(config, stopped, resume=True)
    ckpt = read_checkpoint(stopped / "last.pt")
    assert (ckpt["epoch"], ckpt["epoch_step"]) == (1, 0)
    monkeypatch.setattr(engine, "compute_losses", real)
    # the resumed run builds its network without drawing an initialisation (the checkpoint
    # sets every tensor)
    built = []
    build = engine.build_for_training
    monkeypatch.setattr(
        engine, "build_for_training", lambda *a, **k: built.append(k) or build(*a, **k)
    )
    result = train(config, stopped, resume=True)
    assert built == [{"initialise": False}]
    assert result.steps == 4
    assert log_rows(stopped) == log_rows(tmp_path / "whole")
    assert_same_state(stopped / "last.pt", tmp_path / "whole" / "last.pt")


def test_nonfinite_loss_stops_at_once(synth_roots, tmp_path, monkeypatch):
    real = engine.compute_losses
    count = {"n": 0}

    def poisoned(spec, output, labels):
        count["n"] += 1
        terms = real(spec, output, labels)
        if count["n"] == 2:
            bad = dict(terms.terms)
            bad["tri/global"] = bad["tri/global"] * float("nan")
            return LossTerms(bad, terms.weights)
        return terms

    monkeypatch.setattr(engine, "compute_losses", poisoned)
    config = tiny_config("baseline-sysu", synth_roots["sysu"], "run.checkpoint_steps=1", steps=3)
    with pytest.raises(NonFiniteLoss) as info:
        train(config, tmp_path / "run")
    err = info.value
    assert err.status == EXIT_NONFINITE
    assert str(err).startswith(
        "non-finite loss at step 2 (epoch 1): tri/global = nan, total = nan;"
    )
    assert "batch identities [" in str(err) and str(err).endswith(
        "the last good checkpoint is last.pt"
    )
    fault = json.loads((tmp_path / "run" / "fault.json").read_text())["ranks"][0]
    assert fault["step"] == 2 and set(fault["nonfinite"]) == {"tri/global", "total"}
    assert len(fault["identities"]) == 2
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 1  # the last good one


def test_run_folder_is_never_overwritten(synth_roots, tmp_path):
    config = tiny_config("baseline-sysu", synth_roots["sysu"])
    train(config, tmp_path / "run")
    with pytest.raises(VireidError, match=r"already holds a run .*--resume.*--force"):
        train(config, tmp_path / "run")
    with pytest.raises(VireidError, match=r"differing fields: optim\.lr_head"):
        train(tiny_config("baseline-sysu", synth_roots["sysu"], "optim.lr_head=0.5"),
              tmp_path / "run", resume=True)  # fmt: skip
    with pytest.raises(VireidError, match=r"no last\.pt to resume from"):
        train(config, tmp_path / "empty", resume=True)


def test_bad_data_root(tmp_path):
    from reference.training.config import load_preset

    with pytest.raises(VireidError, match=r"data\.root: no dataset folder given"):
        train(load_preset("baseline-sysu", ["run.progress=false"]), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    config = load_preset("baseline-sysu", [f"data.root='{tmp_path / 'nowhere'}'"])
    with pytest.raises(VireidError, match="nowhere is not a folder"):
        train(config, tmp_path / "b")
    # an empty root would be the working folder: refused where the config is read
    with pytest.raises(VireidError) as info:
        load_preset("baseline-sysu", ["data.root=''"])
    assert str(info.value) == "data.root: expected a non-empty path or none, got ''"
    (tmp_path / "empty").mkdir()
    config = load_preset("baseline-regdb", [f"data.root='{tmp_path / 'empty'}'"])
    with pytest.raises(VireidError, match="empty"):
        train(config, tmp_path / "c")


@pytest.mark.slow  # bf16 convolutions are slow on a CPU: ~8 s a step on 2 quiet cores
def test_bf16_autocast_and_channels_last_run(synth_roots, tmp_path, device):
    config = tiny_config(
        "method_b-regdb", synth_roots["regdb"], f"run.device='{device.type}'", "run.amp='bf16'",
        "run.channels_last=true", "run.deterministic=false",
    )  # fmt: skip
    result = train(config, tmp_path / "run")
    assert result.steps == 1 and all(map(math.isfinite, result.final_losses.values()))
    assert set(result.final_losses) == {"did/global", "mml/global", "mdl/global", "total"}


@pytest.mark.slow  # dynamo traces ResNet-50's forward: ~35 s more than eager on 2 loaded cores
def test_compiled_run_equals_eager_and_saves_the_plain_network(synth_roots, tmp_path, monkeypatch):
    # run.compile's graph capture (dynamo) with its "eager" backend: the captured graph runs
    # torch's own kernels, so the run must equal the eager one bit for bit. Inductor, the
    # default backend, generates C++ kernels: ~150 s to compile this network on 2 loaded CPU
    # cores (its losses agreed with eager's to 1e-4 relative at the first step, measured)
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model: real_compile(model, backend="eager"))
    eager = tiny_config("baseline-sysu", synth_roots["sysu"], steps=2)
    compiled = tiny_config("baseline-sysu", synth_roots["sysu"], "run.compile=true", steps=2)
    try:
        result = train(compiled, tmp_path / "compiled")
    finally:
        torch._dynamo.reset()  # drop the captured graphs (they hold the network)
    train(eager, tmp_path / "eager")
    assert log_rows(tmp_path / "compiled") == log_rows(tmp_path / "eager")
    assert_same_state(tmp_path / "compiled" / "last.pt", tmp_path / "eager" / "last.pt")
    saved = read_checkpoint(result.last_checkpoint)["model"]
    assert not [k for k in saved if "_orig_mod" in k]  # the plain network's state dict
    model, _ = load_model(result.last_checkpoint, "cpu")  # strict load into an eager network
    assert type(model).__name__ == "ReidNetwork"
