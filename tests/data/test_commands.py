"""The data area's commands, ``vireid synth`` and ``vireid data check`` (spec/data/synthvi.md,
spec/data/check.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.cli import main
from reference.data import synthvi
from reference.data.commands import check_command, synth_command
from reference.data.synthvi import DEFAULT_IDS
from reference.errors import VireidError
from tests.data.test_sysu import TINY_LAYOUT, tiny_sysu


@pytest.fixture(scope="module")
def sysu_clean(tmp_path_factory) -> Path:
    return tiny_sysu(tmp_path_factory.mktemp("check") / "SYSU-MM01")


def test_clean_sysu_command_exit_0_and_table(sysu_clean, capsys):
    assert check_command(root=sysu_clean, dataset="sysu") == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"SYSU-MM01 folder {sysu_clean}"
    assert "ids train" in out and "(differs)" in out and out.rstrip().endswith("problems: 0")
    n = sum(len(f) for cams in TINY_LAYOUT.values() for f in cams.values())
    assert f"checked {n}/{n} images" in err


def test_unknown_dataset(sysu_clean):
    from reference.errors import VireidError

    with pytest.raises(
        VireidError, match=r"^dataset: expected 'sysu', 'regdb' or 'llcm', got 'market'$"
    ):
        check_command(root=sysu_clean, dataset="market")


def test_synthvi_folders_pass(tmp_path, capsys):
    from reference.data.synthvi import write_regdb, write_sysu

    sysu = write_sysu(tmp_path / "s", ids=8, seed=2)
    regdb = write_regdb(tmp_path / "r", ids=6, seed=2)
    assert check_command(root=sysu, dataset="sysu") == 0
    assert check_command(root=regdb, dataset="regdb") == 0
    out = capsys.readouterr().out
    assert "(differs)" in out and out.count("problems: 0") == 2


def test_default_ids(tmp_path, monkeypatch, capsys):
    assert DEFAULT_IDS == 40
    monkeypatch.setattr(synthvi, "DEFAULT_IDS", 5)
    assert synth_command(layout="sysu", out=tmp_path / "d", ids=None, seed=0, force=False) == 0
    assert ": 5 identities" in capsys.readouterr().out


def test_synth_command_unknown_layout(tmp_path):
    with pytest.raises(VireidError) as info:
        synth_command(layout="market", out=tmp_path / "d", ids=None, seed=0, force=False)
    assert str(info.value) == "layout: expected 'sysu', 'regdb' or 'llcm', got 'market'"
    assert not (tmp_path / "d").exists()


def test_check_reads_the_dataset_off_the_folder(sysu_clean, tmp_path, capsys):
    assert main(["data", "check", str(sysu_clean)]) == 0
    assert "SYSU-MM01 folder" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path}: cannot tell the dataset (no layout found); expected a SYSU-MM01 "
        "folder (cam1..cam6, exp/), a RegDB folder (Visible/, Thermal/, idx/) or an LLCM folder "
        "(test_vis/, test_nir/, idx/); or name it: --dataset sysu|regdb|llcm\n"
    )
