"""Mutation testing for ``src/reference/<area>/``: how much of the code the tests actually pin.

Run it as ``nox -s mutation`` (extra arguments after ``--``) or directly::

    PYTHONPATH=src python tools/mutation.py --area losses --module mdl
    PYTHONPATH=src python tools/mutation.py --area evaluation --sample 150 --list
    PYTHONPATH=src python tools/mutation.py --area losses --module identity --no-select

Each line of the progress (stderr) says how the mutant ran: ``(N tests)`` selected,
``(own + dependants)`` without selection, ``(no test runs it)``.

Each *mutant* is one small change to one module's syntax tree (the operators are listed in
``OPERATORS``): a comparison, arithmetic, bitwise or boolean operator swapped, a numeric or
boolean constant changed (default arguments included), a ``not`` / unary minus removed, a
``raise`` replaced by ``pass``, a returned value replaced by ``None``, a slice bound moved by one.
Strings, docstrings, annotations and the arguments of a ``raise`` (the error messages) are left
alone; a line ending in ``# pragma: no mutate`` too.

A mutant's id is ``<area>/<file>:<function>:<hash>``, the hash taken over the original and
mutated source text of the node (plus an occurrence count), so ids survive edits elsewhere in the
file. ``tools/mutation_equivalent.toml`` lists the mutants that cannot change behaviour, each
with its reason, and (``kind = "device"``) the few that only inputs on two devices can tell
apart: on a CPU-only run (``TEST_DEVICE=cpu``, the default) those are counted apart, with
``TEST_DEVICE=cuda`` they run like the others. The score is
``killed / (mutants - equivalent - device-only)``.

Speed (the CI machine has two cores): the parent imports torch, numpy, scipy, hypothesis and
pytest once and forks a child per mutant; the child loads the mutated module from the changed
syntax tree (an import hook for that one module name) and runs pytest in-process with ``-x``.
Which tests a child runs (coverage-based test selection, as mutmut and cosmic-ray do):

- Before the first mutant of a module, one child runs, with the unmutated code, every test that
  could see it: its own (``spec/<area>/<name>.md``, ``tests/<area>/test_<name>.py``) and those
  of every module of the area that imports it (directly or through another), under
  ``coverage`` with one context per test. That records which test executes which line of the
  module (the setup of a module- or session-scoped fixture counts for every test using it), and
  each test's time.
- A mutant then runs only the tests that execute its lines (the mutated node's lines and its
  statement's first line), with ``-x``: those that already killed a mutant of the module first,
  then fastest first; the examples of a spec document share a namespace, so a document runs
  whole and in order. A mutant whose lines no test executes
  survives without running anything (``no test runs it``).
- A mutant that runs at import time (module level, class body, default argument, decorator:
  ``Mutant.lines`` is empty) runs as without selection; one whose lines also ran outside any
  test (a function called at import or collection) first runs the tests that execute its lines
  and, if it survives them, as without selection.
- ``--no-select`` runs every mutant without selection: the module's own tests, then, only if the
  mutant survived those, its dependants' tests and specs. Both ways give the same verdicts (a
  test checks that on a real module); selection only saves time.

A child that runs past its timeout (a multiple of the unmutated time of the tests it runs,
with a floor) counts as killed, as a hang is a detected change. Tests run under
``HYPOTHESIS_PROFILE=ci`` (derandomized, so a run is repeatable), with Hypothesis's pool of
"local constants" fixed, so a test draws the same examples whichever files are collected.

Killed mutants are remembered in ``.mutation-cache.json`` (ignored by git), keyed by the hash of
the module's source, so a rerun after adding tests only reruns the survivors (``--no-cache`` to
run everything).
"""

from __future__ import annotations

import argparse
import ast
import copy
import gc
import hashlib
import importlib.abc
import importlib.util
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AREAS = ("evaluation", "losses")

_COMPARE_SWAP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BINOP_SWAP = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitOr,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
}
OPERATORS = {
    "compare": "a comparison operator swapped (< <=, > >=, == !=, is / is not, in / not in)",
    "binop": (
        "an arithmetic or bitwise operator swapped (+ -, * /, // *, % //, ** *, & |, ^ |, << >>)"
    ),
    "augassign": "the operator of an augmented assignment swapped (+= -=, ...)",
    "boolop": "and / or swapped",
    "unary": "a `not`, unary minus or `~` removed",
    "constant": "a number n -> n + 1, True / False swapped (default arguments included)",
    "raise": "a `raise` replaced by `pass`",
    "return": "a returned value replaced by None",
    "slice": "a slice bound b -> b + 1",
}


