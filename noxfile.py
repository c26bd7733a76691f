"""Sessions for CI and development. Run ``nox`` (the ``tests`` session) or ``nox -s NAME``.

All sessions use the uv backend, so the heavy stack (torch, torchvision) comes from uv's cache
after the first install and every session starts in seconds.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session, *extras: str) -> None:
    spec = ".[" + ",".join(extras) + "]" if extras else "."
    session.install("-e", spec)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and property tests plus the executable spec documents."""
    _install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def spec(session: nox.Session) -> None:
    """The spec documents alone (Sybil runs their code blocks)."""
    _install(session, "test")
    session.run("pytest", "spec", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """pytest-benchmark figures: fast code against its same-run baselines (not part of CI)."""
    _install(session, "test")
    session.run(
        "pytest",
        "tests/bench",
        "-o",
        "python_files=bench_*.py",
        "--benchmark-only",
        "--benchmark-columns=min,median,mean,max,rounds",
        "--benchmark-sort=name",
        *session.posargs,
    )
