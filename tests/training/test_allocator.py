"""Keeping freed memory for reuse (spec/training/allocator.md): what it changes (page faults of
a step-like loop, in fresh processes), where it does nothing, and when the engine sets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import reference
from reference.training import allocator, engine
from reference.training.allocator import keep_freed_memory
from reference.training.engine import train
from tests.training.conftest import tiny_config

needs_glibc = pytest.mark.skipif(
    allocator.glibc() is None, reason="glibc's mallopt: Linux with the GNU C library only"
)

#: a step's pattern: many blocks below glibc's initial mmap threshold (128 KiB), written, then
#: all freed together; six rounds, the minor page faults of each
LOOP = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from reference.training.allocator import keep_freed_memory

    kept = keep_freed_memory() if sys.argv[1] == "keep" else None

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    counts = []
    for _ in range(6):
        before = faults()
        blocks = [np.ones(25_000, dtype=np.float32) for _ in range(40)]  # 40 x 100 kB
        del blocks
        counts.append(faults() - before)
    print(json.dumps({"kept": kept, "faults": counts}))
    """
)


def faults_of_loop(mode: str) -> dict:
    src = str(Path(reference.__file__).resolve().parents[1])  # this package, however installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", LOOP, mode], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout)


@needs_glibc
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    # the 4 MB freed at the end of a round lie above glibc's trim threshold: by default they go
    # back to the kernel and the next round faults its pages in again (about 1,000 faults a
    # round); kept, the later rounds reuse them
    default, kept = faults_of_loop("default"), faults_of_loop("keep")
    assert kept["kept"] is True
    assert min(default["faults"][1:]) > 500, default  # the pattern this setting is for
    assert max(kept["faults"][1:]) < 20, kept


def test_elsewhere_it_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.glibc() is None
    assert keep_freed_memory() is False


def test_a_c_library_without_mallopt_is_not_glibc(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: object())  # no such functions
    assert allocator.glibc() is None
    assert keep_freed_memory() is False


def test_the_engine_sets_it_on_the_cpu_unless_told_not_to(synth_roots, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(engine, "keep_freed_memory", lambda: calls.append(1) or True)
    train(tiny_config("baseline-sysu", synth_roots["sysu"]), tmp_path / "on")
    assert calls == [1]
    off = tiny_config("baseline-sysu", synth_roots["sysu"], "run.keep_freed_memory=false")
    train(off, tmp_path / "off")
    assert calls == [1]
