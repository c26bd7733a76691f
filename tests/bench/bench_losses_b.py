"""Losses, part 2 (Method B): MML, MDL and DID forward + backward against their loop oracles.

Run with ``nox -s bench`` (or ``pytest tests/bench/bench_losses_b.py -o python_files=bench_*.py
--benchmark-only``). Batch: P = 6 identities x K = 4 images x 4 modalities (V, I, DV, DI) = 96
rows of 2048-d float32 features (Method B's global feature size); 395 classes for DID (SYSU-MM01
train + val). MDL uses its default eight cross-base directions, MML the four modalities. The
baseline is the float64 loop oracle of the unit tests (``tests/losses/test_{mml,mdl,did}.py``),
timed in the same run; it is forward only (it has no backward), so the ratio understates the
speed-up. The issue's target: the vectorised loss at least 50x faster than its oracle.

On the CPU both sides run with one intra-op thread: the oracle is single-threaded Python, and on a
shared 2-core machine torch's two OpenMP threads wait on each other whenever another process holds
a core (the backward of MML then took 0.06 to 4 s instead of 9 ms), which measures the machine's
load, not the code.
"""

from __future__ import annotations

import time

import pytest
import torch

from reference.losses.did import did_loss
from reference.losses.mdl import DEFAULT_DIRECTIONS, mdl_loss
from reference.losses.mml import mml_loss
from tests.losses.test_did import oracle_did
from tests.losses.test_mdl import oracle_mdl
from tests.losses.test_mml import oracle_mml

P, K, M, D, CLASSES = 6, 4, 4, 2048, 395
TARGET = 50.0


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def batch(device):
    gen = torch.Generator().manual_seed(0)
    n = P * K * M
    labels = torch.arange(P).repeat_interleave(K * M)
    modality = torch.arange(M).repeat_interleave(K).repeat(P)
    order = torch.randperm(n, generator=gen)
    features = torch.randn(n, D, generator=gen)
    logits = torch.randn(n, CLASSES, generator=gen) * 3
    return tuple(t.to(device) for t in (features, labels[order], modality[order], logits))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _oracle_seconds(fn, rounds: int) -> tuple[float, float]:
    best, value = float("inf"), float("nan")
    for _ in range(rounds):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def _compare(benchmark, fast, oracle, rounds: int = 1) -> None:
    """Benchmark ``fast`` (forward + backward), time ``oracle``, check value and ratio."""
    value = benchmark(fast)
    fast_s = benchmark.stats.stats.min
    oracle_s, want = _oracle_seconds(oracle, rounds)
    ratio = oracle_s / fast_s
    # the same number: float32 vectorised against the float64 loop
    assert value == pytest.approx(want, rel=1e-4, abs=1e-4)
    benchmark.extra_info.update(oracle_min_s=oracle_s, vectorised_min_s=fast_s, speedup=ratio)
    print(
        f"\n{benchmark.name}: vectorised {fast_s * 1e3:.2f} ms, oracle {oracle_s * 1e3:.0f} ms, "
        f"speed-up {ratio:.0f}x"
    )
    assert ratio >= TARGET, f"speed-up {ratio:.1f}x below the {TARGET:.0f}x target"


def test_mml(benchmark, batch, device):
    features, labels, modality, _ = batch

    def fast():
        f = features.clone().requires_grad_(True)
        loss = mml_loss(f, labels, modality)
        loss.backward()
        _sync(device)
        return float(loss.detach())

    _compare(benchmark, fast, lambda: oracle_mml(features, labels, modality))


def test_mdl(benchmark, batch, device):
    features, labels, modality, _ = batch

    def fast():
        f = features.clone().requires_grad_(True)
        loss = mdl_loss(f, labels, modality)
        loss.backward()
        _sync(device)
        return float(loss.detach())

    _compare(benchmark, fast, lambda: oracle_mdl(features, labels, modality, DEFAULT_DIRECTIONS))


def test_did(benchmark, batch, device):
    _, labels, modality, logits = batch

    def fast():
        z = logits.clone().requires_grad_(True)
        loss = did_loss(z, labels, modality, epsilon=0.1)
        loss.backward()
        _sync(device)
        return float(loss.detach())

    _compare(benchmark, fast, lambda: oracle_did(logits, labels, modality, eps=0.1), rounds=3)
