"""Checkpoints: atomic, weights-only, every RNG, errors naming the file (spec: checkpoint.md)."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from reference.errors import VireidError
from reference.training.checkpoint import (
    KEYS,
    load_model,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from reference.training.config import config_to_dict, load_preset


def state(**changes):
    base = {
        "model": {}, "optimizer": {}, "scheduler": {}, "scaler": {}, "epoch": 0, "epoch_step": 0,
        "step": 0, "world_size": 1, "rng": [rng_state(None)], "extra": {},
        "config": config_to_dict(load_preset("baseline-regdb")),
    }  # fmt: skip
    return {**base, **changes}


def draws(generator):
    return (
        torch.rand(3).tolist(),
        np.random.rand(3).tolist(),  # noqa: NPY002 (the legacy global generator is saved too)
        [random.random() for _ in range(3)],
        torch.rand(3, generator=generator).tolist(),
    )


def test_every_generator_is_restored(tmp_path):
    generator = torch.Generator().manual_seed(5)
    torch.rand(2, generator=generator)
    save_checkpoint(tmp_path / "c.pt", state(rng=[rng_state(generator)]))
    first = draws(generator)
    other = torch.Generator().manual_seed(99)
    set_rng_state(read_checkpoint(tmp_path / "c.pt")["rng"][0], other)
    assert draws(other) == first


def test_written_atomically_and_loaded_weights_only(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "last.pt", state(step=1))
    before = (tmp_path / "last.pt").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("reference.fileio.os.replace", crash)
    with pytest.raises(VireidError) as info:  # the system's refusal, naming the file
        save_checkpoint(tmp_path / "last.pt", state(step=2))
    assert str(info.value) == f"{tmp_path / 'last.pt'}: could not be written (disk full)"
    assert (tmp_path / "last.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left
    monkeypatch.undo()
    # a file that is no zip archive: torch's own error is a bare "KeyError: 105"
    (tmp_path / "notes.pt").write_text("hi\n")
    with pytest.raises(VireidError) as info:
        read_checkpoint(tmp_path / "notes.pt")
    assert str(info.value) == (
        f"{tmp_path / 'notes.pt'}: not a readable checkpoint (truncated, or not a torch file): "
        "not a zip archive, which torch.save writes"
    )
    # a file whose unpickling would run code is refused by weights_only loading
    torch.save({"format": "vireid-checkpoint", "evil": random.Random(0)}, tmp_path / "evil.pt")
    with pytest.raises(VireidError, match=r"evil\.pt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "evil.pt")


def test_incomplete_and_other_versions(tmp_path):
    torch.save({"format": "vireid-checkpoint", "version": 1}, tmp_path / "part.pt")
    with pytest.raises(VireidError, match=r"part\.pt: checkpoint lacks \['model'"):
        read_checkpoint(tmp_path / "part.pt")
    torch.save({"format": "vireid-checkpoint", "version": 9}, tmp_path / "v9.pt")
    with pytest.raises(VireidError, match=r"v9\.pt: checkpoint version 9; this code reads 1"):
        read_checkpoint(tmp_path / "v9.pt")
    with pytest.raises(VireidError, match=r"checkpoint state: missing \['step'\]"):
        save_checkpoint(tmp_path / "x.pt", {k: v for k, v in state().items() if k != "step"})
    assert set(KEYS) - set(state()) == {"format", "version", "revision"}


def test_load_model_checks_weights_and_config(tmp_path):
    bad_config = state(config={"model": {"kind": "baseline"}, "losses": {}})
    save_checkpoint(tmp_path / "cfg.pt", bad_config)
    with pytest.raises(VireidError, match=r"cfg\.pt: its config is not valid here"):
        load_model(tmp_path / "cfg.pt")
    save_checkpoint(tmp_path / "w.pt", state(model={"bogus": torch.zeros(1)}))
    with pytest.raises(VireidError, match=r"w\.pt: weights do not fit its model config"):
        load_model(tmp_path / "w.pt")


def test_load_model_gives_every_saved_tensor_exactly(tmp_path):
    from reference.models.build import build_model

    config = load_preset("baseline-regdb")
    model_config = dataclasses.replace(config.model, depth=18, num_classes=4)
    config = dataclasses.replace(config, model=model_config)
    network = build_model(model_config)
    with torch.no_grad():  # values no initialisation draws
        for i, tensor in enumerate(network.state_dict().values()):
            tensor.copy_(torch.full_like(tensor, i % 5 + 2) if tensor.is_floating_point() else 9)
    saved = network.state_dict()
    save_checkpoint(tmp_path / "c.pt", state(model=saved, config=config_to_dict(config)))
    model, got_config = load_model(tmp_path / "c.pt")
    assert got_config.model == model_config and not model.training
    loaded = model.state_dict()
    assert list(loaded) == list(saved)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert torch.equal(model._route, network._route)
    # a checkpoint missing one tensor is refused: nothing is left uninitialised
    partial = {k: v for k, v in saved.items() if not k.endswith("running_var")}
    save_checkpoint(tmp_path / "p.pt", state(model=partial, config=config_to_dict(config)))
    with pytest.raises(VireidError, match=r"p\.pt: weights do not fit its model config"):
        load_model(tmp_path / "p.pt")


def test_read_checkpoint_names_a_path_that_is_not_one():
    with pytest.raises(VireidError) as info:
        read_checkpoint(["last.pt"])
    assert str(info.value) == (
        "path: expected a non-empty path (str or os.PathLike), got ['last.pt']"
    )
