"""The test plugin's collection order: files holding a slow test first, each file kept whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from tests.plugin import (
    SLOW_DOCUMENTS,
    benchmark_seconds,
    is_long,
    result_of_forked_child,
    slow_files_first,
    torch_threads,
)

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class FakeItem:
    path: Path
    name: str
    markers: set[str] = field(default_factory=set)

    def get_closest_marker(self, name: str):
        return name if name in self.markers else None


def test_files_with_a_slow_test_come_first_in_their_own_order():
    a1, a2 = FakeItem(Path("a.py"), "a1"), FakeItem(Path("a.py"), "a2")
    b1, b2 = FakeItem(Path("b.py"), "b1"), FakeItem(Path("b.py"), "b2", {"slow"})
    c1 = FakeItem(Path("c.py"), "c1", {"slow"})
    d1 = FakeItem(Path("d.py"), "d1")
    e1 = FakeItem(Path("e.py"), "e1", {"regression"})
    ordered = slow_files_first([a1, a2, b1, b2, c1, d1, e1])
    # b.py moves whole (its fast test too), before c.py and e.py as collected; a.py and d.py
    # keep their order
    assert [i.name for i in ordered] == ["b1", "b2", "c1", "e1", "a1", "a2", "d1"]
    assert slow_files_first([a1, d1]) == [a1, d1]
    assert slow_files_first([]) == []


def test_slow_documents_exist():
    for name in SLOW_DOCUMENTS:
        assert (ROOT / name).is_file(), name


def test_this_run_collected_slow_files_first(request: pytest.FixtureRequest):
    items = request.session.items
    slow = [is_long(i) for i in items]
    files = {i.path for i, s in zip(items, slow, strict=True) if s}
    first = [i.path in files for i in items]
    # once a file without a slow test appears, no file with one follows
    assert first == sorted(first, reverse=True)


def _put_seven(queue) -> None:
    queue.put(7)


def _fail(queue) -> None:
    raise SystemExit(3)


def _hang(queue) -> None:
    import time

    time.sleep(30)


def test_result_of_forked_child_returns_hangs_and_failures():
    assert result_of_forked_child(_put_seven, "put") == 7
    with pytest.raises(AssertionError):
        result_of_forked_child(_fail, "exit")
    with pytest.raises(
        pytest.fail.Exception, match=r"the forked child's nap did not finish within 0\.5 s"
    ):
        result_of_forked_child(_hang, "nap", timeout=0.5)


def test_torch_threads_sets_the_count_for_the_block_and_puts_it_back():
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError), torch_threads(before + 2):
        raise ValueError
    assert torch.get_num_threads() == before


def test_benchmark_seconds_reads_the_rounds_or_skips_when_timing_is_disabled():
    # pytest-benchmark keeps ``benchmark.stats`` (its rounds' statistics) when it timed the
    # function; under --benchmark-disable it ran it once and keeps None
    from types import SimpleNamespace

    timed = SimpleNamespace(stats=SimpleNamespace(stats=SimpleNamespace(min=0.5, median=0.75)))
    assert benchmark_seconds(timed) == 0.5
    assert benchmark_seconds(timed, "median") == 0.75
    with pytest.raises(pytest.skip.Exception, match="--benchmark-disable"):
        benchmark_seconds(SimpleNamespace(stats=None))
