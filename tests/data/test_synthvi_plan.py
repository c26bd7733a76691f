"""SynthVI's split planning (spec/data/synthvi.md): the SYSU-MM01 split sizes and the RegDB
trial splits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.data import synthvi_plan
from reference.data.synthvi_plan import regdb_split, sysu_split_sizes
from reference.errors import VireidError


def test_different_seeds_give_different_sysu_splits():
    plans = {tuple(tuple(v) for v in synthvi_plan.sysu_plan(40, s)[0].values()) for s in range(4)}
    assert len(plans) == 4


@given(st.integers(5, 9999))
def test_sysu_split_sizes_properties(ids):
    train, val, test = sysu_split_sizes(ids)
    assert train + val + test == ids
    assert train >= 2 and val >= 1 and test >= 2
    if ids >= 100:
        assert abs(train / ids - 296 / 491) < 0.02
        assert abs(val / ids - 99 / 491) < 0.01
        assert abs(test / ids - 96 / 491) < 0.01


def test_sysu_split_sizes_of_the_real_count():
    assert sysu_split_sizes(491) == (296, 99, 96)
    assert sysu_split_sizes(5) == (2, 1, 2)


@given(st.integers(4, 500), st.integers(0, 2**32 - 1), st.integers(1, 10))
def test_regdb_split_properties(ids, seed, trial):
    train, test = regdb_split(ids, seed, trial)
    assert len(train) == ids // 2 and len(test) == ids - ids // 2
    assert sorted(train + test) == list(range(1, ids + 1))
    assert train == sorted(train) and test == sorted(test)
    assert regdb_split(ids, seed, trial) == (train, test)


def test_regdb_split_bad_trial():
    with pytest.raises(VireidError) as info:
        regdb_split(10, 0, 11)
    assert str(info.value) == "trial: expected an integer from 1 to 10, got 11"