@dataclass(frozen=True)
class Mutant:
    """One mutation of one module: where it is and what it changes."""

    id: str
    path: str  # relative to the source root, e.g. "losses/mdl.py"
    index: int  # position among the module's mutation points (walk order)
    line: int
    operator: str
    before: str
    after: str
    # The lines whose execution runs the mutated node (its own lines and its statement's first
    # line); empty when it runs at import time (module level, class body, default argument).
    lines: tuple[int, ...] = ()

    @property
    def area(self) -> str:
        return self.path.split("/")[0]

    @property
    def module(self) -> str:
        return Path(self.path).stem

    def describe(self) -> str:
        return f"{self.path}:{self.line}: [{self.operator}] {self.before}  ->  {self.after}"


# --------------------------------------------------------------------------- mutation points


@dataclass
class _Point:
    parent: ast.AST
    field: str
    slot: int | None  # index into a list field, else None
    node: ast.AST
    operator: str
    replace: Callable[[ast.AST], ast.AST]
    qualname: str
    lines: tuple[int, ...] = ()  # the lines whose execution runs the node (see Mutant.lines)


def _short(node: ast.AST) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= 90 else text[:87] + "..."


def _is_docstring(node: ast.AST, parent: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


class _Walker:
    """Yields every mutation point of a module in a fixed (syntax tree field) order.

    Beside the point itself it notes where the point runs: the lines of the node and of its
    innermost statement, or none when the node runs at import time (outside every function
    body: module level, class bodies, default arguments, decorators)."""

    def __init__(self, tree: ast.Module, lines: list[str]) -> None:
        self.tree = tree
        self.lines = lines
        self.points: list[_Point] = []
        self._statement: ast.AST | None = None
        self._in_function = False

    def run(self) -> list[_Point]:
        self._visit(self.tree, "")
        return self.points

    def _skip_line(self, node: ast.AST) -> bool:
        lineno = getattr(node, "lineno", None)
        return lineno is not None and self.lines[lineno - 1].rstrip().endswith(
            "# pragma: no mutate"
        )

    def _add(self, parent, fld, slot, node, operator, replace, qualname) -> None:
        if self._skip_line(node):
            return
        lines: tuple[int, ...] = ()
        if self._in_function:
            span = set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
            if self._statement is not None:
                span.add(self._statement.lineno)
            lines = tuple(sorted(span))
        self.points.append(_Point(parent, fld, slot, node, operator, replace, qualname, lines))

    def _visit(self, node: ast.AST, qualname: str) -> None:
        for fld, value in ast.iter_fields(node):
            if fld in ("annotation", "returns", "type_comment", "decorator_list_annotations"):
                continue
            if isinstance(node, ast.Raise) and fld in ("exc", "cause"):
                continue  # the error's message and class: pinned by the message tests
            saved = self._in_function
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                # a body runs when called; defaults and decorators where the def is
                self._in_function = saved or fld == "body"
            if isinstance(value, list):
                for slot, child in enumerate(value):
                    if isinstance(child, ast.AST):
                        self._child(node, fld, slot, child, qualname)
            elif isinstance(value, ast.AST):
                self._child(node, fld, None, value, qualname)
            self._in_function = saved

    def _child(self, parent, fld, slot, node, qualname) -> None:
        if isinstance(node, (ast.JoinedStr, ast.Import, ast.ImportFrom)):
            return
        if _is_docstring(node, parent):
            return
        if isinstance(node, ast.If) and _is_skipped_block(node):
            return
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return
        saved_statement, saved_function = self._statement, self._in_function
        if isinstance(node, ast.stmt):
            self._statement = node
        if isinstance(node, ast.ClassDef):
            self._in_function = False  # a class body runs when the class is defined
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = f"{qualname}.{node.name}" if qualname else node.name
            self._visit(node, inner)
        else:
            self._points_of(parent, fld, slot, node, qualname or "<module>")
            self._visit(node, qualname)
        self._statement, self._in_function = saved_statement, saved_function

    def _points_of(self, parent, fld, slot, node, qualname) -> None:
        add = lambda operator, replace: self._add(  # noqa: E731
            parent, fld, slot, node, operator, replace, qualname
        )
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _COMPARE_SWAP:
                    add("compare", _compare_swap(i))
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
            add("binop", _op_swap(_BINOP_SWAP))
        elif isinstance(node, ast.AugAssign) and type(node.op) in _BINOP_SWAP:
            add("augassign", _op_swap(_BINOP_SWAP))
        elif isinstance(node, ast.BoolOp):
            add("boolop", _boolop_swap)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.Invert)):
            add("unary", lambda n: copy.deepcopy(n.operand))
        elif isinstance(node, ast.Constant) and _mutable_constant(node.value):
            add("constant", _constant_change)
        elif isinstance(node, ast.Raise):
            add("raise", lambda n: ast.Pass())
        elif isinstance(node, ast.Return) and node.value is not None:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                add("return", lambda n: ast.Return(value=ast.Constant(value=None)))
        elif isinstance(node, ast.Slice):
            for bound in ("lower", "upper"):
                if getattr(node, bound) is not None:
                    add("slice", _slice_shift(bound))


