"""Training curves from a real tiny run's logs, and bad run folders with their messages."""

from __future__ import annotations

import pytest
from PIL import Image

from reference.cli import main
from reference.data.synthvi import write_sysu
from reference.errors import VireidError
from reference.results.curves import DPI, PANEL_INCHES, curves_figure, read_logs, write_curves
from reference.training.engine import train
from tests.training.conftest import TINY, tiny_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run with held-out identities (log.csv and eval.csv) and one without (log.csv only)."""
    base = tmp_path_factory.mktemp("runs")
    sysu_root = write_sysu(base / "sysu", ids=8, image_size=TINY)
    with_eval = tiny_config("baseline-sysu", sysu_root, "run.val_ids=2", steps=2, epochs=2)
    train(with_eval, base / "evaluated")
    train(tiny_config("baseline-sysu", sysu_root, steps=2), base / "plain")
    return base / "evaluated", base / "plain"


def test_the_panels_hold_the_logs_numbers(runs):
    evaluated, plain = (read_logs(r) for r in runs)
    assert evaluated.evals is not None and plain.evals is None
    fig = curves_figure([evaluated, plain])
    assert len(fig.axes) == 8  # a row of four per run: eval.csv in one run adds the mAP panel
    losses, rates, speed, scores = fig.axes[:4]
    assert [line.get_label() for line in losses.get_lines()] == evaluated.terms
    assert evaluated.terms[-1] == "total" and len(evaluated.terms) > 1
    total = losses.get_lines()[-1]
    assert list(total.get_xdata()) == list(evaluated.log["step"])
    assert list(total.get_ydata()) == pytest.approx(list(evaluated.log["total"]))
    assert [line.get_label() for line in rates.get_lines()] == ["backbone", "head"]
    assert list(speed.get_lines()[0].get_ydata()) == pytest.approx(
        list(evaluated.log["images_per_s"])
    )
    val = scores.get_lines()[0]
    assert val.get_label() == "val"
    assert list(val.get_ydata()) == pytest.approx(list(100 * evaluated.evals["mAP"]))
    assert fig.axes[7].get_lines() == [] and "no eval.csv" in fig.axes[7].texts[0].get_text()


def test_command_writes_the_png_and_never_overwrites(runs, tmp_path, capsys):
    out = tmp_path / "curves.png"
    assert main(["results", "curves", *map(str, runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == ["evaluated", "plain"]
    with Image.open(out) as image:
        assert image.size == (4 * PANEL_INCHES[0] * DPI, 2 * PANEL_INCHES[1] * DPI)
    assert main(["results", "curves", str(runs[1]), "--out", str(out)]) == 2
    assert "file exists" in capsys.readouterr().err
    assert main(["results", "curves", str(runs[1]), "--out", str(out), "--force"]) == 0
    with Image.open(out) as image:  # one run without eval.csv: three panels
        assert image.size == (3 * PANEL_INCHES[0] * DPI, PANEL_INCHES[1] * DPI)


def test_bad_run_folders_are_named(tmp_path):
    with pytest.raises(VireidError) as info:
        read_logs(tmp_path)
    assert str(info.value) == f"{tmp_path}: no log.csv; expected a training run folder"
    (tmp_path / "log.csv").write_text("epoch,step,total\n")
    with pytest.raises(VireidError) as info:
        read_logs(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'log.csv'}: no rows yet; the run logs every run.log_every steps"
    )
    (tmp_path / "log.csv").write_bytes(b"")  # pandas' EmptyDataError, a ValueError
    with pytest.raises(VireidError) as info:
        read_logs(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'log.csv'}: not a readable CSV file (")
    (tmp_path / "log.csv").write_text("epoch,loss\n1,2.0\n")
    with pytest.raises(VireidError) as info:
        read_logs(tmp_path)
    assert str(info.value) == f"{tmp_path / 'log.csv'}: missing column 'step'"
    (tmp_path / "log.csv").write_text("epoch,step,total\n1,1,2.0\n")
    (tmp_path / "eval.csv").write_text("epoch,step,split\n1,1,val\n")
    with pytest.raises(VireidError) as info:
        read_logs(tmp_path)
    assert str(info.value) == f"{tmp_path / 'eval.csv'}: missing column 'mAP'"
    with pytest.raises(VireidError) as info:
        write_curves([], tmp_path / "x.png")
    assert str(info.value) == "runs: expected at least one run folder"
