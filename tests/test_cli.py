from __future__ import annotations

import subprocess
import sys

import pytest

from reference import __version__
from reference.cli import build_parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"vireid {__version__}"


def test_parser_knows_every_command():
    parser = build_parser()
    args = parser.parse_args(["evaluate", "sysu", "--example", "--mode", "indoor", "--shots", "10"])
    assert (args.protocol, args.mode, args.shots, args.sampling) == ("sysu", "indoor", 10, "agw")
    args = parser.parse_args(["evaluate", "regdb", "--features", "a.npz", "b.npz"])
    assert [str(p) for p in args.features] == ["a.npz", "b.npz"]
    args = parser.parse_args(["synth", "--layout", "regdb", "--out", "d"])
    assert args.layout == "regdb"
    args = parser.parse_args(["data", "check", "root", "--dataset", "sysu"])
    assert args.dataset == "sysu"
    args = parser.parse_args(["model", "summary", "--kind", "method_a", "--pretrained", "w.pth"])
    assert (args.model_command, args.kind, str(args.pretrained)) == ("summary", "method_a", "w.pth")
    assert (args.size, args.num_classes, args.config) == ("288x144", None, None)


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "reference", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "evaluate" in result.stdout and "synth" in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "check", "", "--dataset", "sysu"],
        ["evaluate", "sysu", "--features", ""],
        ["train", "--preset", "baseline-sysu", "--data-root", ""],
        ["extract", "--checkpoint", "", "--data-root", "d", "--out", "f.npz"],
    ],
)
def test_an_empty_path_argument_is_refused(argv, capsys):
    # Path("") is the working folder: an unset shell variable must not make it the input
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "expected a non-empty path" in capsys.readouterr().err
