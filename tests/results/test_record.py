"""Run records: content, round trip, atomic writes that never replace another run's record."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace

import numpy as np
import pytest

from reference.errors import VireidError
from reference.results import record as rec
from reference.results.intervals import bootstrap_intervals
from tests.results.fakes import fake_record, fake_scores
from tests.results.shared import ROOT


def test_protocol_of_and_key_use_the_published_vocabulary():
    sysu = fake_scores("sysu", mode="indoor", shots=10, sampling="official")
    p = rec.protocol_of(sysu.settings)
    assert p == {
        "dataset": "sysu", "mode": "indoor", "shots": "10", "draw": "official",
        "direction": "i2v", "rerank": False,
    }  # fmt: skip
    assert rec.protocol_key(p) == "sysu-indoor-10shot-official"
    assert rec.describe(p) == "SYSU-MM01 indoor-search multi-shot official draw"
    r = rec.protocol_of(fake_scores("regdb", direction="t2v", rerank=True).settings)
    assert rec.protocol_key(r) == "regdb-t2v+rerank"
    with pytest.raises(VireidError, match=r"settings\.dataset: expected 'sysu', 'regdb' or 'llcm'"):
        rec.protocol_of({"dataset": "market"})


def test_protocol_result_keeps_the_scores_document_and_the_intervals_of_its_queries():
    scores = fake_scores("sysu", trials=4)
    result = rec.ProtocolResult.from_scores(scores, resamples=100, seed=5)
    assert result.key == "sysu-all-1shot-agw"
    assert result.scores == scores.to_dict()
    want = bootstrap_intervals(scores.queries(), resamples=100, seed=5)
    for figure, iv in want.items():
        assert result.intervals[figure] == iv.to_dict()
        assert result.mean(figure) == pytest.approx(iv.value, abs=1e-12)
        assert result.interval(figure) == (iv.low, iv.high)
    assert result.interval_settings["resamples"] == 100
    assert result.mean("R7") is None and result.interval("R7") is None
    np.testing.assert_allclose(
        result.cmc(), np.mean([t.metrics.cmc for t in scores.trials], axis=0), rtol=1e-12
    )


def test_record_round_trips_through_json_and_has_every_section(tmp_path):
    record = fake_record(fake_scores("sysu"), fake_scores("regdb"))
    path = rec.write_record(tmp_path, record)
    assert path == tmp_path / "run.json"
    data = json.loads(path.read_text())
    assert data["schema"] == "vireid.run/1"
    for key in (
        "run_id", "name", "created", "config", "code", "environment", "dataset", "seeds",
        "model_selection", "training", "protocols",
    ):  # fmt: skip
        assert key in data
    assert set(data["protocols"]) == {"sysu-all-1shot-agw", "regdb-v2t"}
    for key in ("python", "torch", "cuda", "gpu", "numpy"):
        assert key in data["environment"]
    back = rec.read_record(tmp_path)
    assert back.to_dict() == data
    assert rec.read_record(path).run_id == record.run_id


def test_the_same_run_may_update_its_record_another_run_may_not(tmp_path):
    first = fake_record(fake_scores("sysu"))
    rec.write_record(tmp_path, first)
    updated = first.with_protocol(rec.ProtocolResult.from_scores(fake_scores("regdb")))
    rec.write_record(tmp_path, updated)
    assert set(rec.read_record(tmp_path).protocols) == {"sysu-all-1shot-agw", "regdb-v2t"}
    other = fake_record(fake_scores("sysu"))
    with pytest.raises(VireidError) as info:
        rec.write_record(tmp_path, other)
    assert str(info.value) == (
        f"{tmp_path / 'run.json'}: holds the record of another run (run_id {first.run_id!r}); "
        f"not replaced by run {other.run_id!r}: use a new run folder"
    )
    assert rec.read_record(tmp_path).run_id == first.run_id
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ('{"schema": "vireid.run/0"}', "schema: expected 'vireid.run/1', got 'vireid.run/0'"),
        ('{"schema": "vireid.run/1", "created": "x"}', "run_id: expected a non-empty string"),
        (
            '{"schema": "vireid.run/1", "run_id": "a", "created": "x", "protocols": {"k": {}}}',
            "protocols.k.protocol: expected an object",
        ),
        (
            '{"schema": "vireid.run/1", "run_id": "a", "created": "x", "protocols": '
            '{"k": {"protocol": {"dataset": "sysu"}, "scores": {}}}}',
            "protocols.k.protocol: missing ['mode', 'shots', 'draw', 'direction']",
        ),
    ],
)
def test_read_record_bad_files(tmp_path, content, message):
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(VireidError) as info:
        rec.read_record(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'run.json'}: ")
    assert message in str(info.value)


def test_read_record_missing(tmp_path):
    with pytest.raises(VireidError, match="no run record"):
        rec.read_record(tmp_path)


def test_scores_without_per_query_values_give_no_intervals():
    scores = fake_scores("sysu", trials=1)
    trial = replace(scores.trials[0], metrics=replace(scores.trials[0].metrics, queries=None))
    bare = replace(scores, trials=(trial,))
    assert rec.ProtocolResult.from_scores(bare).intervals == {}


def test_code_revision_reads_git(tmp_path):
    got = rec.code_revision(ROOT)
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pytest.skip("git not installed")
    assert got["revision"] == head and isinstance(got["dirty"], bool)
    assert rec.code_revision(tmp_path)["revision"] is None  # not a checkout


def test_dataset_fingerprint_sees_renames_sizes_and_index_content(tmp_path):
    (tmp_path / "cam1" / "0001").mkdir(parents=True)
    (tmp_path / "cam1" / "0001" / "0001.jpg").write_bytes(b"abc")
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "test_id.txt").write_text("1,2")
    first = rec.dataset_fingerprint(tmp_path)
    assert (first["files"], first["bytes"]) == (2, 6)
    assert rec.dataset_fingerprint(tmp_path) == first
    (tmp_path / "exp" / "test_id.txt").write_text("1,3")  # same size, other content
    second = rec.dataset_fingerprint(tmp_path)
    assert second["sha256"] != first["sha256"]
    (tmp_path / "cam1" / "0001" / "0001.jpg").rename(tmp_path / "cam1" / "0001" / "0002.jpg")
    assert rec.dataset_fingerprint(tmp_path)["sha256"] != second["sha256"]
    with pytest.raises(VireidError, match="dataset root is not a folder"):
        rec.dataset_fingerprint(tmp_path / "none")


@pytest.mark.parametrize("run", [None, 3, ["x"]])
def test_read_record_names_a_run_that_is_not_a_path(run):
    with pytest.raises(VireidError) as info:
        rec.read_record(run)
    assert str(info.value) == f"run: expected a non-empty path (str or os.PathLike), got {run!r}"
