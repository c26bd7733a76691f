"""The figures a run record holds, checked as they are read back.

Spec: ``spec/results/record.md`` (the bullet on reading a record back). A ``run.json`` is a file
people can edit or cut short; the comparisons (``vireid results check``) and the tables read its
figures as numbers. :func:`check_figures` and :func:`check_intervals` refuse, naming the field,
a figure that is not one: a summary ``mean`` / ``std`` outside [0, 1] (``num_valid``, a count:
below 0), NaN or a string; a trial's CMC that is not a list of fractions; an interval whose
``low`` and ``high`` are not fractions in that order. Before, such a record crashed the
comparison, or a NaN passed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reference.checks import check_number
from reference.errors import VireidError
from reference.evaluation.scores import FIGURES

__all__ = ["check_figures", "check_intervals"]


def _fraction(value: object, field: str) -> float:
    return check_number(
        value, field, low=0.0, high=1.0, closed=True, expected="a fraction in [0, 1]"
    )


def _count(value: object, field: str) -> float:
    return check_number(value, field, low=0.0, expected="a finite number >= 0")


def check_figures(scores: Mapping[str, Any], at: str) -> None:
    """The figures a record's scores document gives the comparisons and tables (``summary``:
    each figure's ``mean`` and ``std``; each trial's ``cmc``) are fractions in [0, 1], else an
    error naming the field (``at``: where the document sits): a hand-edited or truncated record
    must not pass or fail a check on a figure that is not a number."""
    summary = scores.get("summary", {})
    if not isinstance(summary, Mapping):
        raise VireidError(f"{at}.summary: expected an object, got {summary!r}")
    for figure, entry in summary.items():
        if not isinstance(entry, Mapping) or "mean" not in entry:
            raise VireidError(f"{at}.summary.{figure}: expected an object with 'mean'")
        # the rank and AP figures are fractions; num_valid counts queries
        check = _fraction if figure in FIGURES else _count
        check(entry["mean"], f"{at}.summary.{figure}.mean")
        if "std" in entry:
            check(entry["std"], f"{at}.summary.{figure}.std")
    trials = scores.get("trials", [])
    if not isinstance(trials, list):
        raise VireidError(f"{at}.trials: expected a list, got {trials!r}")
    for t, trial in enumerate(trials):
        if not isinstance(trial, Mapping):
            raise VireidError(f"{at}.trials[{t}]: expected an object, got {trial!r}")
        cmc = trial.get("cmc", [])
        if not isinstance(cmc, list):
            raise VireidError(f"{at}.trials[{t}].cmc: expected a list, got {cmc!r}")
        for r, value in enumerate(cmc):
            _fraction(value, f"{at}.trials[{t}].cmc[{r}]")


def check_intervals(intervals: object, at: str) -> None:
    """Each figure's interval an object whose ``low`` <= ``high`` are fractions, else an error
    naming the field."""
    if not isinstance(intervals, Mapping):
        raise VireidError(f"{at}: expected an object, got {intervals!r}")
    for figure, entry in intervals.items():
        if not isinstance(entry, Mapping) or not {"low", "high"} <= set(entry):
            raise VireidError(f"{at}.{figure}: expected an object with 'low' and 'high'")
        low = _fraction(entry["low"], f"{at}.{figure}.low")
        high = _fraction(entry["high"], f"{at}.{figure}.high")
        if low > high:
            raise VireidError(f"{at}.{figure}: low {low!r} above high {high!r}")
