"""Faults: the Ctrl-C flag, non-finite terms, the messages and exit statuses (engine.md)."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from reference.training.faults import (
    EXIT_INTERRUPTED,
    EXIT_NONFINITE,
    Interrupted,
    NonFiniteLoss,
    StopFlag,
    TrainingStopped,
    nonfinite_message,
    nonfinite_terms,
)


@pytest.fixture
def terminal_sigint():
    """Python's own Ctrl-C handler, as in a terminal (a pytest-xdist worker ignores SIGINT)."""
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, outer)


def test_ctrl_c_sets_the_flag_then_a_second_one_interrupts(terminal_sigint):
    before = signal.getsignal(signal.SIGINT)
    with StopFlag() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested  # the first Ctrl-C only asks the loop to stop
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_a_second_ctrl_c_keeps_an_ignoring_callers_choice():
    # a caller that ignores SIGINT (a pytest-xdist worker, nohup) gets its handler back after
    # the first Ctrl-C: the second is ignored too, and the loop still stops after its step
    outer = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopFlag() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested
            os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, outer)


def test_nonfinite_terms_and_message():
    values, bad = nonfinite_terms(
        {"id/global": torch.tensor(1.5), "tri/global": torch.tensor(float("inf"))}
    )
    assert values == {"id/global": 1.5, "tri/global": float("inf")}
    assert bad == {"tri/global": float("inf")}
    report = {"step": 7, "epoch": 2, "rank": 1, "nonfinite": {"tri/global": "inf"},
              "identities": [3, 9], "checkpoint": None}  # fmt: skip
    assert nonfinite_message(report, distributed=True) == (
        "rank 1: non-finite loss at step 7 (epoch 2): tri/global = inf; batch identities [3, 9]; "
        "the last good checkpoint is none (no checkpoint was written yet)"
    )


def test_exit_statuses():
    assert (EXIT_NONFINITE, EXIT_INTERRUPTED) == (3, 130)
    for cls, status in ((NonFiniteLoss, 3), (Interrupted, 130)):
        stop = cls("message", None, {"step": 1})
        assert isinstance(stop, TrainingStopped) and stop.status == status
        assert str(stop) == "message" and stop.report == {"step": 1}
