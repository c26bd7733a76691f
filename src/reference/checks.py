"""Field checks: the one home of the argument validation every area repeats.

Each ``check_*`` returns the (normalised) value or raises :class:`VireidError` whose message names
the field and what was expected, in the form ``"<field>: expected <what>, got <value!r>"``. The
``expected`` argument carries the wording a caller's users see (the tests pin those messages), so
one check serves every area without changing what it prints.

A ``bool`` is never a number here (``True == 1`` in Python): the integer and number checks reject
it, and a choice among numbers rejects it too. For the same reason a float (``1.0 == 1``) is not
a choice among integers.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Collection
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np

from reference.errors import VireidError

__all__ = [
    "METRICS",
    "Metric",
    "check_bool",
    "check_choice",
    "check_file",
    "check_integer",
    "check_known",
    "check_margin",
    "check_metric",
    "check_number",
    "check_path",
    "check_probability",
    "is_integer",
    "is_one_of",
    "is_path",
    "is_real",
    "parse_number",
]

T = TypeVar("T")

Metric = Literal["euclidean", "cosine"]
#: The distances between feature vectors the project computes (evaluation and losses).
METRICS: tuple[str, ...] = ("euclidean", "cosine")


def fail(field: str, expected: str, value: object) -> VireidError:
    """The error ``"<field>: expected <expected>, got <value!r>"`` (to raise)."""
    return VireidError(f"{field}: expected {expected}, got {value!r}")


def is_integer(value: object, *, numpy: bool = True) -> bool:
    """``value`` is an int (or, with ``numpy``, a numpy integer) and not a bool."""
    kinds = (int, np.integer) if numpy else int
    return isinstance(value, kinds) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """``value`` is an int or a float (numpy floats included) and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_integer(
    value: object,
    field: str,
    *,
    low: int | None = None,
    high: int | None = None,
    expected: str | None = None,
    numpy: bool = True,
) -> int:
    """``int(value)`` if it is an integer with ``low <= value <= high`` (bounds optional).

    ``expected`` defaults to ``"an integer in low..high"`` / ``"an integer >= low"`` /
    ``"an integer"``; ``numpy=False`` rejects numpy integers.
    """
    ok = (
        is_integer(value, numpy=numpy)
        and (low is None or value >= low)  # type: ignore[operator]
        and (high is None or value <= high)  # type: ignore[operator]
    )
    if not ok:
        if expected is None:
            if low is not None and high is not None:
                expected = f"an integer in {low}..{high}"
            elif low is not None:
                expected = f"an integer >= {low}"
            else:
                expected = "an integer"
        raise fail(field, expected, value)
    return int(value)  # type: ignore[call-overload]


def check_number(
    value: object,
    field: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    closed: bool = False,
    expected: str | None = None,
) -> float:
    """``float(value)`` if it is a finite int/float with ``low <= value < high``.

    ``closed=True`` allows ``value == high``. ``expected`` defaults to ``"a finite number >= low"``.
    NaN and the infinities are rejected whatever the bounds.
    """
    ok = (
        is_real(value)
        and math.isfinite(value)  # type: ignore[arg-type]
        and low <= value  # type: ignore[operator]
        and (value <= high if closed else value < high)  # type: ignore[operator]
    )
    if not ok:
        raise fail(field, expected or f"a finite number >= {low:g}", value)
    return float(value)  # type: ignore[arg-type]


def parse_number(text: str, field: str, *, expected: str = "a number") -> float:
    """The number a user wrote (``float(text)``: a command-line value, a table cell), else
    ``"<field>: expected <expected>, got <text!r>"``; the caller checks its range."""
    try:
        return float(text)
    except (TypeError, ValueError):
        raise fail(field, expected, text) from None


def check_probability(value: object, field: str) -> float:
    """``float(value)`` if it is a number in [0, 1]."""
    return check_number(
        value, field, low=0.0, high=1.0, closed=True, expected="a probability in [0, 1]"
    )


def check_margin(margin: object, field: str = "margin") -> float:
    """A triplet margin: a finite number >= 0."""
    return check_number(margin, field, low=0.0, expected="a finite number >= 0")


def check_bool(value: object, field: str, *, expected: str = "True or False") -> bool:
    """``value`` if it is a bool (``expected`` is the wording: a config file says true/false)."""
    if not isinstance(value, bool):
        raise fail(field, expected, value)
    return value


def check_path(value: object, field: str) -> Path:
    """``value`` as a :class:`~pathlib.Path` if it is a ``str`` or an ``os.PathLike`` (a file or
    folder a reader opens or a writer writes); anything else (``None``, a number, a list,
    ``bytes``) is an error naming ``field``, not Python's ``TypeError`` from inside pathlib, and
    so is the empty string, which ``Path`` reads as the working folder."""
    if not is_path(value):
        raise fail(field, "a non-empty path (str or os.PathLike)", value)
    return Path(value)  # type: ignore[arg-type]


def check_file(value: object, field: str, *, expected: str, missing: str) -> Path:
    """``value`` as the :class:`~pathlib.Path` of an existing file (:func:`check_path` first):
    an existing folder is ``<path>: is a folder; expected <expected>`` (a "not found" would
    mislead: the path exists), a path with nothing there ``<path>: <missing>`` (the reader's own
    words)."""
    path = check_path(value, field)
    if path.is_dir():
        raise VireidError(f"{path}: is a folder; expected {expected}")
    if not path.is_file():
        raise VireidError(f"{path}: {missing}")
    return path


def is_path(value: object) -> bool:
    """``value`` is a non-empty ``str`` or an ``os.PathLike`` of one (``Path("")`` would be the
    working folder: read there, an empty value would mislead)."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    text = os.fspath(value)
    return isinstance(text, str) and text != ""


def check_choice(
    value: T, field: str, choices: Collection[object], *, expected: str | None = None
) -> T:
    """``value`` if it is one of ``choices`` (a bool only where a choice is a bool, a
    non-integral number such as ``1.0`` only where a choice is one: ``1.0 == 1`` in Python, but
    a float given for an integer setting is a wrong type, not that setting).

    ``expected`` defaults to ``"one of 'a', 'b'"``.
    """
    bool_ok = any(isinstance(c, bool) for c in choices)
    fraction_ok = any(_non_integral(c) for c in choices)
    if (
        (isinstance(value, bool) and not bool_ok)
        or (_non_integral(value) and not fraction_ok)
        or not is_one_of(value, choices)
    ):
        raise fail(field, expected or "one of " + ", ".join(map(repr, choices)), value)
    return value


def is_one_of(value: object, choices: Collection[object]) -> bool:
    """``value in choices``, False (not a ``TypeError``) for a value that cannot be looked up in
    hashed choices (a list given where a dict's keys are the choices)."""
    try:
        return value in choices
    except TypeError:
        return False


def _non_integral(value: object) -> bool:
    """A real number that is not an integer type (``float``, ``np.float32`` ...)."""
    return isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)


def check_known(value: T, field: str, choices: Collection[object], what: str) -> T:
    """``value`` if it is one of ``choices``, else ``"<field>: unknown <what> <value!r>;
    expected one of 'a', 'b'"``."""
    if not is_one_of(value, choices):
        raise VireidError(
            f"{field}: unknown {what} {value!r}; expected one of "
            + ", ".join(repr(c) for c in choices)
        )
    return value


def check_metric(metric: object) -> str:
    """``metric`` if it is one of :data:`METRICS` (the losses' wording)."""
    return check_choice(metric, "metric", METRICS, expected="'euclidean' or 'cosine'")  # type: ignore[return-value]
