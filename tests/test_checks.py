"""Tests of the field checks (``src/reference/checks.py``): each returns the value or raises a
:class:`VireidError` naming the field, with a bool never taken for a number."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.checks import (
    METRICS,
    check_bool,
    check_choice,
    check_file,
    check_integer,
    check_known,
    check_margin,
    check_metric,
    check_number,
    check_path,
    check_probability,
    is_integer,
    is_path,
    is_real,
    parse_number,
)
from reference.errors import VireidError


def _raises(message: str):
    return pytest.raises(VireidError, match="^" + re.escape(message) + "$")


def test_is_integer_and_is_real_reject_bool():
    assert is_integer(3) and is_integer(np.int64(3)) and not is_integer(True)
    assert not is_integer(np.int64(3), numpy=False)
    assert not is_integer(3.0)
    assert is_real(3) and is_real(2.5) and is_real(np.float64(2.5)) and not is_real(False)
    assert not is_real("1")


@given(st.integers(-50, 50), st.integers(-50, 50), st.integers(-50, 50))
def test_check_integer_accepts_exactly_the_range(value, low, high):
    if low <= value <= high:
        got = check_integer(np.int32(value), "n", low=low, high=high)
        assert got == value and type(got) is int
    else:
        with _raises(f"n: expected an integer in {low}..{high}, got {value!r}"):
            check_integer(value, "n", low=low, high=high)


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (True, {}, "n: expected an integer, got True"),
        (1.0, {}, "n: expected an integer, got 1.0"),
        (0, {"low": 1}, "n: expected an integer >= 1, got 0"),
        (np.int64(2), {"numpy": False}, f"n: expected an integer, got {np.int64(2)!r}"),
        (-1, {"low": 0, "expected": "a count"}, "n: expected a count, got -1"),
    ],
)
def test_check_integer_messages(value, kwargs, message):
    with _raises(message):
        check_integer(value, "n", **kwargs)


@pytest.mark.parametrize("value", [0.0, 0, 2.5, 1e300])
def test_check_number_accepts_finite_values_above_low(value):
    got = check_number(value, "w", low=0.0)
    assert got == value and type(got) is float


@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf, -math.inf, True, "1", None])
def test_check_number_rejects(value):
    with _raises(f"w: expected a finite number >= 0, got {value!r}"):
        check_number(value, "w", low=0.0)


def test_check_number_bounds():
    assert check_number(1.0, "p", low=0.0, high=1.0, closed=True) == 1.0
    with _raises("p: expected x, got 1.0"):
        check_number(1.0, "p", low=0.0, high=1.0, expected="x")
    assert check_probability(0, "p") == 0.0
    with _raises("p: expected a probability in [0, 1], got 1.5"):
        check_probability(1.5, "p")
    assert check_margin(0.3) == 0.3
    with _raises("margin: expected a finite number >= 0, got nan"):
        check_margin(math.nan)


def test_check_bool():
    assert check_bool(False, "flag") is False
    with _raises("flag: expected True or False, got 1"):
        check_bool(1, "flag")
    with _raises("model.x: expected true or false, got 'yes'"):
        check_bool("yes", "model.x", expected="true or false")


def test_check_choice():
    assert check_choice("a", "f", ("a", "b")) == "a"
    with _raises("f: expected one of 'a', 'b', got 'c'"):
        check_choice("c", "f", ("a", "b"))
    # True == 1, but a bool is not a numeric choice
    assert check_choice(1, "s", (1, 10)) == 1
    with _raises("s: expected 1 or 10, got True"):
        check_choice(True, "s", (1, 10), expected="1 or 10")
    assert check_choice(True, "b", (True, None)) is True
    # 1.0 == 1 too, but a float is not an integer choice (NumPy's integers are)
    with _raises("model.last_stride: expected 1 or 2, got 1.0"):
        check_choice(1.0, "model.last_stride", (1, 2), expected="1 or 2")
    with pytest.raises(VireidError, match=r"^s: expected 1 or 10, got (np\.float32\()?10\.0\)?$"):
        check_choice(np.float32(10), "s", (1, 10), expected="1 or 10")
    assert check_choice(np.int64(10), "s", (1, 10)) == 10
    assert check_choice(0.5, "p", (0.5, 1)) == 0.5
    # choices held as a dict's keys: an unhashable value is a wrong choice, not a TypeError
    with _raises("d: expected one of 'sysu', 'regdb', got ['sysu']"):
        check_choice(["sysu"], "d", {"sysu": 1, "regdb": 2})
    with _raises("d: unknown dataset {}; expected one of 'sysu'"):
        check_known({}, "d", {"sysu": 1}, "dataset")
    assert check_choice("sysu", "d", {"sysu": 1, "regdb": 2}) == "sysu"


def test_check_path():
    assert check_path("a/b.npz", "path") == Path("a/b.npz")
    assert check_path(Path("x"), "root") == Path("x")
    for value in (None, 3, ["a"], b"a/b", {"path": "x"}, ""):
        with _raises(f"root: expected a non-empty path (str or os.PathLike), got {value!r}"):
            check_path(value, "root")
        assert not is_path(value)
    assert is_path("a") and is_path(Path("a"))


def test_check_known_and_metric():
    assert check_known("x", "f", ("x",), "thing") == "x"
    with _raises("f: unknown thing 'y'; expected one of 'x', 'z'"):
        check_known("y", "f", ("x", "z"), "thing")
    for m in METRICS:
        assert check_metric(m) == m
    with _raises("metric: expected 'euclidean' or 'cosine', got 'l1'"):
        check_metric("l1")


@given(st.floats(allow_nan=False))
def test_parse_number_reads_what_float_writes(value):
    assert parse_number(repr(value), "f") == value
    assert parse_number(f"  {value}\n", "f") == value


@pytest.mark.parametrize("text", ["", "x", "1,5", "5O.0", None, "1e"])
def test_parse_number_names_the_field_and_the_text(text):
    with _raises(f"f: expected a number in percent, got {text!r}"):
        parse_number(text, "f", expected="a number in percent")
    with _raises(f"g: expected a number, got {text!r}"):
        parse_number(text, "g")


def test_check_file(tmp_path):
    words = {"expected": "an .npz features file", "missing": "features file not found"}
    (tmp_path / "f.npz").write_bytes(b"")
    assert check_file(str(tmp_path / "f.npz"), "path", **words) == tmp_path / "f.npz"
    with pytest.raises(VireidError) as info:
        check_file(tmp_path, "path", **words)
    assert str(info.value) == f"{tmp_path}: is a folder; expected an .npz features file"
    with pytest.raises(VireidError) as info:
        check_file(tmp_path / "absent", "path", **words)
    assert str(info.value) == f"{tmp_path / 'absent'}: features file not found"
    with pytest.raises(VireidError) as info:
        check_file(None, "path", **words)
    assert str(info.value) == "path: expected a non-empty path (str or os.PathLike), got None"
