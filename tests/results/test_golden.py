"""Regression against ourselves: the golden SynthVI runs of every method, and the comparison."""

from __future__ import annotations

import copy
import os
import subprocess
import time
from pathlib import Path

import pytest

from reference.errors import VireidError
from reference.results import golden


def test_the_golden_record_covers_every_method():
    data = golden.read_golden()
    assert set(data["methods"]) == set(golden.METHODS)
    for figures in data["methods"].values():
        assert set(figures["figure"]) == {"R1", "R10", "mAP", "mINP"}
        assert figures["loss"] and set(figures["feature"]) == {"mean", "std"}
    assert golden.compare_golden(data, data) == []


def test_compare_golden_names_every_figure_outside_the_tolerance():
    data = golden.read_golden()
    got = copy.deepcopy(data)
    loss = next(iter(got["methods"]["method_a"]["loss"]))
    got["methods"]["method_a"]["loss"][loss] *= 1 + 5e-4  # inside rel 1e-3
    assert golden.compare_golden(got, data) == []
    got["methods"]["method_a"]["loss"][loss] *= 1.01
    got["methods"]["baseline"]["figure"]["R1"] += 0.002
    del got["methods"]["method_b"]
    problems = golden.compare_golden(got, data)
    assert problems[0].startswith("baseline figure R1: ")
    assert problems[0].endswith("(tolerance rel 0, abs 0.001)")
    assert problems[1].startswith(f"method_a loss {loss}: ")
    assert problems[2] == "method_b: missing from the run"


def test_runs_of_other_settings_are_not_compared():
    data = golden.read_golden()
    assert data["settings"]["depth"] == golden.DEPTH == 18
    got = copy.deepcopy(data)
    got["settings"]["depth"] = 50
    got["methods"]["baseline"]["figure"]["R1"] += 0.5  # not reported: the settings come first
    (problem,) = golden.compare_golden(got, data)
    assert problem.startswith('settings: the run\'s are {"depth": 50, ')
    assert '}, the golden record\'s {"depth": 18, ' in problem
    assert problem.endswith(
        "a deliberate change updates the record (vireid results golden --update)"
    )


def test_read_golden_errors(tmp_path):
    with pytest.raises(VireidError, match="no golden record"):
        golden.read_golden(tmp_path / "none.json")
    (tmp_path / "g.json").write_text('{"schema": "x"}')
    with pytest.raises(VireidError, match=r"schema: expected 'vireid\.golden/1', got 'x'"):
        golden.read_golden(tmp_path / "g.json")


@pytest.mark.regression
def test_regression_every_method_reproduces_the_golden_figures(tmp_path):
    start = time.perf_counter()
    got = golden.run_golden(tmp_path)
    problems = golden.compare_golden(got, golden.read_golden())
    assert not problems, (
        "training now produces other figures than results/golden/golden.json; if the change is "
        "deliberate, run `vireid results golden --update` and commit the file with "
        "the reason:\n" + "\n".join(problems)
    )
    assert time.perf_counter() - start < 600


def test_a_failing_child_is_an_error_with_what_it_wrote(tmp_path, monkeypatch):
    seen = {}

    def failing(command, env, **kwargs):
        seen.update(command=command, env=env)
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="Traceback ...\nboom\n")

    monkeypatch.setattr(golden.subprocess, "run", failing)
    with pytest.raises(VireidError) as info:
        golden.run_golden(tmp_path)
    assert str(info.value) == "golden run: the child process failed:\nTraceback ...\nboom"
    # the child: this package's module, with the kernels pinned and this package importable
    assert seen["command"][1:4] == ["-m", "reference.results.golden", str(tmp_path)]
    assert {k: seen["env"][k] for k in golden.KERNEL_ENV} == golden.KERNEL_ENV
    source = str(Path(golden.__file__).resolve().parents[2])
    assert seen["env"]["PYTHONPATH"].split(os.pathsep)[0] == source


def test_golden_command_compares_and_updates(tmp_path, monkeypatch, capsys):
    from reference.cli import main

    record = golden.read_golden()
    for figures in record["methods"].values():
        figures["seconds"] = 1.0
    monkeypatch.setattr(golden, "run_golden", lambda progress: copy.deepcopy(record))
    assert main(["results", "golden"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("baseline   R1 ")
    assert out.rstrip().endswith("regression: none")
    record["methods"]["method_b"]["figure"]["mAP"] += 0.01
    assert main(["results", "golden"]) == 1
    assert "method_b figure mAP: " in capsys.readouterr().out
    monkeypatch.setenv("VIREID_GOLDEN", str(tmp_path / "g.json"))
    assert main(["results", "golden", "--update"]) == 0
    assert (
        golden.read_golden(tmp_path / "g.json")["methods"]["method_b"]
        == record["methods"]["method_b"]
    )


def test_golden_command_without_a_record_fails_before_training(tmp_path, monkeypatch, capsys):
    from reference.cli import main

    def never(progress):
        raise AssertionError("trained before finding the record")

    monkeypatch.setattr(golden, "run_golden", never)
    monkeypatch.setenv("VIREID_GOLDEN", str(tmp_path / "none.json"))
    assert main(["results", "golden"]) == 2
    assert "none.json: no golden record; write it with vireid results golden --update" in (
        capsys.readouterr().err
    )


def test_read_golden_names_a_path_that_is_not_one():
    with pytest.raises(VireidError) as info:
        golden.read_golden(3)
    assert str(info.value) == "path: expected a non-empty path (str or os.PathLike), got 3"
