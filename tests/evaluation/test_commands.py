"""``vireid evaluate sysu|regdb`` through ``reference.cli.main`` (spec/evaluation/*.md, CLI)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from reference.cli import main
from reference.errors import VireidError
from reference.evaluation.commands import evaluate
from reference.evaluation.example import regdb_example, sysu_example
from reference.evaluation.features import FeatureSet, save_features

SPLIT = Path(__file__).resolve().parents[3] / "shared" / "sysu-mm01-official" / "rand_perm_cam.mat"
FIGURE_KEYS = {"R1", "R5", "R10", "R20", "mAP", "mINP"}


@pytest.fixture(scope="module")
def sysu_file(tmp_path_factory) -> Path:
    counts = {(cam, pid): 3 + (pid % 3) for pid in range(1, 9) for cam in (1, 2, 3, 4, 5, 6)}
    path = tmp_path_factory.mktemp("sysu") / "f.npz"
    save_features(path, sysu_example(counts=counts, dim=8))
    return path


@pytest.fixture(scope="module")
def regdb_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("regdb")
    paths = []
    for t, fs in enumerate(regdb_example(trials=2, n_ids=12, images=3, dim=8), start=1):
        paths.append(save_features(folder / f"T{t}.npz", fs))
    return paths


def test_readme_main_job_prints_a_table(capsys):
    assert main(["evaluate", "sysu", "--example"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("features: generated SYSU-MM01-shaped example (96 identities")
    assert lines[1] == "SYSU-MM01 all-search, single-shot, agw draw, 10 trials, euclidean distance"
    assert lines[2].split() == [
        "trial",
        "R1",
        "R5",
        "R10",
        "R20",
        "mAP",
        "mINP",
        "valid",
        "queries",
    ]
    assert [line.split()[0] for line in lines[4:14]] == [str(t) for t in range(10)]
    assert lines[-1].startswith("mean ± std")
    r1 = float(lines[-1].split()[3])  # "mean", "±", "std", R1 mean, "±", R1 std, ...
    assert 5.0 < r1 < 99.0  # identities learnable, not trivially: a non-trivial table
    assert "SYSU-MM01 trial 10/10" in err  # progress goes to stderr


def test_sysu_features_file_and_json(tmp_path, sysu_file, capsys):
    out_json = tmp_path / "scores.json"
    argv = ["evaluate", "sysu", "--features", str(sysu_file), "--mode", "indoor", "--shots", "10"]
    argv += ["--trials", "3", "--metric", "cosine", "--json", str(out_json)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "SYSU-MM01 indoor-search, multi-shot (10), agw draw, 3 trials, cosine distance" in out
    assert f"wrote {out_json}" in err
    doc = json.loads(out_json.read_text())
    assert set(doc) == {"schema", "protocol", "title", "settings", "summary", "trials"}
    assert doc["schema"] == "vireid.scores/1" and doc["protocol"] == "sysu"
    assert doc["settings"]["features"] == str(sysu_file)
    assert (doc["settings"]["mode"], doc["settings"]["shots"]) == ("indoor", 10)
    assert set(doc["summary"]) == FIGURE_KEYS | {"num_valid"}
    assert len(doc["trials"]) == 3
    for trial in doc["trials"]:
        assert set(trial) == FIGURE_KEYS | {"trial", "cmc", "num_valid", "num_query", "num_gallery"}
        assert len(trial["cmc"]) == 20
        # indoor: cameras 1 and 2; every folder has fewer than 10 images, so all of them
        assert trial["num_gallery"] == 2 * sum(3 + pid % 3 for pid in range(1, 9))
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]  # atomic: no temporaries


def test_json_is_not_replaced_without_force(tmp_path, sysu_file, capsys):
    out_json = tmp_path / "s.json"
    out_json.write_text("keep me")
    argv = ["evaluate", "sysu", "--features", str(sysu_file), "--trials", "1"]
    assert main([*argv, "--json", str(out_json)]) == 2
    out, err = capsys.readouterr()
    assert err == (
        f"error: {out_json}: file exists; pass overwrite=True (CLI: --force) to replace it\n"
    )
    assert out == ""  # refused before any work
    assert out_json.read_text() == "keep me"
    assert main([*argv, "--json", str(out_json), "--force"]) == 0
    assert json.loads(out_json.read_text())["settings"]["trials"] == 1


def test_sysu_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["evaluate", "sysu", "--example", "--sampling", "official"]) == 2
    assert capsys.readouterr().err == (
        "error: --split: --sampling official needs the dataset authors' rand_perm_cam.mat "
        "(--split PATH); use --sampling agw to draw the galleries without it\n"
    )
    assert main(["evaluate", "sysu", "--example", "--split", "x.mat"]) == 2
    assert capsys.readouterr().err == "error: --split: only used with --sampling official\n"
    missing = tmp_path / "nope.npz"
    assert main(["evaluate", "sysu", "--features", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"error: {missing}: features file not found (expected an .npz file)\n"
    )
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=np.zeros((2, 2)), pids=np.array([1, 1]), camids=np.array([3, 9]))
    assert main(["evaluate", "sysu", "--features", str(bad)]) == 2
    assert capsys.readouterr().err == (
        f"error: {bad}: field 'camids': unknown camera id 9 at row 1; expected one of "
        "1, 2, 3, 4, 5, 6 for sysu\n"
    )


@pytest.mark.skipif(not SPLIT.is_file(), reason=f"official SYSU-MM01 split not found at {SPLIT}")
def test_sysu_example_with_the_official_split(tmp_path, capsys):
    out_json = tmp_path / "o.json"
    argv = ["evaluate", "sysu", "--example", "--sampling", "official", "--split", str(SPLIT)]
    assert main([*argv, "--trials", "2", "--json", str(out_json)]) == 0
    out, _ = capsys.readouterr()
    assert "3803/3803" in out
    doc = json.loads(out_json.read_text())
    assert doc["settings"]["split"] == str(SPLIT)
    assert [t["num_gallery"] for t in doc["trials"]] == [301, 301]


def test_regdb_files_both_directions(tmp_path, regdb_files, capsys):
    out_json = tmp_path / "r.json"
    argv = ["evaluate", "regdb", "--features", *map(str, regdb_files), "--direction", "t2v"]
    assert main([*argv, "--json", str(out_json)]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[0] == "RegDB thermal-to-visible, 2 trials, euclidean distance"
    assert out.splitlines()[3].split()[:2] == ["1", "T1.npz"]
    doc = json.loads(out_json.read_text())
    assert doc["protocol"] == "regdb" and doc["settings"]["direction"] == "t2v"
    assert doc["settings"]["features"] == [str(p) for p in regdb_files]
    assert [t["source"] for t in doc["trials"]] == [str(p) for p in regdb_files]
    assert [t["num_query"] for t in doc["trials"]] == [36, 36]


def test_regdb_example_and_errors(tmp_path, capsys):
    assert main(["evaluate", "regdb", "--example"]) == 0
    out, _ = capsys.readouterr()
    assert "RegDB visible-to-thermal, 10 trials, euclidean distance" in out
    assert out.splitlines()[-1].endswith("2060/2060")

    sysu_like = tmp_path / "s.npz"
    save_features(
        sysu_like,
        FeatureSet.create(
            np.ones((2, 2)), np.array([1, 1]), np.array([1, 3]), np.array([0, 0]), dataset="sysu"
        ),
    )
    assert main(["evaluate", "regdb", "--features", str(sysu_like)]) == 2
    assert capsys.readouterr().err == (
        f"error: {sysu_like}: field 'camids': unknown camera id 3 at row 1; expected one of "
        "1, 2 for regdb\n"
    )
    visible_only = tmp_path / "v.npz"
    save_features(
        visible_only,
        FeatureSet.create(np.ones((2, 2)), np.array([1, 1]), np.array([1, 1]), dataset="regdb"),
    )
    assert main(["evaluate", "regdb", "--features", str(visible_only)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {visible_only}: no thermal images (camid 2): the gallery set of direction v2t "
        "is empty"
    )


def test_llcm_features_file_rerank_and_json(tmp_path, capsys):
    from reference.evaluation.example import llcm_example

    path = save_features(tmp_path / "llcm.npz", llcm_example(0, n_ids=10, dim=8))
    out_json = tmp_path / "s.json"
    args = ["evaluate", "llcm", "--features", str(path), "--direction", "v2i", "--trials", "2"]
    rerank = ["--rerank", "k-reciprocal", "--k1", "5", "--k2", "2", "--lambda", "0.5"]
    assert main([*args, *rerank, "--json", str(out_json)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == (
        "LLCM visible-to-infrared, 2 trials, euclidean distance, k-reciprocal re-ranking "
        "(k1=5, k2=2, lambda=0.5)"
    )
    assert "LLCM v2i trial 2/2" in err
    doc = json.loads(out_json.read_text())
    assert doc["protocol"] == "llcm" and doc["settings"]["direction"] == "v2i"
    assert doc["settings"]["rerank"] == {"method": "k-reciprocal", "k1": 5, "k2": 2, "lambda": 0.5}


def test_rerank_numbers_need_rerank(capsys, sysu_file):
    assert main(["evaluate", "sysu", "--features", str(sysu_file), "--k1", "5"]) == 2
    assert capsys.readouterr().err.strip() == "error: --k1: only used with --rerank k-reciprocal"
    args = ["evaluate", "sysu", "--features", str(sysu_file), "--rerank", "k-reciprocal"]
    assert main([*args, "--lambda", "2"]) == 2
    assert capsys.readouterr().err.strip() == "error: lambda: expected a number in [0, 1], got 2.0"


def test_sysu_and_regdb_record_rerank(tmp_path, sysu_file, regdb_files, capsys):
    out_json = tmp_path / "s.json"
    rerank = ["--rerank", "k-reciprocal", "--k1", "4", "--k2", "2"]
    args = ["evaluate", "sysu", "--features", str(sysu_file), "--trials", "1", *rerank]
    assert main([*args, "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["settings"]["rerank"]["k1"] == 4
    args = ["evaluate", "regdb", "--features", *map(str, regdb_files), *rerank]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["rerank"]["lambda"] == 0.3
    capsys.readouterr()


@pytest.mark.parametrize(
    ("protocol", "options", "message"),
    [
        ("sysu", {"mode": "all", "shots": 1, "sampling": "agw", "split": None, "trials": 1},
         "--features: expected a features file (or --example)"),
        ("llcm", {"direction": "i2v", "trials": 1},
         "--features: expected a features file (or --example)"),
        ("regdb", {"direction": "v2t"},
         "--features: expected one features file per trial (or --example)"),
    ],
)  # fmt: skip
def test_evaluate_called_without_features_or_example(protocol, options, message, capsys):
    # argparse requires one of the two; a caller of the command function gets the same rule
    with pytest.raises(VireidError, match=re.escape(message)):
        evaluate(
            protocol, features=None, example=False, metric="euclidean", json_out=None,
            force=False, **options,
        )  # fmt: skip
    assert capsys.readouterr().out == ""
