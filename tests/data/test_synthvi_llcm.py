"""SynthVI's LLCM layout (spec/data/synthvi.md, "LLCM layout"): it reads, checks and follows its
plan."""

from __future__ import annotations

import pytest

from reference.data.commands import check_command
from reference.data.llcm import read_llcm_test, read_llcm_train
from reference.errors import VireidError


def test_synthvi_llcm_folder_reads_and_checks(tmp_path, capsys):
    from reference.data.commands import synth_command
    from reference.data.synthvi_llcm import llcm_plan

    out = tmp_path / "llcm"
    assert synth_command(layout="llcm", out=out, ids=9, seed=3, force=False) == 0
    assert "wrote SynthVI (LLCM layout)" in capsys.readouterr().out
    train_ids, test_ids, counts = llcm_plan(9, 3)
    test = read_llcm_test(out)
    assert sorted(set(test.pids.tolist())) == test_ids and len(test_ids) == 3
    assert len(test) == sum(n for (_, _, pid), n in counts.items() if pid in test_ids)
    assert not ((test.modality == 1) & (test.camids == 3)).any()  # no infrared camera 3
    # every test camera folder, also one no test identity has images in
    for folder, cams in (("test_vis", range(1, 10)), ("test_nir", (1, 2, 4, 5, 6, 7, 8, 9))):
        assert sorted(p.name for p in (out / folder).iterdir()) == sorted(f"cam{c}" for c in cams)
    train = read_llcm_train(out)
    assert sorted(set(train.pids.tolist())) == list(range(len(train_ids)))
    assert set(train.modality.tolist()) == {0, 1}
    assert check_command(root=out, dataset="llcm") == 0
    assert "problems: 0" in capsys.readouterr().out


def test_synthvi_llcm_bad_ids(tmp_path):
    from reference.data.synthvi import write_synthvi

    with pytest.raises(VireidError) as info:
        write_synthvi(tmp_path / "x", "llcm", ids=3)
    assert str(info.value).startswith("ids: expected an integer from 4 to 9999")
    assert not (tmp_path / "x").exists()
