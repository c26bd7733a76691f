"""The evaluation battery's problems: spec examples, probes, and generated problems."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.audit.eval_problems import (
    PROBES,
    PROTOCOLS,
    build_problem,
    check_protocol,
    probe_strategy,
    problem,
    spec_examples,
)
from reference.evaluation.metrics import exclusion_mask


def test_spec_examples_are_those_of_the_spec():
    examples = dict(spec_examples())
    assert len(examples) == 7
    first = examples["differences 1: AP formula"]
    assert first.distmat.tolist() == [[0.1, 0.2, 0.3]] and first.g_pids.tolist() == [1, 2, 1]
    assert examples["differences 6: float32 accumulation"].shape == (3803, 3)


def test_max_rank_is_capped_at_the_gallery_size():
    assert problem([[0.1, 0.2]], [1], [1, 2], [6], [1, 1]).max_rank == 2
    assert problem(np.zeros((1, 30)), [1], np.arange(30), [6], np.ones(30)).max_rank == 20


def test_arrays_are_read_only_and_the_snippet_rebuilds_the_problem():
    p = problem([[0.1, 0.2]], [1], [1, 2], [3], [2, 1])
    assert not p.distmat.flags.writeable
    space: dict = {}
    exec(p.snippet(), space)
    assert space["distmat"].tolist() == [[0.1, 0.2]] and space["g_camids"].tolist() == [2, 1]
    assert p.describe() == "1 query x 2 gallery items"


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("probe", PROBES[:6], ids=lambda p: p.name)
@settings(max_examples=15)
@given(data=st.data())
def test_every_generated_problem_has_a_valid_query(protocol, probe, data):
    proto = check_protocol(protocol)
    p = data.draw(probe_strategy(proto, probe))
    keep = ~exclusion_mask(p.q_pids, p.g_pids, p.q_camids, p.g_camids, proto.exclusion).numpy()
    assert ((p.q_pids[:, None] == p.g_pids[None]) & keep).any()
    assert p.max_rank == min(20, p.shape[1])
    if probe.gallery is None:
        assert p.shape[0] == p.shape[1]


def test_build_problem_is_deterministic_and_follows_the_protocol_cameras():
    probe = PROBES[0]
    a = build_problem(PROTOCOLS["sysu"], probe, 5, 9, 3, seed=7)
    b = build_problem(PROTOCOLS["sysu"], probe, 5, 9, 3, seed=7)
    assert np.array_equal(a.distmat, b.distmat) and a.params == b.params
    assert set(a.q_camids.tolist()) <= {3, 6} and set(a.g_camids.tolist()) <= {1, 2, 4, 5}


def test_snippet_round_trips_every_bit():
    p = build_problem(PROTOCOLS["market"], PROBES[0], 3, 7, 3, seed=11)
    space: dict = {}
    exec(p.snippet(), space)
    assert np.array_equal(space["distmat"], p.distmat)
