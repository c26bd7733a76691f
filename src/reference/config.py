"""The one loader of configuration data: frozen dataclasses from mappings, and back.

Spec: ``spec/config.md``. Every config of the project (``ModelConfig``, ``PipelineConfig``,
``LossSpec``, the training run's ``TrainConfig``) is a frozen dataclass. A preset file (TOML) or a
JSON record gives nested mappings; :func:`from_mapping` turns them into the dataclass:

- keys are checked against the dataclass's fields: an unknown key is an error naming its path
  (``train.optim.lr``) and the fields that exist; a required field that is absent is named too;
- each value is checked against the field's annotation (``int``, ``float``, ``bool``, ``str``,
  ``Path``, ``Literal[...]``, ``X | None``, ``tuple[T, ...]``, ``tuple[A, B]``, ``dict[str, T]``,
  a nested dataclass) and converted where the file format cannot say it (lists become tuples,
  strings become paths, integers become floats for a ``float`` field);
- the dataclass's own ``__post_init__`` then checks its values; a :class:`VireidError` raised
  there is given the field path of the nested config in front of its message.

:func:`to_dict` is the inverse (tuples become lists, paths strings), so
``from_mapping(cls, to_dict(c)) == c`` for every config ``c``. :func:`apply_overrides` applies
command-line assignments (``optim.lr=0.05``) to the mapping before it is loaded, and
:func:`config_diff` names the fields where two configs differ (a resumed run refuses a changed
config with that list).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from reference.checks import check_path, is_integer, is_path, is_real
from reference.errors import VireidError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

T = TypeVar("T")

__all__ = ["apply_overrides", "config_diff", "from_mapping", "load_toml", "to_dict"]


def _join(prefix: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{prefix}[{name}]"
    return f"{prefix}.{name}" if prefix else name


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _init_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _describe(hint: Any) -> str:
    """What a value of annotation ``hint`` looks like, for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return "any value"
    if hint is type(None):
        return "none"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} values (" + ", ".join(_describe(a) for a in args) + ")"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return "a table"
    if dataclasses.is_dataclass(hint):
        return f"a table of {hint.__name__} fields"
    return {
        bool: "true or false",
        int: "an integer",
        float: "a finite number",
        str: "a string",
        Path: "a non-empty path",
    }.get(hint, getattr(hint, "__name__", repr(hint)))


def _plural(hint: Any) -> str:
    word = _describe(hint)
    for article in ("an ", "a "):
        if word.startswith(article):
            return word[len(article) :] + "s"
    return word


def _bad(path: str, hint: Any, value: Any) -> VireidError:
    return VireidError(f"{path}: expected {_describe(hint)}, got {value!r}")


#: what a scalar field accepts: ``bool`` only true/false, ``int`` no bool, ``float`` a finite
#: int or float (returned as a float), ``str`` a string
_SCALARS: dict[Any, Any] = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: is_integer(v, numpy=False),
    float: lambda v: is_real(v) and math.isfinite(v),
    str: lambda v: isinstance(v, str),
}


def _convert(hint: Any, value: Any, path: str) -> Any:
    """``value`` checked against ``hint`` and converted to the field's Python type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return _frozen(value)
    if hint is type(None):
        if value is None:
            return None
        raise _bad(path, hint, value)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except VireidError:
                continue
        raise _bad(path, hint, value)
    if origin is Literal:
        # ``True == 1``: a bool only matches a bool literal, and the other way round
        if any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in args):
            return value
        raise _bad(path, hint, value)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise _bad(path, hint, value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, _join(path, i)) for i, v in enumerate(value))
        if len(value) != len(args):
            raise _bad(path, hint, value)
        return tuple(
            _convert(a, v, _join(path, i)) for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _bad(path, hint, value)
        value_hint = args[1] if len(args) == 2 else Any
        return {str(k): _convert(value_hint, v, _join(path, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        return from_mapping(hint, value, path)
    if hint in _SCALARS:
        if _SCALARS[hint](value):
            return float(value) if hint is float else value
        raise _bad(path, hint, value)
    if hint is Path:
        if is_path(value):  # not "": Path("") is the working folder
            return Path(value)
        raise _bad(path, hint, value)
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _bad(path, hint, value)
    return value  # an annotation this loader does not know: the dataclass checks it


def _frozen(value: Any) -> Any:
    """Lists (the only sequence TOML and JSON have) become tuples, so configs stay hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _with_path(exc: VireidError, prefix: str) -> VireidError:
    """``exc`` with ``prefix`` in front of its message, unless it already names that field."""
    message = str(exc)
    if not prefix or message.startswith(prefix):
        return exc
    last = prefix.rsplit(".", 1)[-1]
    if message.startswith((last + ".", last + ":", last + "[")):
        return VireidError(prefix + message[len(last) :])
    return VireidError(f"{prefix}.{message}")


