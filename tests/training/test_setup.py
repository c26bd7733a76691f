"""Device, determinism and the optimizer of a run (engine.md, "Optimisation")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reference.errors import VireidError
from reference.models.build import build_model
from reference.training import setup
from reference.training.distributed import Processes
from reference.training.setup import (
    build_for_training,
    build_optimizer,
    determinism,
    fused_sgd_available,
    load_optimizer_state,
    pick_device,
)
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


def plain_sgd(groups, optim) -> torch.optim.SGD:
    """The same optimizer as ``build_optimizer`` with torch's per-tensor loop (no fused or
    foreach kernel): the plain formula the fused kernel must reproduce."""
    return torch.optim.SGD(
        [
            {"params": groups["backbone"], "lr": optim.lr_backbone},
            {"params": groups["head"], "lr": optim.lr_head},
        ],
        lr=optim.lr_head, momentum=optim.momentum, nesterov=optim.nesterov,
        weight_decay=optim.weight_decay, foreach=False,
    )  # fmt: skip


def twin_networks(c, channels_last: bool):
    nets = [build_model(c.model) for _ in range(2)]  # the same init_seed: the same weights
    if channels_last:
        nets = [n.to(memory_format=torch.channels_last) for n in nets]
    return nets


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_sgd_equals_the_loop(channels_last):
    """On the CPU the fused kernel gives the loop's parameters and momentum bit for bit: several
    steps from the momentum buffers' first one, both groups, two rates each (the schedule)."""
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 5):
        assert fused_sgd_available("cpu")  # else this test would compare the loop with itself
    c = config("model.num_classes=4", "optim.lr_backbone=0.05", "optim.weight_decay=0.01")
    fused_net, loop_net = twin_networks(c, channels_last)
    fused = build_optimizer(fused_net.parameter_groups(), c.optim, torch.device("cpu"))
    loop = plain_sgd(loop_net.parameter_groups(), c.optim)
    assert [g["fused"] for g in fused.param_groups] == [fused_sgd_available("cpu")] * 2
    pairs = list(zip(params_of(fused), params_of(loop), strict=True))
    base = [g["lr"] for g in loop.param_groups]
    generator = torch.Generator().manual_seed(0)
    for factor in (1.0, 1.0, 0.5, 0.1):  # the schedule moves both groups' rates
        for opt in (fused, loop):
            for g, lr in zip(opt.param_groups, base, strict=True):
                g["lr"] = lr * factor
        for a, b in pairs:
            # laid out like the parameter, as autograd lays out every gradient (the fused kernel
            # reads it so: a contiguous gradient of a channels-last weight is misread)
            grad = torch.empty_like(a).copy_(torch.randn(a.shape, generator=generator))
            a.grad, b.grad = grad.clone(), grad.clone()
        fused.step()
        loop.step()
    for a, b in pairs:
        assert torch.equal(a, b)
        assert torch.equal(fused.state[a]["momentum_buffer"], loop.state[b]["momentum_buffer"])


def params_of(optimizer) -> list[torch.Tensor]:
    return [p for g in optimizer.param_groups for p in g["params"]]


def test_fused_sgd_on_the_device_under_test_follows_the_loop(device):
    """On any device (``TEST_DEVICE``) the chosen kernel follows the loop's formula."""
    c = config("model.num_classes=4")
    fused_net, loop_net = (n.to(device) for n in twin_networks(c, False))
    chosen = build_optimizer(fused_net.parameter_groups(), c.optim, device)
    loop = plain_sgd(loop_net.parameter_groups(), c.optim)
    pairs = list(zip(params_of(chosen), params_of(loop), strict=True))
    for _ in range(3):
        for a, b in pairs:
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        chosen.step()
        loop.step()
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_without_a_fused_kernel_the_default_is_used(monkeypatch):
    real = torch.optim.SGD

    def old_torch_sgd(*args, fused=None, **kwargs):  # torch 2.1 has no such argument
        if fused is not None:
            raise TypeError("__init__() got an unexpected keyword argument 'fused'")
        return real(*args, **kwargs)

    monkeypatch.setattr(setup.torch.optim, "SGD", old_torch_sgd)
    fused_sgd_available.cache_clear()
    try:
        assert not fused_sgd_available("cpu")
        c = config("model.num_classes=4")
        optimizer = build_optimizer(
            build_model(c.model).parameter_groups(), c.optim, torch.device("cpu")
        )
        assert [g["fused"] for g in optimizer.param_groups] == [None, None]
    finally:
        fused_sgd_available.cache_clear()


def test_a_loaded_state_keeps_this_runs_kernel():
    """A checkpoint saved by the loop (an earlier version, or a torch without the fused
    kernel) resumes on the fused kernel, and the other way round, with its momentum."""
    c = config("model.num_classes=4")
    saver_net, net = twin_networks(c, False)
    saver = plain_sgd(saver_net.parameter_groups(), c.optim)
    for p in params_of(saver):
        p.grad = torch.rand_like(p)
    saver.step()
    optimizer = build_optimizer(net.parameter_groups(), c.optim, torch.device("cpu"))
    load_optimizer_state(optimizer, saver.state_dict())
    assert [g["fused"] for g in optimizer.param_groups] == [fused_sgd_available("cpu")] * 2
    assert [g["foreach"] for g in optimizer.param_groups] == [None, None]
    for a, b in zip(params_of(optimizer), params_of(saver), strict=True):
        assert torch.equal(optimizer.state[a]["momentum_buffer"], saver.state[b]["momentum_buffer"])
    load_optimizer_state(saver, optimizer.state_dict())
    assert [(g["fused"], g["foreach"]) for g in saver.param_groups] == [(None, False)] * 2
