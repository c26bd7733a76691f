"""Checks of hand-made runs against published tables the tests write: every verdict, refusals."""

from __future__ import annotations

import pandas as pd
import pytest

from reference.errors import VireidError
from reference.results import compare, published
from reference.results.record import ProtocolResult, RunRecord
from tests.results.fakes import fake_record, fake_scores


def table(*rows: dict) -> pd.DataFrame:
    base = dict(
        method="M", source="t", venue="", dataset="sysu", mode="all", shots="1", draw="agw",
        direction="i2v", note="",
    )  # fmt: skip
    frame = pd.DataFrame([{**base, **r} for r in rows])
    frame["value"] = frame["value"].map(str)
    return published.validate(frame[list(published.COLUMNS)], "t.csv")


@pytest.fixture(scope="module")
def run() -> RunRecord:
    return fake_record(fake_scores("sysu", r1=0.6, m_ap=0.55, trials=3), resamples=400)


def test_each_verdict(run):
    result = run.protocols["sysu-all-1shot-agw"]
    r1, (lo, hi) = 100 * result.mean("R1"), [100 * v for v in result.interval("R1")]
    m_ap = 100 * result.mean("mAP")
    assert hi - r1 > 2.0 and r1 - lo > 2.0  # the interval is wider than the tolerance
    rows = table(
        {"metric": "R1", "value": round(r1 + 1.0, 2)},  # 1 point short: within
        {"metric": "mAP", "value": round(m_ap - 5.0, 2)},  # 5 points better: above
        {"metric": "R1", "value": round((r1 + 1.6 + hi) / 2, 2), "method": "N"},
        {"metric": "R1", "value": round(hi + 1.0, 2), "method": "S"},
    )
    got = compare.check(run, rows[rows["method"] == "M"], "t:M")
    assert [c.verdict for c in got.comparisons] == ["within tolerance", "above"]
    assert got.passed
    assert got.comparisons[0].delta == pytest.approx(r1 - round(r1 + 1.0, 2))
    assert got.comparisons[0].interval == pytest.approx((lo, hi))
    inside = compare.check(run, rows[rows["method"] == "N"], "t:N")
    assert [c.verdict for c in inside.comparisons] == ["inside interval"] and inside.passed
    short = compare.check(run, rows[rows["method"] == "S"], "t:S")
    assert [c.verdict for c in short.comparisons] == ["shortfall"] and not short.passed
    text = compare.check_table(short)
    assert "shortfall" in text and f"{hi + 1.0:.2f}" in text
    assert compare.summary_line(short, "r").startswith("FAIL: r against t:S: 1 shortfall")


def test_tolerance_per_figure(run):
    r1 = 100 * run.protocols["sysu-all-1shot-agw"].mean("R1")
    rows = table({"metric": "R1", "value": round(r1 - 2.0, 2)})
    assert compare.check(run, rows, "t:M").comparisons[0].verdict == "above"
    loose = compare.check(run, rows, "t:M", {"R1": 2.5})
    assert loose.comparisons[0].verdict == "within tolerance"
    assert loose.comparisons[0].tolerance == 2.5


def test_a_missing_figure_is_named_and_fails(run):
    result = run.protocols["sysu-all-1shot-agw"]
    summary = {k: v for k, v in result.scores["summary"].items() if k != "mINP"}
    bare = ProtocolResult(result.key, result.protocol, {**result.scores, "summary": summary}, {})
    record = RunRecord(run_id="x", created="now", protocols={bare.key: bare})
    got = compare.check(record, table({"metric": "mINP", "value": 40}), "t:M")
    assert got.comparisons[0].verdict == "missing" and not got.passed
    assert "missing: the run has no mINP" in compare.check_table(got)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "indoor"}, "mode differs (run all, published indoor)"),
        ({"shots": "10"}, "shots differs (run 1, published 10)"),
        ({"draw": "official"}, "draw differs (run agw, published official)"),
        ({"dataset": "regdb", "mode": "", "shots": "", "draw": "", "direction": "v2t"},
         "dataset differs (run sysu, published regdb)"),
        ({"note": "re-ranked"}, "rerank differs (run not re-ranked, published re-ranked)"),
    ],
)  # fmt: skip
def test_across_protocols_is_refused_naming_the_setting(run, change, message):
    rows = table({"metric": "R1", "value": 50, **change})
    with pytest.raises(VireidError) as info:
        compare.check(run, rows, "t:M", run_name="r1")
    text = str(info.value)
    assert text.startswith("cannot compare r1 with t:M: no protocol in common")
    assert "nearest run protocol sysu-all-1shot-agw" in text and message in text


def test_a_reranked_run_is_never_compared_with_a_plain_row():
    reranked = fake_record(fake_scores("regdb", rerank=True))
    rows = table({"metric": "R1", "value": 50, "dataset": "regdb", "mode": "", "shots": "",
                  "draw": "", "direction": "v2t"})  # fmt: skip
    with pytest.raises(VireidError, match=r"rerank differs \(run re-ranked, published not"):
        compare.check(reranked, rows, "t:M")


def test_unstated_settings_prefer_single_shot_agw_and_say_so():
    run = fake_record(
        fake_scores("sysu", sampling="official", seed=1),
        fake_scores("sysu", shots=10, seed=2),
        fake_scores("sysu", seed=3),
    )
    rows = table({"metric": "R1", "value": 50, "shots": "unstated", "draw": "unstated"})
    got = compare.check(run, rows, "t:M")
    assert got.comparisons[0].protocol == "sysu-all-1shot-agw"
    assert got.notes == (
        "SYSU-MM01 all-search shots unstated draw unstated: shots and draw not stated by the "
        "source; compared with the run's sysu-all-1shot-agw",
    )


def test_groups_the_run_did_not_score_are_noted_not_failed(run):
    rows = table({"metric": "R1", "value": 50}, {"metric": "R1", "value": 50, "mode": "indoor"})
    got = compare.check(run, rows, "t:M", run_name="r")
    assert len(got.comparisons) == 1
    assert got.notes[0].startswith("not scored by r: SYSU-MM01 indoor-search single-shot agw draw")


def test_against_the_real_tables(run):
    got = compare.check(run, published.select("method_b:BDF"), "method_b:BDF")
    assert {c.metric for c in got.comparisons} == {"R1", "R10", "R20", "mAP"}
    assert {c.protocol for c in got.comparisons} == {"sysu-all-1shot-agw"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("R1", "--tolerance: expected FIGURE=POINTS[,...] with FIGURE in ['R1'"),
        ("R2=1", "got 'R2=1'"),
        ("mAP=x", "--tolerance: mAP: expected a number, got 'x'"),
        ("mAP=-1", "--tolerance: mAP: expected a number >= 0, got '-1'"),
    ],
)
def test_parse_tolerance(text, message):
    assert compare.parse_tolerance("R1=1.5, mAP=2") == {"R1": 1.5, "mAP": 2.0}
    assert compare.parse_tolerance(None) == {}
    with pytest.raises(VireidError) as info:
        compare.parse_tolerance(text)
    assert message in str(info.value)