def from_mapping(cls: type[T], data: Any, prefix: str = "") -> T:
    """The dataclass ``cls`` built from ``data`` (see the module docstring).

    ``prefix`` is the field path of ``data`` in the whole document (``""`` at the top); every
    error names the path of the offending field.
    """
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"from_mapping: expected a dataclass type, got {cls!r}")
    where = prefix or cls.__name__
    if not isinstance(data, Mapping):
        raise VireidError(f"{where}: expected {_describe(cls)}, got {data!r}")
    known = _init_fields(cls)
    names = [f.name for f in known]
    for key in data:
        if key not in names:
            raise VireidError(
                f"{_join(prefix, str(key))}: unknown field; expected one of {sorted(names)}"
            )
    missing = [
        f.name
        for f in known
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        paths = ", ".join(_join(prefix, name) for name in missing)
        raise VireidError(f"{paths}: missing (required field of {cls.__name__})")
    hints = _hints(cls)
    values = {key: _convert(hints[key], value, _join(prefix, key)) for key, value in data.items()}
    try:
        return cls(**values)
    except VireidError as exc:
        raise _with_path(exc, prefix) from None


def to_dict(config: Any) -> Any:
    """Plain data of a config: dataclasses become dicts, tuples lists, paths strings.

    Fields with ``init=False`` are left out, so the result loads back with :func:`from_mapping`.
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in _init_fields(type(config))}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, Mapping):
        return {str(k): to_dict(v) for k, v in config.items()}
    if isinstance(config, Path):
        return str(config)
    return config


def load_toml(path: str | Path) -> dict[str, Any]:
    """The mapping of a TOML file; a missing or malformed file is an error naming it."""
    file = check_path(path, "path")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VireidError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VireidError(f"{file}: cannot be read as UTF-8 text ({exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise VireidError(f"{file}: not a valid TOML file ({exc})") from None


def _parse_value(text: str) -> Any:
    """A TOML literal (``0.05``, ``true``, ``[1, 2]``, ``"x"``), else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: Mapping[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``path.to.field=value`` assignment applied, in order.

    Values are read as TOML literals (``0.05``, ``true``, ``[288, 144]``, ``"sysu"``); text that is
    no TOML literal is taken as a string (``--set data.root=/data/sysu``). Missing tables on the
    path are created; whether the field exists is checked when the result is loaded.
    """
    if not isinstance(assignments, (list, tuple)) or not all(
        isinstance(a, str) for a in assignments
    ):
        raise VireidError(f"overrides: expected a list of FIELD=VALUE strings, got {assignments!r}")
    result = copy.deepcopy(dict(data))
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or not all(parts):
            raise VireidError(f"--set {item!r}: expected FIELD=VALUE, e.g. optim.lr=0.05")
        table = result
        for depth, part in enumerate(parts[:-1]):
            inner = table.setdefault(part, {})
            if not isinstance(inner, dict):
                where = ".".join(parts[: depth + 1])
                raise VireidError(f"--set {item!r}: {where} is a value, not a table of fields")
            table = inner
        table[parts[-1]] = _parse_value(text.strip())
    return result


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Field paths whose values differ between configs (or plain data) ``a`` and ``b``."""
    left, right = to_dict(a), to_dict(b)
    if isinstance(left, dict) and isinstance(right, dict):
        found: list[str] = []
        for key in sorted(set(left) | set(right)):
            path = _join(prefix, key)
            if key not in left or key not in right:
                found.append(path)
            else:
                found.extend(config_diff(left[key], right[key], path))
        return found
    return [] if left == right else [prefix or "(config)"]
