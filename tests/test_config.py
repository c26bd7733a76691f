"""Tests of the generic config loader (spec/config.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.config import apply_overrides, config_diff, from_mapping, load_toml, to_dict
from reference.errors import VireidError


@dataclass(frozen=True)
class Inner:
    size: tuple[int, int] = (288, 144)
    p: float = 0.5
    name: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise VireidError(f"p: expected a probability in [0, 1], got {self.p!r}")


@dataclass(frozen=True)
class Outer:
    kind: Literal["a", "b"]
    count: int = 1
    flag: Literal[True, 1] | None = None
    inner: Inner = field(default_factory=Inner)
    weights: dict[str, float] = field(default_factory=dict)
    root: Path | None = None
    extra: Any = None


@dataclass(frozen=True)
class Named:
    value: int = 0

    def __post_init__(self) -> None:
        if self.value < 0:
            raise VireidError(f"model.value: expected >= 0, got {self.value}")


@dataclass(frozen=True)
class Holder:
    model: Named = field(default_factory=Named)


def message(cls: type, data: Any, prefix: str = "") -> str:
    with pytest.raises(VireidError) as info:
        from_mapping(cls, data, prefix)
    return str(info.value)


def test_defaults_and_conversion() -> None:
    got = from_mapping(
        Outer,
        {
            "kind": "b",
            "inner": {"size": [10, 5], "p": 1},
            "weights": {"x": 2},
            "root": "/data",
            "extra": [1, [2, 3]],
        },
    )
    assert got == Outer(
        kind="b",
        inner=Inner(size=(10, 5), p=1.0),
        weights={"x": 2.0},
        root=Path("/data"),
        extra=(1, (2, 3)),
    )
    assert isinstance(got.inner.p, float) and isinstance(got.weights["x"], float)
    assert from_mapping(Outer, {"kind": "a"}) == Outer(kind="a")
    # an instance of a nested dataclass is taken as it is
    inner = Inner(p=0.25)
    assert from_mapping(Outer, {"kind": "a", "inner": inner}).inner is inner


def test_to_dict_round_trip() -> None:
    config = Outer(kind="a", inner=Inner(name="x"), root=Path("/r"), weights={"w": 1.5})
    data = to_dict(config)
    assert data == {
        "kind": "a",
        "count": 1,
        "flag": None,
        "inner": {"size": [288, 144], "p": 0.5, "name": "x"},
        "weights": {"w": 1.5},
        "root": "/r",
        "extra": None,
    }
    assert from_mapping(Outer, data) == config


@given(
    kind=st.sampled_from(["a", "b"]),
    count=st.integers(-(10**6), 10**6),
    size=st.tuples(st.integers(1, 999), st.integers(1, 999)),
    p=st.floats(0, 1),
    name=st.none() | st.text(max_size=5),
    weights=st.dictionaries(st.text(max_size=3), st.floats(-1e6, 1e6), max_size=3),
)
def test_round_trip_property(kind, count, size, p, name, weights) -> None:
    config = Outer(kind=kind, count=count, inner=Inner(size, p, name), weights=weights)
    assert from_mapping(Outer, to_dict(config)) == config
    assert config_diff(config, from_mapping(Outer, to_dict(config))) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"kind": "c"}, "train.kind: expected one of 'a', 'b', got 'c'"),
        ({"kind": "a", "count": True}, "train.count: expected an integer, got True"),
        ({"kind": "a", "count": 1.0}, "train.count: expected an integer, got 1.0"),
        ({"kind": "a", "flag": False}, "train.flag: expected one of True, 1 or none, got False"),
        (
            {"kind": "a", "inner": {"p": float("nan")}},
            "train.inner.p: expected a finite number, got nan",
        ),
        ({"kind": "a", "inner": {"p": "x"}}, "train.inner.p: expected a finite number, got 'x'"),
        (
            {"kind": "a", "inner": {"size": [1, 2, 3]}},
            "train.inner.size: expected a list of 2 values (an integer, an integer), got [1, 2, 3]",
        ),
        (
            {"kind": "a", "inner": {"size": "12"}},
            "train.inner.size: expected a list of 2 values (an integer, an integer), got '12'",
        ),
        ({"kind": "a", "inner": {"name": 3}}, "train.inner.name: expected a string or none, got 3"),
        ({"kind": "a", "inner": 3}, "train.inner: expected a table of Inner fields, got 3"),
        ({"kind": "a", "weights": [1]}, "train.weights: expected a table, got [1]"),
        (
            {"kind": "a", "weights": {"w": "1"}},
            "train.weights.w: expected a finite number, got '1'",
        ),
        ({"kind": "a", "root": 5}, "train.root: expected a non-empty path or none, got 5"),
        ({"kind": "a", "root": ""}, "train.root: expected a non-empty path or none, got ''"),
        (
            {"kind": "a", "inner": {"p": 2}},
            "train.inner.p: expected a probability in [0, 1], got 2.0",
        ),
        (
            {"kind": "a", "bogus": 1},
            "train.bogus: unknown field; expected one of "
            "['count', 'extra', 'flag', 'inner', 'kind', 'root', 'weights']",
        ),
        ({}, "train.kind: missing (required field of Outer)"),
        ([], "train: expected a table of Outer fields, got []"),
    ],
)
def test_bad_values_name_the_path(data: Any, expected: str) -> None:
    assert message(Outer, data, "train") == expected


def test_top_level_names_the_class() -> None:
    assert message(Outer, 3) == "Outer: expected a table of Outer fields, got 3"
    assert message(Outer, {"kind": "a", "x": 1}).startswith("x: unknown field;")


def test_nested_message_that_names_its_field_gets_the_full_path() -> None:
    # the nested config already says "model.value"; the loader puts the rest of the path in front
    assert message(Holder, {"model": {"value": -1}}, "train") == (
        "train.model.value: expected >= 0, got -1"
    )
    assert message(Named, {"value": -1}, "model") == "model.value: expected >= 0, got -1"


def test_not_a_dataclass_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="expected a dataclass type"):
        from_mapping(dict, {})  # type: ignore[type-var]


def test_apply_overrides() -> None:
    base = {"kind": "a", "inner": {"p": 0.5}}
    got = apply_overrides(
        base,
        [
            "inner.p=0.25",
            "inner.size=[10, 20]",
            "root=/data/sysu",
            "flag = true",
            'inner.name="q"',
        ],
    )
    assert got == {
        "kind": "a",
        "inner": {"p": 0.25, "size": [10, 20], "name": "q"},
        "root": "/data/sysu",
        "flag": True,
    }
    assert base == {"kind": "a", "inner": {"p": 0.5}}  # the input is not changed
    assert from_mapping(Outer, got).inner == Inner(size=(10, 20), p=0.25, name="q")
    # an unknown field is found by the loader, with its path
    assert message(Outer, apply_overrides(base, ["inner.q=1"]), "train").startswith(
        "train.inner.q: unknown field"
    )


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("inner.p", "--set 'inner.p': expected FIELD=VALUE, e.g. optim.lr=0.05"),
        ("=3", "--set '=3': expected FIELD=VALUE, e.g. optim.lr=0.05"),
        ("inner..p=3", "--set 'inner..p=3': expected FIELD=VALUE, e.g. optim.lr=0.05"),
        ("kind.x=3", "--set 'kind.x=3': kind is a value, not a table of fields"),
    ],
)
def test_bad_overrides(item: str, expected: str) -> None:
    with pytest.raises(VireidError) as info:
        apply_overrides({"kind": "a"}, [item])
    assert str(info.value) == expected


@pytest.mark.parametrize("assignments", ["kind=b", ["kind=b", 3], None])
def test_overrides_must_be_a_list_of_strings(assignments) -> None:
    # one string would be read character by character ("--set 'k'")
    with pytest.raises(VireidError) as info:
        apply_overrides({"kind": "a"}, assignments)
    assert str(info.value) == (
        f"overrides: expected a list of FIELD=VALUE strings, got {assignments!r}"
    )


def test_config_diff() -> None:
    a = Outer(kind="a")
    b = Outer(kind="b", inner=Inner(p=0.1))
    assert config_diff(a, b) == ["inner.p", "kind"]
    assert config_diff({"x": 1}, {"y": 1}) == ["x", "y"]
    assert config_diff(1, 2) == ["(config)"]


def test_load_toml(tmp_path: Path) -> None:
    good = tmp_path / "p.toml"
    good.write_text('kind = "a"  # [reconstruction]\n[inner]\nsize = [96, 48]\n')
    assert from_mapping(Outer, load_toml(good)).inner.size == (96, 48)
    with pytest.raises(VireidError) as info:
        load_toml(tmp_path / "missing.toml")
    assert str(info.value) == f"{tmp_path / 'missing.toml'}: no such file"
    bad = tmp_path / "bad.toml"
    bad.write_text("kind = \n")
    with pytest.raises(VireidError, match=r"bad\.toml: not a valid TOML file"):
        load_toml(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(VireidError, match=r"bin\.toml: cannot be read as UTF-8 text"):
        load_toml(binary)


@pytest.mark.parametrize("path", [None, 3, ["x"]])
def test_load_toml_names_a_path_that_is_not_one(path):
    with pytest.raises(VireidError) as info:
        load_toml(path)
    assert str(info.value) == f"path: expected a non-empty path (str or os.PathLike), got {path!r}"
