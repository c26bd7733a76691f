"""Device, determinism and the optimizer of a run (engine.md, "Optimisation")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reference.errors import VireidError
from reference.training.distributed import Processes
from reference.training.setup import build_for_training, determinism, pick_device
from tests.training.conftest import tiny_config


def config(*sets):
    return tiny_config("baseline-sysu", Path("."), *sets)


def test_pick_device():
    assert pick_device(config("run.device='cpu'"), Processes()) == torch.device("cpu")
    with pytest.raises(VireidError, match=r"run\.amp: fp16 needs a GPU"):
        pick_device(config("run.device='cpu'", "run.amp='fp16'"), Processes())
    if not torch.cuda.is_available():
        with pytest.raises(VireidError, match=r"run\.device: 'cuda' requested but no GPU"):
            pick_device(config("run.device='cuda'"), Processes())


def test_determinism_is_restored_afterwards():
    before = torch.are_deterministic_algorithms_enabled()
    with determinism(config("run.deterministic=true", "run.seed=3"), torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
        first = torch.rand(2)
    with determinism(config("run.deterministic=true", "run.seed=3"), torch.device("cpu")):
        assert torch.equal(torch.rand(2), first)  # seeded from run.seed
    assert torch.are_deterministic_algorithms_enabled() == before


def test_two_learning_rates_nesterov_and_the_schedule():
    c = config("schedule.warmup_epochs=2", "schedule.milestones=[3]", "model.num_classes=4")
    network, model, optimizer, scheduler, scaler = build_for_training(
        c, torch.device("cpu"), Processes()
    )
    assert model is network and not scaler.is_enabled()
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["backbone"]["params"] == network.parameter_groups()["backbone"]
    assert all(g["nesterov"] and g["momentum"] == 0.9 and g["weight_decay"] == 5e-4
               for g in groups.values())  # fmt: skip
    rates = []
    for _ in range(4):
        rates += [groups["backbone"]["lr"], groups["head"]["lr"]]
        optimizer.step()  # no gradients: nothing moves, but the order is the loop's
        scheduler.step()
    assert rates == pytest.approx([0.005, 0.05, 0.01, 0.1, 0.01, 0.1, 0.001, 0.01])


def test_compile_on_the_cpu_without_a_cxx_compiler_is_refused_up_front(monkeypatch):
    from reference.training import setup

    found = {"g++": None, "c++": None, "clang++": None, "/opt/cc/bin/my-cxx": "/opt/cc/bin/my-cxx"}
    monkeypatch.setattr(setup.shutil, "which", lambda name: found.get(name))
    monkeypatch.delenv("CXX", raising=False)
    message = (
        "run.compile: torch.compile's default backend (inductor) needs a C++ compiler on the "
        "CPU ($CXX or one of g++, c++, clang++ on PATH) and none was found; install one or set "
        "run.compile=false"
    )
    with pytest.raises(VireidError) as caught:
        build_for_training(config("run.compile=true"), torch.device("cpu"), Processes())
    assert str(caught.value) == message
    monkeypatch.setenv("CXX", "missing-cxx")  # a $CXX that is not there does not count
    with pytest.raises(VireidError, match=r"^run\.compile: "):
        setup.check_compiler(torch.device("cpu"))
    monkeypatch.setenv("CXX", "/opt/cc/bin/my-cxx")
    setup.check_compiler(torch.device("cpu"))
    monkeypatch.delenv("CXX")
    setup.check_compiler(torch.device("cuda"))  # checked on the CPU only (the CPU kernels)
    found["clang++"] = "/usr/bin/clang++"
    setup.check_compiler(torch.device("cpu"))
