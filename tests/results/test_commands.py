"""``vireid results check | table | ranks`` through the command line: output and exit status."""

from __future__ import annotations

import numpy as np
import pytest

from reference.cli import main
from reference.results.record import write_record
from tests.results.fakes import fake_record, fake_scores


@pytest.fixture
def run_dir(tmp_path):
    folder = tmp_path / "run1"
    write_record(folder, fake_record(fake_scores("sysu", r1=0.52, m_ap=0.50, seed=4)))
    return folder


@pytest.fixture
def table_dir(tmp_path, monkeypatch, run_dir):
    from reference.results.record import read_record

    result = read_record(run_dir).protocols["sysu-all-1shot-agw"]
    r1, m_ap = 100 * result.mean("R1"), 100 * result.mean("mAP")
    hi = 100 * result.interval("mAP")[1]
    folder = tmp_path / "published"
    folder.mkdir()
    head = "method,source,venue,dataset,mode,shots,draw,direction,metric,value,note\n"
    rows = [
        f"good,t,,sysu,all,1,agw,i2v,R1,{r1 + 0.5:.2f},",
        f"good,t,,sysu,all,1,agw,i2v,mAP,{m_ap - 0.5:.2f},",
        f"bad,t,,sysu,all,1,agw,i2v,mAP,{hi + 1:.2f},",
        "other,t,,regdb,,,,v2t,R1,50,",
    ]
    (folder / "t.csv").write_text(head + "\n".join(rows) + "\n")
    monkeypatch.setenv("VIREID_PUBLISHED", str(folder))
    return folder


def test_check_exit_0_within_tolerance(run_dir, table_dir, capsys):
    assert main(["results", "check", str(run_dir), "--against", "t:good"]) == 0
    out = capsys.readouterr().out
    assert out.count("within tolerance") == 3  # two rows and the summary line
    assert out.splitlines()[0].split() == [
        "protocol", "figure", "run", "published", "delta", "95%", "interval", "tol", "verdict",
    ]  # fmt: skip
    assert out.rstrip().endswith("PASS: run1 against t:good: 2 within tolerance")


def test_check_exit_1_on_a_shortfall(run_dir, table_dir, capsys):
    assert main(["results", "check", str(run_dir / "run.json"), "--against", "t:bad"]) == 1
    assert "FAIL: run1 against t:bad: 1 shortfall" in capsys.readouterr().out


def test_check_tolerance_option(run_dir, table_dir, capsys):
    assert (
        main(["results", "check", str(run_dir), "--against", "t:bad", "--tolerance", "mAP=50"]) == 0
    )
    assert "PASS" in capsys.readouterr().out


def test_check_refuses_another_protocol_with_exit_2(run_dir, table_dir, capsys):
    assert main(["results", "check", str(run_dir), "--against", "t:other"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot compare run1 with t:other: no protocol in common")
    assert "dataset differs (run sysu, published regdb)" in err


def test_check_missing_run(tmp_path, capsys):
    assert main(["results", "check", str(tmp_path), "--against", "method_b:BDF"]) == 2
    assert "no run record (run.json) there" in capsys.readouterr().err


def test_table_writes_report_and_plot(run_dir, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["results", "table", str(run_dir), "--against", "method_b:BDF", "--out", str(out)]
    assert main(argv) == 0
    assert (out / "report.md").is_file() and (out / "cmc.png").is_file()
    assert "| method_b:BDF | 51.05 |" in capsys.readouterr().out
    assert main(argv) == 2
    assert "file exists" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0


def test_ranks_command(tmp_path, capsys):
    from reference.data.synthvi import write_sysu
    from reference.data.sysu import read_sysu_test
    from reference.evaluation.features import FeatureSet, save_features

    root = write_sysu(tmp_path / "sysu", ids=12, seed=1)
    rec = read_sysu_test(root)
    feats = np.random.default_rng(0).standard_normal((len(rec.paths), 8)).astype(np.float32)
    path = tmp_path / "f.npz"
    save_features(path, FeatureSet.create(feats, rec.pids, rec.camids, rec.frames, dataset="sysu"))
    out = tmp_path / "ranks.png"
    argv = [
        "results",
        "ranks",
        str(path),
        "--data-root",
        str(root),
        "--queries",
        "2",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["worst", "best"]
    assert out.is_file()
    assert main([*argv[:4], str(tmp_path / "none"), *argv[5:]]) == 2
    assert "--data-root: " in capsys.readouterr().err


def test_check_defaults_to_the_row_of_the_runs_preset(tmp_path, capsys):
    from dataclasses import replace

    record = fake_record(fake_scores("sysu", r1=0.70, m_ap=0.67, seed=5))
    write_record(tmp_path / "a", replace(record, config={"preset": "baseline-sysu"}))
    assert main(["results", "check", str(tmp_path / "a")]) in (0, 1)
    out = capsys.readouterr().out
    assert "against method_a:baseline" in out and "70.60" in out
    write_record(
        tmp_path / "b",
        replace(fake_record(fake_scores("regdb")), config={"preset": "baseline-regdb"}),
    )
    assert main(["results", "check", str(tmp_path / "b")]) == 2
    assert (
        "records no preset with a published row (preset 'baseline-regdb')"
        in capsys.readouterr().err
    )
