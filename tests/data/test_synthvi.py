"""Tests of SynthVI (spec: ``spec/data/synthvi.md``)."""

from __future__ import annotations

from reference.data.synthvi import SYSU_CAMERAS, write_regdb, write_sysu


def test_sysu_layout_smoke(tmp_path):
    root = write_sysu(tmp_path / "s", ids=8, seed=0)
    assert sorted(p.name for p in root.iterdir()) == [f"cam{c}" for c in SYSU_CAMERAS] + ["exp"]


def test_regdb_layout_smoke(tmp_path):
    root = write_regdb(tmp_path / "r", ids=4, seed=0)
    assert sorted(p.name for p in root.iterdir()) == ["Thermal", "Visible", "idx"]
