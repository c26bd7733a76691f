"""Checks of a run record's figures as they are read back (spec/results/record.md)."""

from __future__ import annotations

import json

import pytest

from reference.errors import VireidError
from reference.results import record as rec
from reference.results.record_figures import check_figures, check_intervals
from tests.results.fakes import fake_record, fake_scores


def _sysu_record_dict() -> dict:
    return json.loads(fake_record(fake_scores("sysu"), resamples=20).to_json())


FRACTION = "expected a fraction in [0, 1], got"


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (("scores", "summary", "mAP", "mean"), "zz", f"summary.mAP.mean: {FRACTION} 'zz'"),
        (("scores", "summary", "mAP", "mean"), float("nan"), f"summary.mAP.mean: {FRACTION} nan"),
        (("scores", "summary", "R1", "mean"), 47.5, f"summary.R1.mean: {FRACTION} 47.5"),
        (("scores", "summary", "R1", "std"), True, f"summary.R1.std: {FRACTION} True"),
        (
            ("scores", "summary", "num_valid", "mean"),
            -1,
            "summary.num_valid.mean: expected a finite number >= 0, got -1",
        ),
        (("scores", "summary", "mAP"), [1], "summary.mAP: expected an object with 'mean'"),
        (("scores", "summary"), None, "scores.summary: expected an object, got None"),
        (("scores", "trials"), 3, "scores.trials: expected a list, got 3"),
        (("scores", "trials", 0, "cmc", 0), "x", f"scores.trials[0].cmc[0]: {FRACTION} 'x'"),
        (("intervals", "mAP", "low"), "x", f"intervals.mAP.low: {FRACTION} 'x'"),
        (("intervals", "mAP", "low"), 0.99, "intervals.mAP: low 0.99 above high"),
        (("intervals",), [1], "intervals: expected an object, got [1]"),
        ((), 3, ": expected an object"),
    ],
)
def test_read_record_bad_figures_are_named(tmp_path, where, value, message):
    """A hand-edited or truncated record: the field named when it is read, not a traceback (or
    a NaN passing a check) when the comparisons use it."""
    data = _sysu_record_dict()
    (key,) = data["protocols"]
    target = data["protocols"]
    path = (key, *where)
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(VireidError) as info:
        rec.read_record(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'run.json'}: protocols.{key}")
    assert message in str(info.value)


def test_a_record_as_written_passes_and_its_edges_are_accepted():
    data = _sysu_record_dict()
    (entry,) = data["protocols"].values()
    check_figures(entry["scores"], "s")
    check_intervals(entry["intervals"], "i")
    # the bounds themselves are fractions; an interval may be a single point
    check_figures({"summary": {"R1": {"mean": 0, "std": 0.0}, "mAP": {"mean": 1.0}}}, "s")
    check_figures({"summary": {"num_valid": {"mean": 3803, "std": 0}}, "trials": []}, "s")
    check_intervals({"mAP": {"low": 0.5, "high": 0.5}}, "i")
    check_figures({}, "s")  # a figure the record lacks is reported missing by the comparison


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_figures({"summary": {"mAP": {"mean": -0.1}}}, "s"),
         "s.summary.mAP.mean: expected a fraction in [0, 1], got -0.1"),
        (lambda: check_figures({"trials": [{"cmc": "abc"}]}, "s"),
         "s.trials[0].cmc: expected a list, got 'abc'"),
        (lambda: check_figures({"trials": [3]}, "s"), "s.trials[0]: expected an object, got 3"),
        (lambda: check_intervals({"R1": {"low": 0.1}}, "i"),
         "i.R1: expected an object with 'low' and 'high'"),
        (lambda: check_intervals({"R1": {"low": 0.1, "high": float("inf")}}, "i"),
         "i.R1.high: expected a fraction in [0, 1], got inf"),
    ],
)  # fmt: skip
def test_each_bad_figure_is_named(call, message):
    with pytest.raises(VireidError) as info:
        call()
    assert str(info.value) == message
