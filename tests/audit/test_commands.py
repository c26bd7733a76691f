"""``vireid audit eval|loss|features`` from the command line: reports, exit status, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reference.cli import main

WRONG_EVAL = "tests/audit/wrong_eval.py"
WRONG_LOSS = "tests/audit/wrong_loss.py"


def test_eval_finds_the_kind_writes_both_reports_and_exits_1(tmp_path, capsys):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    status = main(["audit", "eval", f"{WRONG_EVAL}:standard_cmc", "--scale", "0.1",
                   "--markdown", str(md), "--json", str(js)])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 1
    assert "| cmc-kind | **no** |" in out and md.read_text() == out
    data = json.loads(js.read_text())
    assert data["kinds"] == ["cmc-kind"] and data["status"] == "fail"
    assert data["settings"]["adapter"] == "distance"


def test_expected_deviations_exit_0(tmp_path, capsys):
    known = tmp_path / "known.toml"
    known.write_text('[[deviation]]\nkind = "cmc-kind"\nnote = "standard CMC on purpose"\n')
    status = main(["audit", "eval", f"{WRONG_EVAL}:standard_cmc", "--scale", "0.1",
                   "--expect", str(known)])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0 and "PASS" in out and "Known deviation: standard CMC on purpose" in out


def test_a_correct_loss_exits_0(capsys):
    status = main(["audit", "loss", "tri", f"{WRONG_LOSS}:tri_correct", "--scale", "0.1"])
    assert status == 0
    assert "No difference found" in capsys.readouterr().out


def test_features_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(5), 4)
    query = np.tile([True, False, False, False], 5)
    camids = np.tile([1, 2, 1, 2], 5)
    features = rng.normal(size=(20, 4))
    np.savez(tmp_path / "m.npz", features=features, pids=pids, camids=camids, query=query)
    status = main(["audit", "features", str(tmp_path / "m.npz"), "--protocol", "market",
                   "--claimed", "R1=100"])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 1 and "| R1 | 100.00 |" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "eval", "nowhere.py:f"], "error: target: nowhere.py: no such file"),
        (["audit", "eval", f"{WRONG_EVAL}:correct", "--adapter", "distance", "--expect",
          "missing.toml"], "error: missing.toml: no such file"),
        (["audit", "loss", "mml", f"{WRONG_LOSS}:tri_correct"],
         "error: adapter: cannot tell how to call"),
        (["audit", "features", "f.npz", "--protocol", "sysu", "--claimed", "R3=1"],
         "error: --claimed: expected NAME=PERCENT pairs"),
    ],
)  # fmt: skip
def test_errors_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(message)


def test_an_existing_report_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text("{}")
    assert main(["audit", "eval", f"{WRONG_EVAL}:correct", "--json", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == "{}"
