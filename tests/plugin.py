"""Pytest plugin loaded for every run (``-p tests.plugin`` in pyproject.toml).

- Hypothesis profiles, chosen by ``HYPOTHESIS_PROFILE``: ``ci`` (derandomized, moderate example
  counts; the default when ``CI`` is set), ``dev`` (the default otherwise; fewer examples, random),
  ``thorough`` (many examples, for a long run before a release).
- ``TEST_DEVICE`` (``cpu`` by default, ``cuda`` on a GPU machine): the ``device`` fixture every
  tensor test uses; the spec documents get it too.
- Under pytest-xdist, each worker's torch thread count is its share of the cores.
- The files that hold a test marked ``slow`` or ``regression`` are collected first
  (``SLOW_DOCUMENTS`` marks the spec documents that are slow): ``nox -s tests`` keeps that
  order (``--no-loadscope-reorder``), so the workers start on the long files and end on short
  ones together, instead of one worker running a long file alone at the end (xdist's default
  order is by the number of tests in a file, which put the long files with few tests last).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=40,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=20, deadline=None, print_blob=True)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def share_cores_between_workers() -> int | None:
    """Under pytest-xdist (``nox -s tests`` runs ``-n auto``), give each worker its share of the
    cores as torch threads, so that N workers do not each start one thread per core; returns the
    thread count set, or None outside xdist. ``OMP_NUM_THREADS`` set by the caller wins."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers or os.environ.get("OMP_NUM_THREADS"):
        return None
    threads = max(1, (os.cpu_count() or 1) // int(workers))
    torch.set_num_threads(threads)
    return threads


share_cores_between_workers()


def test_device_from_env() -> torch.device:
    """The device named by ``TEST_DEVICE``; an unusable one is a usage error, not a silent CPU."""
    name = os.environ.get("TEST_DEVICE", "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise pytest.UsageError(f"TEST_DEVICE={name!r} is not a torch device: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("TEST_DEVICE=cuda but torch.cuda.is_available() is False")
    return device


test_device_from_env.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def device() -> torch.device:
    return test_device_from_env()


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` for the block, then put back."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def benchmark_seconds(benchmark: Any, stat: str = "min") -> float:
    """The ``stat`` (``min``, ``mean``, ``median``) of the rounds ``benchmark`` just timed, in
    seconds. Under ``--benchmark-disable`` pytest-benchmark runs the function once, untimed, and
    keeps no statistics: the figure that needs them is then skipped, saying why, instead of
    failing on a missing attribute (the function itself has run)."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        pytest.skip("--benchmark-disable: the benchmark ran once, untimed; its figures need timing")
    return float(getattr(stats.stats, stat))


def result_of_forked_child(target: Callable[[Any], None], what: str, timeout: float = 60) -> Any:
    """Run ``target(queue)`` in a forked child and return what it put on the queue; a child that
    hangs past ``timeout`` seconds (``what`` names its work) or fails is a test failure."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=target, args=(queue,))
    child.start()
    child.join(timeout=timeout)
    if child.is_alive():
        child.kill()
        pytest.fail(f"the forked child's {what} did not finish within {timeout:g} s")
    assert child.exitcode == 0
    return queue.get(timeout=5)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"TEST_DEVICE={os.environ.get('TEST_DEVICE', 'cpu')}, torch {torch.__version__}, "
        f"hypothesis profile {settings._current_profile}"
    ]


#: spec documents whose examples take more than a few seconds on the CI machine (a Markdown
#: block cannot carry a marker): their items are marked ``slow`` at collection
SLOW_DOCUMENTS = ("spec/models/cost.md",)


#: markers of the tests that take more than a few seconds
LONG_MARKERS = ("slow", "regression")


def is_long(item: pytest.Item) -> bool:
    """Whether ``item`` carries one of :data:`LONG_MARKERS`."""
    return any(item.get_closest_marker(name) is not None for name in LONG_MARKERS)


def slow_files_first(items: Sequence[pytest.Item]) -> list[pytest.Item]:
    """``items`` with every file that holds a test marked ``slow`` or ``regression`` moved to
    the front; a stable sort, so the order within each file and among the others is kept."""
    slow = {item.path for item in items if is_long(item)}
    return sorted(items, key=lambda item: item.path not in slow)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    documents = {config.rootpath / name for name in SLOW_DOCUMENTS}
    for item in items:
        if item.path in documents:
            item.add_marker(pytest.mark.slow)
    items[:] = slow_files_first(items)
