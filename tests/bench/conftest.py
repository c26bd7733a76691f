"""Print every benchmark's ``extra_info`` (images per second, speed-ups, peak memory) at the end.

pytest-benchmark's table shows times only; the figures the issues ask for are computed by the
benchmarks themselves and kept in ``benchmark.extra_info``. They are collected after each test
and listed in the terminal summary of ``nox -s bench``.
"""

from __future__ import annotations

import pytest

from tests.plugin import torch_threads

_FIGURES: list[tuple[str, dict]] = []


@pytest.fixture(autouse=True)
def _collect_extra_info(request: pytest.FixtureRequest):
    # take the fixture before the test: it is torn down before this fixture's teardown runs
    bench = request.getfixturevalue("benchmark") if "benchmark" in request.fixturenames else None
    yield
    if bench is not None and bench.extra_info:
        _FIGURES.append((request.node.nodeid.split("::", 1)[-1], dict(bench.extra_info)))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a whole bench module (``pytestmark = usefixtures(...)``)."""
    with torch_threads(1):
        yield


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("benchmark figures (extra_info)")
    for name, info in _FIGURES:
        figures = ", ".join(f"{key}={_fmt(value)}" for key, value in info.items())
        terminalreporter.write_line(f"{name}: {figures}")
