"""Sessions for CI and development. Run ``nox`` (the ``tests`` session) or ``nox -s NAME``.

All sessions use the uv backend, so the heavy stack (torch, torchvision) comes from uv's cache
after the first install and every session starts in seconds.
"""

from __future__ import annotations

from pathlib import Path

import nox
import nox.command

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session, *extras: str) -> None:
    """Install the project with ``extras``, its dependencies' bytecode compiled as pip does.

    uv leaves the .pyc files out by default; then the first Python process of a fresh venv
    compiled torch's and torchvision's modules as it imported them (about 12 s of a 2-core
    machine's time per cold import, measured), inside the timed test run. Compiled at install,
    everything a process imports is ready (about 35 s of install time on that machine, once
    per venv)."""
    spec = ".[" + ",".join(extras) + "]" if extras else "."
    session.install("-e", spec, env={"UV_COMPILE_BYTECODE": "1"})


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and property tests plus the executable spec documents.

    In parallel over the machine's cores (pytest-xdist ``-n auto``; a test file stays on one
    worker, so its module fixtures are built once); each worker gets its share of the cores as
    torch threads (``tests/plugin.py``). ``nox -s tests -- -n 0`` runs in one process.
    """
    _install(session, "test", "tensorboard")  # the TensorBoard logging tests run too
    # the 25 slowest tests in every run's output: the suite's time is a target (issue 10).
    # Bytecode is written even where the caller's environment sets PYTHONDONTWRITEBYTECODE (as
    # CI's does): the install compiles the dependencies (_install), and the project's own
    # modules and tests are then compiled once, not again in every Python process the suite
    # starts (two workers, torchrun's three, the pytest and child subprocesses).
    # --no-loadscope-reorder keeps the plugin's order, the files with slow tests first, so that
    # both workers end on short files (xdist's own order, by tests per file, put them last).
    # --hypothesis-seed=0: the profile's examples (dev: 20 a property) drawn from one seed, so
    # that the verdict of CI's command depends on the code alone; another seed after "--"
    # overrides it (pytest takes the last value).
    session.run(
        "pytest", "-n", "auto", "--dist", "loadfile", "--no-loadscope-reorder", "--durations=25",
        "--hypothesis-seed=0", *session.posargs,
        env={"PYTHONDONTWRITEBYTECODE": ""},
    )  # fmt: skip


@nox.session(python="3.10", default=False)
def oldest(session: nox.Session) -> None:
    """The tests on the oldest supported Python (``requires-python``), not part of CI. Needs a
    ``python3.10`` on PATH (pyenv: ``PATH=$(pyenv root)/versions/3.10.x/bin:$PATH``); without
    one nox skips the session and says so."""
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
    """pytest-benchmark figures: fast code against its same-run baselines (not part of CI).

    Each bench file runs in its own process: some pin torch to one thread for per-core ratios,
    and a thread-count change inside a process was seen to slow every later benchmark in it, so
    one file's setting must not leak into another's figures. Extra pytest arguments (posargs)
    are passed to every run; a path among them replaces the default list of files.
    """
    _install(session, "test")
    paths = [arg for arg in session.posargs if arg.startswith("tests/")]
    options = [arg for arg in session.posargs if arg not in paths]
    files = paths or sorted(str(path) for path in Path("tests/bench").glob("bench_*.py"))
    failed = []
    for file in files:
        try:
            session.run(
                "pytest",
                file,
                "-o",
                "python_files=bench_*.py",
                "--benchmark-only",
                "--benchmark-columns=min,median,mean,max,rounds",
                "--benchmark-sort=name",
                *options,
            )
        except nox.command.CommandFailed:
            failed.append(file)
    if failed:
        session.error("benchmarks failed in: " + ", ".join(failed))


@nox.session(default=False)
def mutation(session: nox.Session) -> None:
    """Mutation testing of ``evaluation/`` and ``losses/`` (``tools/mutation.py``; not in CI).

    Prints the score per area (killed / non-equivalent mutants), the run time and every survivor.
    Arguments after ``--`` go to the runner: ``--area losses --module mdl``, ``--sample 150``,
    ``--list``, ``--no-cache``, ``--no-select``. One worker: it forks a child per mutant after
    importing torch once; each mutant runs only the tests that execute its lines (``coverage``).
    """
    _install(session, "test")
    session.run(
        "python",
        "tools/mutation.py",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "ci", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )


@nox.session
def regression(session: nox.Session) -> None:
    """The golden SynthVI runs of every method against ``results/golden/golden.json``
    (``spec/results/golden.md``; under half a minute). The default ``tests`` session runs the same
    test (marker ``regression``); after a deliberate change: ``vireid results golden
    --update`` and commit the file with the reason."""
    _install(session, "test")
    session.run("pytest", "-m", "regression", "--durations=0", "tests/results", *session.posargs)


@nox.session(default=False)
def reproduce(session: nox.Session) -> None:
    """``nox -s reproduce -- PRESET ROOT WEIGHTS [more vireid results reproduce flags]``: train,
    extract, score, record and check one preset (a GPU job; ``spec/results/reproduce.md``)."""
    if len(session.posargs) < 3:
        session.error("usage: nox -s reproduce -- PRESET DATA_ROOT PRETRAINED_WEIGHTS [flags]")
    preset, root, weights, *rest = session.posargs
    _install(session)
    session.run(
        "vireid", "results", "reproduce", "--preset", preset, "--data-root", root,
        "--pretrained", weights, *rest,
    )  # fmt: skip


@nox.session(default=False, venv_backend="none")
def gpu(session: nox.Session) -> None:
    """The suite with ``TEST_DEVICE=cuda``, then the benchmarks, from the source tree with the
    interpreter nox runs under (no virtualenv, nothing installed, no network): for a GPU image
    that already has torch and the test extras."""
    env = {"TEST_DEVICE": "cuda", "PYTHONPATH": "src:."}
    session.run("python", "-m", "pytest", "-p", "tests.plugin", "tests", "spec", env=env)
    for file in sorted(str(path) for path in Path("tests/bench").glob("bench_*.py")):
        session.run(
            "python", "-m", "pytest", file, "-o", "python_files=bench_*.py", "--benchmark-only",
            "--benchmark-columns=min,median,mean,max,rounds", *session.posargs, env=env,
        )  # fmt: skip
