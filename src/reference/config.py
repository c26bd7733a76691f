"""Configs as data: frozen dataclasses built from mappings (TOML preset files, JSON records).

STAND-IN written on the ``train`` branch against the interface the lead announced; the lead's
version on ``main`` replaces this file when it lands (take ``main``'s side of the merge).

- ``from_mapping(cls, data, prefix="")``: nested dataclasses, lists -> tuples, str -> Path, type
  checks from the annotations, unknown keys rejected naming the field path.
- ``to_dict(config)``: plain data (tuples -> lists, Path -> str, nested dataclasses -> dicts).
- ``load_toml(path)``, ``apply_overrides(data, ["a.b=1", ...])``, ``config_diff(a, b)``.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from reference.errors import VireidError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except VireidError as exc:
                errors.append(str(exc))
        raise VireidError(errors[0] if len(errors) == 1 else f"{where}: got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise VireidError(f"{where}: expected one of {list(get_args(tp))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_mapping(tp, value, where)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise VireidError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise VireidError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(
            _convert(a, v, f"{where}[{i}]")
            for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise VireidError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if tp is Path:
        if isinstance(value, Path):
            return value
        if not isinstance(value, str):
            raise VireidError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise VireidError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise VireidError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise VireidError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise VireidError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_mapping(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """An instance of the frozen dataclass ``cls`` from ``data`` (see the module docstring)."""
    if not isinstance(data, Mapping):
        raise VireidError(f"{prefix or cls.__name__}: expected a table, got {data!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise VireidError(
            f"{_path(prefix, unknown[0])}: unknown field; expected one of {sorted(names)}"
        )
    kwargs = {k: _convert(hints[k], v, _path(prefix, k)) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except VireidError as exc:
        message = str(exc)
        if prefix and not message.startswith(prefix + ".") and not message.startswith(prefix + ":"):
            message = f"{prefix}.{message}"
        raise VireidError(message) from None
    except TypeError as exc:
        raise VireidError(f"{prefix or cls.__name__}: {exc}") from None


def to_dict(config: Any) -> Any:
    """Plain data: dataclasses -> dicts, tuples -> lists, Path -> str."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    return config


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise VireidError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise VireidError(f"{path}: not a valid TOML file ({exc})") from None


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``"a.b.c=value"`` set (value parsed as a TOML literal)."""
    out = to_dict(dict(data))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise VireidError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr_head=0.05")
        parts = key.strip().split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise VireidError(f"{'.'.join(parts[: i + 1])}: is not a table, cannot set {key}")
            node = child
        node[parts[-1]] = _parse_value(text.strip())
    return out


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The field paths where two configs (or their plain data) differ."""
    da, db = to_dict(a), to_dict(b)
    if isinstance(da, dict) and isinstance(db, dict):
        out = []
        for key in sorted(set(da) | set(db)):
            if key not in da or key not in db:
                out.append(_path(prefix, key))
            else:
                out.extend(config_diff(da[key], db[key], _path(prefix, key)))
        return out
    return [] if da == db else [prefix or "<root>"]


__all__ = ["apply_overrides", "config_diff", "from_mapping", "load_toml", "to_dict"]
