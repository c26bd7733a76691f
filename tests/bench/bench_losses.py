"""Losses, part 1: vectorised forward + backward against the float64 loop oracles of the tests.

Run with ``nox -s bench`` (or ``pytest tests/bench/bench_losses.py -o python_files=bench_*.py
--benchmark-only``). Batch: P = 6 identities x K = 8 images x 2 modalities = 96 rows of 2048-d
float32 features (the SYSU-MM01 batch of the predecessor, global feature size); 395 classes for the
identity loss (SYSU-MM01 train + val). The oracle is the loop oracle the unit tests trust, timed in
the same run (forward only: it has no backward, so the ratio understates the speed-up). The
issue's target: the vectorised loss at least 50x faster than its oracle. Both sides run on one
CPU thread (the oracle is pure Python), so the ratio is per core and does not depend on how many
cores a shared machine happens to give torch's thread pool.
"""

from __future__ import annotations

import time

import pytest
import torch

from reference.losses.center_alignment import CenterAlignmentConfig, center_alignment_terms
from reference.losses.hetero_center import hetero_center_triplet
from reference.losses.identity import identity_loss
from reference.losses.triplet import batch_hard_triplet
from tests.losses.test_center_alignment import oracle as center_alignment_oracle
from tests.losses.test_hetero_center import oracle as hetero_center_oracle
from tests.losses.test_identity import oracle as identity_oracle
from tests.losses.test_triplet import oracle as triplet_oracle
from tests.plugin import benchmark_seconds

P, K, D, CLASSES = 6, 8, 2048, 395
TARGET = 50.0


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(P).repeat_interleave(2 * K)
    modality = torch.tensor([0, 1]).repeat_interleave(K).repeat(P)
    order = torch.randperm(P * K * 2, generator=gen)
    features = torch.randn(P * K * 2, D, generator=gen)[order]
    logits = torch.randn(P * K * 2, CLASSES, generator=gen) * 3
    return features, labels[order], modality[order], logits


def _oracle_seconds(fn, rounds=3):
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _compare(benchmark, fast, oracle, rounds=5):
    """Benchmark ``fast`` (forward + backward), time ``oracle``, record and check the ratio."""
    benchmark.pedantic(fast, rounds=100, warmup_rounds=10)
    fast_s = benchmark_seconds(benchmark, "min")
    oracle_s = _oracle_seconds(oracle, rounds)
    ratio = oracle_s / fast_s
    benchmark.extra_info.update(oracle_min_s=oracle_s, vectorised_min_s=fast_s, speedup=ratio)
    print(
        f"\n{benchmark.name}: vectorised {fast_s * 1e3:.2f} ms, oracle {oracle_s * 1e3:.1f} ms, "
        f"speed-up {ratio:.0f}x"
    )
    assert ratio >= TARGET, f"speed-up {ratio:.1f}x below the {TARGET:.0f}x target"


def test_batch_hard_triplet(benchmark, batch):
    features, labels, _, _ = batch

    def fast():
        f = features.clone().requires_grad_(True)
        batch_hard_triplet(f, labels).backward()

    _compare(
        benchmark,
        fast,
        lambda: triplet_oracle(features, labels, margin=0.3, soft_margin=False, metric="euclidean"),
        rounds=1,
    )


def test_identity(benchmark, batch):
    _, labels, _, logits = batch

    def fast():
        z = logits.clone().requires_grad_(True)
        identity_loss(z, labels, epsilon=0.1).backward()

    _compare(benchmark, fast, lambda: identity_oracle(logits, labels, 0.1))


def test_hetero_center_triplet(benchmark, batch):
    features, labels, modality, _ = batch

    def fast():
        f = features.clone().requires_grad_(True)
        hetero_center_triplet(f, labels, modality).backward()

    _compare(benchmark, fast, lambda: hetero_center_oracle(features, labels, modality))


def test_center_alignment(benchmark, batch):
    features, labels, modality, _ = batch
    cfg = CenterAlignmentConfig()

    def fast():
        f = features.clone().requires_grad_(True)
        center_alignment_terms(f, labels, modality, cfg).total.backward()

    _compare(benchmark, fast, lambda: center_alignment_oracle(features, labels, modality, cfg))
