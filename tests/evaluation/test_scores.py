"""Scores (spec/evaluation/scores.md): mean and spread, JSON keys, the table, atomic writes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.metrics import RankMetrics
from reference.evaluation.scores import FIGURES, RANKS, Scores, TrialScores


def metrics(r1: float, m_ap: float, m_inp: float, valid: int = 8, n: int = 10) -> RankMetrics:
    cmc = np.minimum(1.0, r1 + np.arange(20) * 0.01)
    return RankMetrics(
        cmc=cmc,
        mAP=m_ap,
        mINP=m_inp,
        num_valid=valid,
        num_query=n,
        max_rank=20,
        exclusion="sysu",
        cmc_kind="identity",
    )


def two_trials() -> Scores:
    return Scores(
        protocol="sysu",
        settings={"mode": "all", "trials": 2},
        trials=(
            TrialScores(0, metrics(0.5, 0.4, 0.2), num_gallery=30),
            TrialScores(1, metrics(0.7, 0.6, 0.3), num_gallery=31),
        ),
        title="demo",
    )


@given(values=st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=12))
def test_mean_and_population_std(values):
    scores = Scores(
        protocol="regdb",
        settings={},
        trials=tuple(TrialScores(t, metrics(v, v, v), 5) for t, v in enumerate(values)),
    )
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    assert scores.mean("R1") == pytest.approx(mean, abs=1e-12)
    assert scores.std("mAP") == pytest.approx(std, abs=1e-12)
    assert scores.mean("num_valid") == 8.0 and scores.std("num_valid") == 0.0
    if len(values) == 1:
        assert scores.std("R1") == 0.0


def test_figures_read_the_cmc_at_ranks_1_5_10_20():
    t = TrialScores(0, metrics(0.5, 0.4, 0.2), 3)
    assert [t.figure(n) for n in ("R1", "R5", "R10", "R20")] == pytest.approx(
        [0.5, 0.54, 0.59, 0.69]
    )
    assert (t.figure("mAP"), t.figure("mINP"), t.figure("num_valid")) == (0.4, 0.2, 8.0)
    with pytest.raises(VireidError) as info:
        t.figure("R0")
    assert str(info.value) == "rank: expected an integer 1 <= r <= 20, got 0"
    with pytest.raises(VireidError) as info:
        t.figure("top1")
    assert str(info.value) == (
        "figure: unknown figure 'top1'; expected one of ('R1', 'R5', 'R10', 'R20', 'mAP', 'mINP')"
    )


def test_json_document_keys_and_values():
    doc = json.loads(two_trials().to_json())
    assert list(doc) == ["schema", "protocol", "title", "settings", "summary", "trials"]
    assert doc["schema"] == "vireid.scores/1"
    assert doc["settings"] == {"mode": "all", "trials": 2}
    assert list(doc["summary"]) == ["R1", "R5", "R10", "R20", "mAP", "mINP", "num_valid"]
    assert doc["summary"]["R1"]["mean"] == pytest.approx(0.6)
    assert doc["summary"]["R1"]["std"] == pytest.approx(0.1)
    assert doc["summary"]["num_valid"] == {"mean": 8.0, "std": 0.0}
    first = doc["trials"][0]
    assert list(first) == [
        "trial", "R1", "R5", "R10", "R20", "mAP", "mINP", "cmc", "num_valid", "num_query",
        "num_gallery",
    ]  # fmt: skip
    assert (first["trial"], first["num_gallery"], first["num_query"]) == (0, 30, 10)
    assert first["cmc"][0] == 0.5 and len(first["cmc"]) == 20


def test_table_layout():
    rule = "-" * 114
    assert two_trials().table().splitlines() == [
        "demo",
        "trial          R1             R5            R10            R20            mAP"
        "           mINP         valid queries",
        rule,
        "0           50.00          54.00          59.00          69.00          40.00"
        "          20.00                  8/10",
        "1           70.00          74.00          79.00          89.00          60.00"
        "          30.00                  8/10",
        rule,
        "mean ± std  60.00 ± 10.00  64.00 ± 10.00  69.00 ± 10.00  79.00 ± 10.00  50.00 ± 10.00"
        "  25.00 ± 5.00           8/10",
    ]


def test_one_trial_table_still_rules_off_the_mean_row():
    scores = Scores("sysu", {}, (TrialScores(3, metrics(0.5, 0.4, 0.2), 30),))
    lines = scores.table().splitlines()
    assert [line[:10] for line in lines] == [
        "trial     ",
        "-" * 10,
        "3         ",
        "-" * 10,
        "mean ± std",
    ]
    assert lines[1] == lines[3] == "-" * len(lines[0])
    assert lines[4].startswith("mean ± std  50.00 ± 0.00")


def test_rank_figures_are_the_ranks_constant():
    # the table's and summary's CMC figures are R<k> for k in RANKS = (1, 5, 10, 20)
    assert RANKS == (1, 5, 10, 20)
    assert [f"R{k}" for k in RANKS] == [n for n in FIGURES if n.startswith("R")]
    trial = two_trials().trials[0]
    assert [trial.figure(f"R{k}") for k in RANKS] == [trial.metrics.cmc[k - 1] for k in RANKS]


def test_table_shows_a_varying_valid_count_as_mean_and_std():
    scores = Scores(
        "sysu",
        {},
        (
            TrialScores(0, metrics(0.5, 0.4, 0.2, valid=6), 3),
            TrialScores(1, metrics(0.5, 0.4, 0.2), 3),
        ),
    )
    assert scores.table().splitlines()[-1].endswith("7.0 ± 1.0")


def test_write_json_is_atomic_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "s.json"
    two_trials().write_json(path)
    with pytest.raises(VireidError) as info:
        two_trials().write_json(path)
    assert "file exists" in str(info.value)
    two_trials().write_json(path, overwrite=True)
    assert json.loads(path.read_text())["protocol"] == "sysu"
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_no_trial_is_an_error():
    with pytest.raises(VireidError) as info:
        Scores("sysu", {}, ())
    assert str(info.value) == "trials: expected at least one trial"


def test_per_query_values_are_exposed_per_trial():
    from reference.evaluation.metrics import rank_metrics

    d = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.5, 0.6, 0.7]])
    runs = [
        rank_metrics(d, [1, 2, 9], [1, 2, 2], [3, 6, 6], [1, 1, 4], max_rank=3),
        rank_metrics(d[::-1].copy(), [9, 2, 1], [1, 2, 2], [6, 6, 3], [1, 1, 4], max_rank=3),
    ]
    scores = Scores("sysu", {}, tuple(TrialScores(t, m, 3) for t, m in enumerate(runs)))
    first, second = scores.queries()
    assert first is scores.trials[0].queries is runs[0].queries
    assert first.pids.tolist() == [1, 2, 9] and second.pids.tolist() == [9, 2, 1]
    assert first.valid.tolist() == [True, True, False]
    # query 0 finds item 0 first, query 1 item 2 (both its identity), query 2 has no match
    assert first.first_hit.tolist() == [1, 1, 0]
    assert np.isnan(first.ap[2]) and first.ap[0] == 1.0
    # hand-built metrics (e.g. from a stored document) carry none
    assert two_trials().queries() == (None, None)


def test_scores_are_frozen():
    import dataclasses

    scores = two_trials()
    with pytest.raises(dataclasses.FrozenInstanceError):
        scores.title = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        scores.trials[0].num_gallery = 3  # type: ignore[misc]


def test_a_rank_figure_needs_digits_after_the_r():
    t = TrialScores(0, metrics(0.5, 0.4, 0.2), 3)
    for name in ("Rx", "55"):
        with pytest.raises(VireidError) as info:
            t.figure(name)
        assert str(info.value).startswith(f"figure: unknown figure {name!r}")


def test_json_is_indented_by_two_and_refuses_nan():
    text = two_trials().to_json()
    assert text.splitlines()[:2] == ["{", '  "schema": "vireid.scores/1",']
    broken = Scores("regdb", {}, (TrialScores(0, metrics(0.5, float("nan"), 0.2), 5),))
    with pytest.raises(ValueError, match="not JSON compliant"):
        broken.to_json()