def _is_skipped_block(node: ast.If) -> bool:
    text = ast.unparse(node.test)
    return text in ("TYPE_CHECKING", "typing.TYPE_CHECKING", "__name__ == '__main__'")


def _mutable_constant(value: object) -> bool:
    return isinstance(value, (bool, int, float)) and not isinstance(value, complex)


def _compare_swap(i: int) -> Callable[[ast.AST], ast.AST]:
    def replace(node: ast.AST) -> ast.AST:
        new = copy.deepcopy(node)
        new.ops[i] = _COMPARE_SWAP[type(node.ops[i])]()
        return new

    return replace


def _op_swap(table: dict) -> Callable[[ast.AST], ast.AST]:
    def replace(node: ast.AST) -> ast.AST:
        new = copy.deepcopy(node)
        new.op = table[type(node.op)]()
        return new

    return replace


def _boolop_swap(node: ast.AST) -> ast.AST:
    new = copy.deepcopy(node)
    new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    return new


def _constant_change(node: ast.AST) -> ast.AST:
    value = node.value
    if isinstance(value, bool):
        return ast.Constant(value=not value)
    return ast.Constant(value=value + 1)


def _slice_shift(bound: str) -> Callable[[ast.AST], ast.AST]:
    def replace(node: ast.AST) -> ast.AST:
        new = copy.deepcopy(node)
        old = getattr(node, bound)
        setattr(new, bound, ast.BinOp(left=copy.deepcopy(old), op=ast.Add(), right=ast.Constant(1)))
        return new

    return replace


def _points(source: str) -> list[_Point]:
    tree = ast.parse(source)
    return _Walker(tree, source.splitlines()).run()


def _describe(point: _Point) -> tuple[str, str]:
    if isinstance(point.node, ast.Raise):
        return _short(point.node), "pass"
    return _short(point.node), _short(point.replace(point.node))


def mutants_of(source: str, path: str) -> list[Mutant]:
    """Every mutant of one module's ``source`` (``path`` relative to the source root)."""
    result = []
    seen: dict[str, int] = {}
    for index, point in enumerate(_points(source)):
        before, after = _describe(point)
        key = f"{point.qualname}|{point.operator}|{before}|{after}"
        seen[key] = seen.get(key, 0) + 1
        digest = hashlib.sha1(f"{key}|{seen[key]}".encode()).hexdigest()[:8]
        mutant_id = f"{path}:{point.qualname}:{digest}"
        line = getattr(point.node, "lineno", None) or getattr(point.parent, "lineno", 0)
        result.append(
            Mutant(mutant_id, path, index, line, point.operator, before, after, point.lines)
        )
    return result


def mutate(source: str, index: int) -> ast.Module:
    """The syntax tree of ``source`` with its ``index``-th mutation applied."""
    tree = ast.parse(source)
    point = _Walker(tree, source.splitlines()).run()[index]
    new = point.replace(point.node)
    ast.copy_location(new, point.node)
    if point.slot is None:
        setattr(point.parent, point.field, new)
    else:
        getattr(point.parent, point.field)[point.slot] = new
    return ast.fix_missing_locations(tree)


# --------------------------------------------------------------------------- running tests


