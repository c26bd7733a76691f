"""Load the implementation under audit from ``package.module:function`` or ``file.py:function``.

Spec: ``spec/audit/adapters.md`` ("Targets"). A target named by a file is imported from that file
with the file's folder put first on ``sys.path`` (so a cloned repository's sibling modules import);
a class (for instance an ``nn.Module`` loss) is instantiated without arguments.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference.errors import VireidError


class TargetFailure(Exception):
    """The target raised, or returned something the audit cannot read (the ``crash`` kind)."""


@contextmanager
def target_failures() -> Iterator[None]:
    """Run the target (and the reading of what it returned) inside: any exception becomes a
    :class:`TargetFailure` naming it (``TypeName: message``), chained to it."""
    try:
        yield
    except TargetFailure:
        raise
    except Exception as exc:
        raise TargetFailure(f"{type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class Target:
    """A callable under audit and the text the user named it by."""

    spec: str
    function: Callable[..., Any]
    name: str  # the function's (or class's) own name

    def parameters(self) -> list[inspect.Parameter]:
        """The parameters a call fills (``self`` of a bound method excluded)."""
        fn = self.function
        if not inspect.isfunction(fn) and not inspect.ismethod(fn) and callable(fn):
            fn = fn.forward if hasattr(fn, "forward") else fn.__call__
        try:
            return list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            return []

    def required(self) -> list[inspect.Parameter]:
        """The positional parameters a call must fill (those without a default)."""
        return [
            q for q in self.parameters()
            if q.default is inspect.Parameter.empty
            and q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)
        ]  # fmt: skip


def _split(spec: str) -> tuple[str, str]:
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise VireidError(
            f"target: expected 'package.module:function' or 'path/to/file.py:function', "
            f"got {spec!r}"
        )
    return where, attr


def _import_file(path: Path, spec: str) -> Any:
    if path.is_dir():
        raise VireidError(f"target: {path}: is a folder; expected a Python file (from {spec!r})")
    if not path.is_file():
        raise VireidError(f"target: {path}: no such file (from {spec!r})")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"vireid_audit_target_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise VireidError(f"target: {path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise VireidError(f"target: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_target(spec: str) -> Target:
    """The callable named by ``spec``; a :class:`VireidError` says what could not be found."""
    where, attr = _split(spec)
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _import_file(Path(where), spec)
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise VireidError(
                f"target: cannot import module {where!r}: {type(exc).__name__}: {exc}"
            ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise VireidError(f"target: {where!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    name = getattr(obj, "__name__", attr)
    if inspect.isclass(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise VireidError(
                f"target: class {attr!r} cannot be built without arguments "
                f"({type(exc).__name__}: {exc}); point the target at a function instead"
            ) from exc
    if not callable(obj):
        raise VireidError(f"target: {spec!r} is not callable (got {type(obj).__name__})")
    return Target(spec=spec, function=obj, name=name)
