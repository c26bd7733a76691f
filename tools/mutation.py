"""Mutation testing for ``src/reference/<area>/``: how much of the code the tests actually pin.

Run it as ``nox -s mutation`` (extra arguments after ``--``) or directly::

    PYTHONPATH=src python tools/mutation.py --area losses --module mdl
    PYTHONPATH=src python tools/mutation.py --area evaluation --sample 150 --list

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
syntax tree (an import hook for that one module name) and runs pytest in-process with ``-x``:
first the module's own tests (``spec/<area>/<name>.md``, then ``tests/<area>/test_<name>.py``),
then, only if the mutant survived those, the tests and specs of every module of the area that
imports it (directly or through another). A child that runs past its timeout (a multiple of the
unmutated run's time) counts as killed, as a hang is a detected change. Tests run under
``HYPOTHESIS_PROFILE=ci`` (derandomized, so a run is repeatable).

Killed mutants are remembered in ``.mutation-cache.json`` (ignored by git), keyed by the hash of
the module's source, so a rerun after adding tests only reruns the survivors (``--no-cache`` to
run everything).
"""

from __future__ import annotations

import argparse
import ast
import copy
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


def _short(node: ast.AST) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= 90 else text[:87] + "..."


def _is_docstring(node: ast.AST, parent: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


class _Walker:
    """Yields every mutation point of a module in a fixed (syntax tree field) order."""

    def __init__(self, tree: ast.Module, lines: list[str]) -> None:
        self.tree = tree
        self.lines = lines
        self.points: list[_Point] = []

    def run(self) -> list[_Point]:
        self._visit(self.tree, "")
        return self.points

    def _skip_line(self, node: ast.AST) -> bool:
        lineno = getattr(node, "lineno", None)
        return lineno is not None and self.lines[lineno - 1].rstrip().endswith(
            "# pragma: no mutate"
        )

    def _add(self, parent, fld, slot, node, operator, replace, qualname) -> None:
        if not self._skip_line(node):
            self.points.append(_Point(parent, fld, slot, node, operator, replace, qualname))

    def _visit(self, node: ast.AST, qualname: str) -> None:
        for fld, value in ast.iter_fields(node):
            if fld in ("annotation", "returns", "type_comment", "decorator_list_annotations"):
                continue
            if isinstance(node, ast.Raise) and fld in ("exc", "cause"):
                continue  # the error's message and class: pinned by the message tests
            if isinstance(value, list):
                for slot, child in enumerate(value):
                    if isinstance(child, ast.AST):
                        self._child(node, fld, slot, child, qualname)
            elif isinstance(value, ast.AST):
                self._child(node, fld, None, value, qualname)

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
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = f"{qualname}.{node.name}" if qualname else node.name
            self._visit(node, inner)
            return
        self._points_of(parent, fld, slot, node, qualname or "<module>")
        self._visit(node, qualname)

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
        result.append(Mutant(mutant_id, path, index, line, point.operator, before, after))
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
) -> tuple[str, float]:
    """Run pytest on ``args`` in a forked child, optionally with one module replaced.

    Returns (``"passed"`` | ``"failed"`` | ``"timeout"``, seconds)."""
    start = time.monotonic()
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
            import pytest

            code = int(pytest.main(args))
        except BaseException:  # anything the child hits is a failure
            import traceback

            traceback.print_exc()
            code = 3
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = start + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            elapsed = time.monotonic() - start
            code = os.waitstatus_to_exitcode(status)
            return ("passed" if code in (0, 5) else "failed"), elapsed
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - start
        time.sleep(0.05)


@dataclass
class Result:
    mutant: Mutant
    status: str  # killed | survived | timeout | cached | equivalent | device-only
    seconds: float = 0.0


@dataclass
class Runner:
    layout: Layout = field(default_factory=Layout)
    timeout_factor: float = 3.0
    timeout_min: float = 30.0
    cache_path: Path | None = None
    progress: bool = True
    _baselines: dict = field(default_factory=dict)

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

    def run_one(self, mutant: Mutant, source: str) -> Result:
        area, module = mutant.area, mutant.module
        tree = mutate(source, mutant.index)
        name = f"{self.layout.package}.{area}.{module}"
        filename = str(self.layout.src / mutant.path)
        total = 0.0
        rounds = (
            ("own", self.layout.own_tests(area, module)),
            ("wider", self.layout.wider_tests(area, module)),
        )
        for label, tests in rounds:
            if not tests:
                continue
            args = ["-x", "-q", *self.layout.pytest_args, *map(str, tests)]
            baseline = self._baseline((mutant.path, label), args)
            timeout = max(self.timeout_min, self.timeout_factor * baseline)
            status, seconds = run_pytest_forked(
                args, timeout, mutated=(name, filename, tree), cwd=self.layout.root
            )
            total += seconds
            if status == "failed":
                return Result(mutant, "killed", total)
            if status == "timeout":
                return Result(mutant, "timeout", total)
        return Result(mutant, "survived", total)

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
                print(
                    f"[{i}/{len(mutants)}] {mark} {result.seconds:5.1f}s {mutant.describe()}",
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
    # Import the heavy stack once; every forked child shares it.
    import hypothesis  # noqa: F401
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    import torch

    torch.set_num_threads(1)
    for name in ("scipy", "scipy.io", "scipy.optimize", "pandas", "sybil"):
        try:
            __import__(name)
        except ImportError:
            pass
    runner = Runner(
        layout=layout,
        timeout_factor=args.timeout_factor,
        cache_path=None if args.no_cache else args.cache,
        progress=not args.quiet,
    )
    start = time.monotonic()
    results = runner.run(mutants, listed)
    text, _ = report(results, time.monotonic() - start, stale)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