class _MutatedLoader(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Loads one module name from a given syntax tree instead of its file."""

    def __init__(self, name: str, filename: str, tree: ast.Module) -> None:
        self.name, self.filename, self.tree = name, filename, tree

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=self.filename)

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        module.__file__ = self.filename
        exec(compile(self.tree, self.filename, "exec"), module.__dict__)


@dataclass
class Layout:
    """Where the package, its tests and its specs are (the real tree, or a test fixture)."""

    root: Path = ROOT
    package: str = "reference"
    src: Path = field(default_factory=lambda: ROOT / "src" / "reference")
    tests: Path = field(default_factory=lambda: ROOT / "tests")
    spec: Path = field(default_factory=lambda: ROOT / "spec")
    pytest_args: tuple[str, ...] = ("-p", "no:cacheprovider")

    def modules(self, area: str) -> list[Path]:
        return sorted(p for p in (self.src / area).glob("*.py") if p.name != "__init__.py")

    def own_tests(self, area: str, module: str) -> list[Path]:
        candidates = [  # the spec's worked examples first: they are quick and name the numbers
            self.spec / area / f"{module}.md",
            self.tests / area / f"test_{module}.py",
        ]
        return [p for p in candidates if p.exists()]

    def dependants(self, area: str, module: str) -> list[str]:
        """Modules of ``area`` that import ``module``, directly or through another."""
        prefix = f"{self.package}.{area}"
        imports = {p.stem: _imported_modules(p, prefix) for p in self.modules(area)}
        found, frontier = {module}, [module]
        while frontier:
            current = frontier.pop()
            for name, deps in imports.items():
                if current in deps and name not in found:
                    found.add(name)
                    frontier.append(name)
        return sorted(found - {module})

    def wider_tests(self, area: str, module: str) -> list[Path]:
        """Second round: tests of the dependants and every area test naming the module."""
        names = [module, *self.dependants(area, module)]
        chosen: list[Path] = []
        for name in names:
            chosen += self.own_tests(area, name)
        dotted = [f"{self.package}.{area}.{n}" for n in names] + [
            f"{self.package}.{area} import {n}" for n in names
        ]
        for test in sorted((self.tests / area).glob("test_*.py")) + sorted(
            (self.spec / area).glob("*.md")
        ):
            if test not in chosen and any(d in test.read_text() for d in dotted):
                chosen.append(test)
        own = set(self.own_tests(area, module))
        return [p for p in chosen if p not in own]


def _imported_modules(path: Path, prefix: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith(prefix + "."):
                names.add(node.module[len(prefix) + 1 :].split(".")[0])
            elif node.module == prefix:
                names.update(alias.name for alias in node.names)
    return names


def run_pytest_forked(
    args: list[str],
    timeout: float,
    mutated: tuple[str, str, ast.Module] | None = None,
    log: Path | None = None,
    cwd: Path = ROOT,
    plugins: tuple = (),
) -> tuple[str, float]:
    """Run pytest on ``args`` in a forked child, optionally with one module replaced and with
    extra plugin objects (a plugin with ``start()`` / ``finish(exit_code)`` has them called
    around the run, in the child).

    Returns (``"passed"`` | ``"failed"`` | ``"timeout"`` | ``"error"``, seconds): ``"error"``
    when a plugin stopped the run with exit code ``SELECTION_ERROR``."""
    start = time.monotonic()
    plugin_args = _plugin_args()
    gc.freeze()  # the child's collections skip everything the parent built (torch, ...)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            os.setpgid(0, 0)
            os.chdir(cwd)
            fd = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            if mutated is not None:
                sys.meta_path.insert(0, _MutatedLoader(*mutated))
            _fix_hypothesis_constants()
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # named in plugin_args instead
            for plugin in plugins:
                getattr(plugin, "start", lambda: None)()
            code = int(pytest.main([*plugin_args, *args], plugins=list(plugins)))
            for plugin in plugins:
                getattr(plugin, "finish", lambda code: None)(code)
        except BaseException:  # anything the child hits is a failure
            import traceback

            traceback.print_exc()
            code = 3
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    gc.unfreeze()
    deadline = start + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            elapsed = time.monotonic() - start
            code = os.waitstatus_to_exitcode(status)
            if code == SELECTION_ERROR:
                return "error", elapsed
            return ("passed" if code in (0, 5) else "failed"), elapsed
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - start
        time.sleep(0.02)


SELECTION_ERROR = 97  # exit code of a child whose selected tests were not all collected
_PLUGIN_ARGS: list[str] = []


def _plugin_args() -> list[str]:
    """``-p <module>`` for every installed pytest plugin (entry point group ``pytest11``),
    looked up once: each child then skips pytest's scan of the installed distributions."""
    if not _PLUGIN_ARGS:
        from importlib.metadata import entry_points

        for entry in sorted(entry_points(group="pytest11"), key=lambda e: e.value):
            _PLUGIN_ARGS.extend(["-p", entry.value])
        _PLUGIN_ARGS.extend(["-W", "ignore::pytest.PytestAssertRewriteWarning"])
    return _PLUGIN_ARGS


def _fix_hypothesis_constants() -> None:
    """Hypothesis (6.131 and later) mixes into its draws the constants of the project modules
    loaded when a test runs, so a derandomized test draws other examples when other test files
    are collected. Fix that pool (empty), in the recording run and every mutant's run alike, so
    that a test runs the same lines in both (and the scan of the loaded modules is skipped)."""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:
        return
    if hasattr(providers, "_get_local_constants") and hasattr(providers, "Constants"):
        empty = providers.Constants()
        providers._get_local_constants = lambda: empty


# --------------------------------------------------------------------------- test selection


@dataclass
class LineMap:
    """Which tests run which lines of one module, from one run of its unmutated tests.

    ``tests`` maps a pytest node id to the module lines it executed (the setup of a fixture of
    wider scope counts for every test that uses the fixture); ``outside`` holds the lines run
    outside any test (imports, collection); ``seconds`` each test's time (setup, call and
    teardown); ``collect`` the time from the run's start to the end of its collection."""

    files: list[str]
    tests: dict[str, frozenset[int]]
    seconds: dict[str, float]
    outside: frozenset[int]
    collect: float

    def covering(self, lines: tuple[int, ...], kills: dict[str, int] | None = None) -> list[str]:
        """The node ids that run any of ``lines``, in the order to run them: those that killed
        the most mutants of the module so far (``kills``) first, then fastest first; the
        examples of one spec document together and in their order (they share a namespace,
        so a document runs whole)."""
        kills = kills or {}
        wanted = set(lines)
        hit = [n for n, run in self.tests.items() if run & wanted]
        units: dict[str, list[str]] = {}
        for nodeid in self.tests:  # the run's order
            file = nodeid.split("::")[0]
            key = file if file.endswith(".md") else nodeid
            units.setdefault(key, []).append(nodeid)
        chosen = {(n.split("::")[0] if n.split("::")[0].endswith(".md") else n) for n in hit}
        ordered = sorted(
            chosen,
            key=lambda k: (
                -sum(kills.get(n, 0) for n in units[k]),
                sum(self.seconds.get(n, 0.0) for n in units[k]),
                k,
            ),
        )
        return [n for key in ordered for n in units[key]]

    def to_json(self) -> dict:
        return {
            "files": self.files,
            "tests": {k: sorted(v) for k, v in self.tests.items()},
            "seconds": self.seconds,
            "outside": sorted(self.outside),
            "collect": self.collect,
        }

    @classmethod
    def from_json(cls, data: dict) -> LineMap:
        return cls(
            files=list(data["files"]),
            tests={k: frozenset(v) for k, v in data["tests"].items()},
            seconds={k: float(v) for k, v in data["seconds"].items()},
            outside=frozenset(data["outside"]),
            collect=float(data["collect"]),
        )


class _Recorder:
    """Pytest plugin (in the recording child): which test runs which lines of one file, through
    ``coverage`` with one dynamic context per test (or per setup of a wider-scoped fixture)."""

    def __init__(self, filename: str, out: Path) -> None:
        self.filename = os.path.realpath(filename)
        self.out = out
        self.stack: list[str] = [""]
        self.fixtures: dict[str, list[str]] = {}
        self.seconds: dict[str, float] = {}
        self.order: list[str] = []
        self.collect = 0.0

    def start(self) -> None:
        import coverage

        self.begin = time.monotonic()
        self.cov = coverage.Coverage(
            data_file=None, include=[self.filename], config_file=False, branch=False
        )
        self.cov.start()

    def _switch(self, context: str) -> None:
        self.cov.switch_context(context)

    def pytest_collection_finish(self, session) -> None:
        self.collect = time.monotonic() - self.begin
        self.order = [item.nodeid for item in session.items]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.fixtures[item.nodeid] = list(item.fixturenames)
        self.stack = [item.nodeid]
        self._switch(item.nodeid)
        yield
        self.stack = [""]
        self._switch("")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        pushed = fixturedef.scope != "function"
        if pushed:
            self.stack.append(f"fixture {fixturedef.argname}")
            self._switch(self.stack[-1])
        yield
        if pushed:
            self.stack.pop()
            self._switch(self.stack[-1])

    def pytest_runtest_logreport(self, report) -> None:
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    def finish(self, code: int) -> None:
        self.cov.stop()
        data = self.cov.get_data()
        by_context: dict[str, set[int]] = {}
        for measured in data.measured_files():
            if os.path.realpath(measured) != self.filename:
                continue
            for line, contexts in data.contexts_by_lineno(measured).items():
                for context in contexts:
                    by_context.setdefault(context, set()).add(line)
        tests = {}
        for nodeid in self.order:
            lines = set(by_context.get(nodeid, ()))
            for name in self.fixtures.get(nodeid, ()):
                lines |= by_context.get(f"fixture {name}", set())
            tests[nodeid] = frozenset(lines)
        files = list(dict.fromkeys(n.split("::")[0] for n in self.order))
        result = LineMap(
            files, tests, self.seconds, frozenset(by_context.get("", ())), self.collect
        )
        self.out.write_text(json.dumps(result.to_json()))


class _Select:
    """Pytest plugin (in a mutant's child): run only the given node ids, in the given order;
    stop with ``SELECTION_ERROR`` if one of them is not collected."""

    def __init__(self, nodeids: list[str], out: Path | None = None) -> None:
        self.rank = {n: i for i, n in enumerate(nodeids)}
        self.out = out  # where the child writes the node id of the test that failed
        self.failed = ""

    def pytest_runtest_logreport(self, report) -> None:
        if report.failed and not self.failed:
            self.failed = report.nodeid

    def finish(self, code: int) -> None:
        if self.out is not None and self.failed:
            self.out.write_text(self.failed)

    def pytest_collection_modifyitems(self, session, config, items) -> None:
        keep = sorted(
            (i for i in items if i.nodeid in self.rank), key=lambda i: self.rank[i.nodeid]
        )
        if len(keep) != len(self.rank):
            missing = set(self.rank) - {i.nodeid for i in keep}
            pytest.exit(f"selected tests not collected: {sorted(missing)[:3]}", SELECTION_ERROR)
        dropped = [i for i in items if i.nodeid not in self.rank]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@dataclass
class Result:
    mutant: Mutant
    status: str  # killed | survived | timeout | cached | equivalent | device-only
    seconds: float = 0.0
    note: str = ""  # how it was run: "3 tests", "own + dependants", "no test runs it"


@dataclass
class Runner:
    layout: Layout = field(default_factory=Layout)
    timeout_factor: float = 3.0
    timeout_min: float = 30.0
    cache_path: Path | None = None
    progress: bool = True
    select: bool = True  # run only the tests that execute the mutant's lines
    _baselines: dict = field(default_factory=dict)
    _maps: dict = field(default_factory=dict)
    _kills: dict = field(default_factory=dict)  # {path: {node id: mutants it killed}}

    def _baseline(self, key: tuple, args: list[str]) -> float:
        if key not in self._baselines:
            if self.progress:
                print(f"timing the unmutated {key[1]} tests of {key[0]}", file=sys.stderr)
            status, seconds = run_pytest_forked(args, timeout=3600, cwd=self.layout.root)
            if status != "passed":
                raise SystemExit(
                    f"error: the unmutated tests fail ({' '.join(args)}); fix them first"
                )
            self._baselines[key] = seconds
        return self._baselines[key]

    def line_map(self, path: str) -> LineMap:
        """Record (once per module) which of its own and its dependants' tests run which of
        its lines, with the unmutated code."""
        if path not in self._maps:
            area, module = Path(path).parent.as_posix(), Path(path).stem
            tests = self.layout.own_tests(area, module) + self.layout.wider_tests(area, module)
            if not tests:
                self._maps[path] = LineMap([], {}, {}, frozenset(), 0.0)
                return self._maps[path]
            if self.progress:
                print(f"recording which tests run which lines of {path}", file=sys.stderr)
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "lines.json"
                identity = self._mutated(path, ast.parse((self.layout.src / path).read_text()))
                recorder = _Recorder(identity[1], out)
                args = ["-q", *self.layout.pytest_args, *map(str, tests)]
                status, _ = run_pytest_forked(
                    args, timeout=3600, mutated=identity, cwd=self.layout.root, plugins=(recorder,)
                )
                if status != "passed" or not out.exists():
                    raise SystemExit(
                        f"error: the unmutated tests fail ({' '.join(args)}); fix them first"
                    )
                lines = LineMap.from_json(json.loads(out.read_text()))
            if not lines.outside and not any(lines.tests.values()):
                # A module imported lazily (inside a test) has no line outside the tests.
                raise SystemExit(f"error: coverage recorded no line of {path}")
            self._maps[path] = lines
        return self._maps[path]

    def run_one(self, mutant: Mutant, source: str) -> Result:
        tree = mutate(source, mutant.index)
        spent = 0.0
        if self.select and mutant.lines:
            lines = self.line_map(mutant.path)
            selected = lines.covering(mutant.lines, self._kills.get(mutant.path))
            also_outside = bool(set(mutant.lines) & lines.outside)
            if not selected and not also_outside:
                return Result(mutant, "survived", 0.0, "no test runs it")
            result = self._run_selected(mutant, tree, selected, lines) if selected else None
            if result is not None and (result.status != "survived" or not also_outside):
                return result
            # Its lines also ran outside any test (a call at import or collection): what the
            # covering tests did not catch, the long way may (the verdict is the long way's).
            spent = result.seconds if result is not None else 0.0
        result = self._run_rounds(mutant, tree)
        result.seconds += spent
        return result

    def _mutated(self, path: str, tree: ast.Module) -> tuple[str, str, ast.Module]:
        """What the child's import hook loads: the module of ``path`` from ``tree``."""
        name = ".".join([self.layout.package, *Path(path).with_suffix("").parts])
        return name, str(self.layout.src / path), tree

    def _run_selected(
        self, mutant: Mutant, tree: ast.Module, selected: list[str], lines: LineMap
    ) -> Result | None:
        files = list(dict.fromkeys(n.split("::")[0] for n in selected))
        args = ["-x", "-q", *self.layout.pytest_args, *files]
        baseline = lines.collect + sum(lines.seconds.get(n, 0.0) for n in selected)
        timeout = max(self.timeout_min, self.timeout_factor * baseline)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "failed"
            status, seconds = run_pytest_forked(
                args,
                timeout,
                mutated=self._mutated(mutant.path, tree),
                cwd=self.layout.root,
                plugins=(_Select(selected, out),),
            )
            if out.exists():  # try the test that killed this one first on the next mutants
                kills = self._kills.setdefault(mutant.path, {})
                kills[out.read_text()] = kills.get(out.read_text(), 0) + 1
        note = f"{len(selected)} tests"
        if status == "error":  # a selected test went missing: run it the long way
            if self.progress:
                print(f"warning: {mutant.id}: selection not collected", file=sys.stderr)
            return None
        if status == "failed":
            return Result(mutant, "killed", seconds, note)
        if status == "timeout":
            return Result(mutant, "timeout", seconds, note)
        return Result(mutant, "survived", seconds, note)

    def _run_rounds(self, mutant: Mutant, tree: ast.Module) -> Result:
        """Without selection: the module's own tests, then (if it survived) its dependants'."""
        area, module = mutant.area, mutant.module
        total = 0.0
        rounds = (
            ("own", self.layout.own_tests(area, module)),
            ("wider", self.layout.wider_tests(area, module)),
        )
        for label, tests in rounds:
            if not tests:
                continue
            args = ["-x", "-q", *self.layout.pytest_args, *map(str, tests)]
            if mutant.path in self._maps:  # the recording run timed every test
                files = {p.relative_to(self.layout.root).as_posix() for p in tests}
                baseline = self._maps[mutant.path].collect + sum(
                    t
                    for n, t in self._maps[mutant.path].seconds.items()
                    if n.split("::")[0] in files
                )
            else:
                baseline = self._baseline((mutant.path, label), args)
            timeout = max(self.timeout_min, self.timeout_factor * baseline)
            status, seconds = run_pytest_forked(
                args, timeout, mutated=self._mutated(mutant.path, tree), cwd=self.layout.root
            )
            total += seconds
            if status == "failed":
                return Result(mutant, "killed", total, "own + dependants")
            if status == "timeout":
                return Result(mutant, "timeout", total, "own + dependants")
        return Result(mutant, "survived", total, "own + dependants")

    def run(self, mutants: list[Mutant], listed: dict[str, str]) -> list[Result]:
        """Run every mutant but the ``listed`` ones (``{id: "equivalent" | "device-only"}``)."""
        cache = _load_cache(self.cache_path)
        sources = {m.path: (self.layout.src / m.path).read_text() for m in mutants}
        results = []
        for i, mutant in enumerate(mutants, 1):
            digest = _digest(sources[mutant.path])
            if mutant.id in listed:
                result = Result(mutant, listed[mutant.id])
            elif mutant.id in cache.get(digest, ()):
                result = Result(mutant, "cached")
            else:
                result = self.run_one(mutant, sources[mutant.path])
                if result.status in ("killed", "timeout") and self.cache_path is not None:
                    cache.setdefault(digest, []).append(mutant.id)
                    _save_cache(self.cache_path, cache)
            results.append(result)
            if self.progress:
                mark = {"killed": ".", "timeout": "T", "survived": "S"}.get(result.status, "-")
                note = f" ({result.note})" if result.note else ""
                print(
                    f"[{i}/{len(mutants)}] {mark} {result.seconds:5.1f}s {mutant.describe()}{note}",
                    file=sys.stderr,
                    flush=True,
                )
        return results


def _digest(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()[:16]


def _load_cache(path: Path | None) -> dict:
    if path is None or not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def _save_cache(path: Path, cache: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=0, sort_keys=True))
    tmp.replace(path)


def load_equivalent(path: Path, kind: str = "equivalent") -> dict[str, str]:
    """``{mutant id: reason}`` of the checked-in list's entries of one ``kind``: ``equivalent``
    (the default when an entry names none) or ``device`` (only two devices tell it apart)."""
    if not path.exists():
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    data = tomllib.loads(path.read_text())
    out = {}
    for entry in data.get("mutant", []):
        if not entry.get("reason"):
            raise SystemExit(f"error: {path}: mutant {entry.get('id')!r} has no reason")
        if entry.get("kind", "equivalent") not in ("equivalent", "device"):
            raise SystemExit(f"error: {path}: mutant {entry.get('id')!r}: unknown kind")
        if entry.get("kind", "equivalent") == kind:
            out[entry["id"]] = entry["reason"]
    return out


def select(
    layout: Layout,
    areas: list[str],
    modules: list[str] | None,
    sample: int | None,
    seed: int = 0,
) -> list[Mutant]:
    """The mutants to run: every mutant of the chosen modules, or a repeatable sample of them."""
    chosen = []
    for area in areas:
        for path in layout.modules(area):
            if modules and path.stem not in modules:
                continue
            rel = path.relative_to(layout.src).as_posix()
            chosen += mutants_of(path.read_text(), rel)
    if sample is not None and sample < len(chosen):
        order = list(range(len(chosen)))
        random.Random(seed).shuffle(order)  # a smaller sample is a prefix: samples nest
        picked = set(order[:sample])
        chosen = [m for i, m in enumerate(chosen) if i in picked]
    return chosen


def report(results: list[Result], seconds: float, stale: list[str]) -> tuple[str, bool]:
    """The score table and the survivors; the flag says whether any survivor is left."""
    lines = []
    by_area: dict[str, list[Result]] = {}
    for r in results:
        by_area.setdefault(r.mutant.area, []).append(r)
    lines.append(
        f"{'area':<12}{'mutants':>8}{'equiv':>7}{'device':>8}{'killed':>8}{'survived':>9}"
        f"{'score':>8}"
    )
    for area, rs in sorted(by_area.items()):
        equivalent = sum(r.status == "equivalent" for r in rs)
        device = sum(r.status == "device-only" for r in rs)
        killed = sum(r.status in ("killed", "timeout", "cached") for r in rs)
        survived = sum(r.status == "survived" for r in rs)
        live = len(rs) - equivalent - device
        score = f"{100 * killed / live:.1f}%" if live else "-"
        lines.append(
            f"{area:<12}{len(rs):>8}{equivalent:>7}{device:>8}{killed:>8}{survived:>9}{score:>8}"
        )
    lines.append(f"run time {seconds:.0f}s")
    survivors = [r for r in results if r.status == "survived"]
    if survivors:
        lines.append(f"\nsurvivors ({len(survivors)}):")
        lines += [f"  {r.mutant.describe()}\n    id = {r.mutant.id}" for r in survivors]
    if stale:
        lines.append("\nequivalent-list entries matching no mutant of the run's modules:")
        lines += [f"  {s}" for s in stale]
    return "\n".join(lines), bool(survivors)


def preload() -> None:
    """Import the heavy stack once, in the parent: every forked child shares it (torch at one
    thread; gradcheck's first call imports sympy, about 5 s, that no child should pay)."""
    import hypothesis  # noqa: F401
    import numpy  # noqa: F401
    import torch

    torch.set_num_threads(1)
    one = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: t * 2.0, (one,), fast_mode=True)
    for name in ("scipy", "scipy.io", "scipy.optimize", "pandas", "sybil"):
        try:
            __import__(name)
        except ImportError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--area", action="append", choices=AREAS, help="default: all areas")
    parser.add_argument("--module", action="append", help="module stem, e.g. mdl (repeatable)")
    parser.add_argument("--sample", type=int, help="run a repeatable sample of this many mutants")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument("--id", action="append", help="run only this mutant id (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--timeout-factor", type=float, default=3.0)
    parser.add_argument(
        "--equivalent", type=Path, default=ROOT / "tools" / "mutation_equivalent.toml"
    )
    parser.add_argument("--cache", type=Path, default=ROOT / ".mutation-cache.json")
    parser.add_argument("--no-cache", action="store_true", help="rerun mutants killed before")
    parser.add_argument("--quiet", action="store_true", help="no line per mutant on stderr")
    parser.add_argument(
        "--no-select",
        action="store_true",
        help="run each mutant against all its module's tests, then its dependants' (no coverage)",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("HYPOTHESIS_PROFILE", "ci")
    layout = Layout()
    areas = args.area or list(AREAS)
    mutants = select(layout, areas, args.module, args.sample, args.seed)
    if args.id:
        mutants = [m for m in mutants if m.id in args.id]
    if not mutants:
        print("error: no mutants for that selection", file=sys.stderr)
        return 2
    if args.list:
        for m in mutants:
            print(f"{m.id}  {m.describe()}")
        print(f"{len(mutants)} mutants", file=sys.stderr)
        return 0
    equivalent = load_equivalent(args.equivalent)
    device_only = load_equivalent(args.equivalent, kind="device")
    listed = dict.fromkeys(equivalent, "equivalent")
    if os.environ.get("TEST_DEVICE", "cpu") == "cpu":
        listed |= dict.fromkeys(device_only, "device-only")
    ids = {m.id for m in select(layout, areas, args.module, None)}
    stale = sorted(
        i
        for i in [*equivalent, *device_only]
        if i not in ids
        and i.split("/")[0] in areas
        and (not args.module or Path(i.split(":")[0]).stem in args.module)
    )
    if not args.no_select:
        try:
            import coverage  # noqa: F401
        except ImportError:
            print("error: test selection needs coverage (pip install coverage); or --no-select")
            return 2
    preload()
    runner = Runner(
        layout=layout,
        timeout_factor=args.timeout_factor,
        cache_path=None if args.no_cache else args.cache,
        progress=not args.quiet,
        select=not args.no_select,
    )
    start = time.monotonic()
    results = runner.run(mutants, listed)
    text, _ = report(results, time.monotonic() - start, stale)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
