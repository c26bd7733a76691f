"""Threads for independent pieces of work (``src/reference/evaluation/threads.py``) against the
plain loop: the same results in order, calls side by side, the loop's exception, no deadlock."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.threads import check_threads, executor, run_each, threads_for
from tests.plugin import result_of_forked_child, torch_threads


@settings(max_examples=60, deadline=None)
@given(n_items=st.integers(0, 20), threads=st.integers(1, 5))
def test_equals_the_loop_in_order(n_items, threads):
    calls: list[int] = []
    lock = threading.Lock()

    def fn(x: int) -> tuple[int, int]:
        with lock:
            calls.append(x)
        return x, x * x

    assert run_each(fn, range(n_items), threads=threads) == [(x, x * x) for x in range(n_items)]
    assert sorted(calls) == list(range(n_items))  # each item once


def test_calls_run_side_by_side():
    # two calls that each wait for the other: only two threads at once get past the barrier
    barrier = threading.Barrier(2, timeout=30)
    names = run_each(lambda _: (barrier.wait(), threading.current_thread().name)[1], [0, 1], 2)
    assert len(set(names)) == 2


def test_one_thread_is_the_loop_on_the_calling_thread():
    here = threading.current_thread().name
    assert run_each(lambda _: threading.current_thread().name, range(4), threads=1) == [here] * 4


def test_the_first_failing_item_in_order_raises_and_the_handing_out_stops():
    started, ended = [], []
    lock = threading.Lock()

    def fn(x: int) -> int:
        with lock:
            started.append(x)
        time.sleep(0.01)
        with lock:
            ended.append(x)
        if x in (3, 4):
            raise ValueError(f"item {x}")
        return x

    with pytest.raises(ValueError, match="item 3"):
        run_each(fn, range(40), threads=3)
    # every item up to the first failure ran (as in the loop), every started call ended, and
    # the handing out stopped soon after (at most one more item per other thread)
    assert set(range(4)) <= set(started) and sorted(started) == sorted(ended)
    assert max(started) <= 4 + 2


def test_a_keyboard_interrupt_stops_the_handing_out_and_is_raised():
    calls = []

    def fn(x: int) -> int:
        calls.append(x)
        if x == 0:
            raise KeyboardInterrupt
        time.sleep(0.02)
        return x

    with pytest.raises(KeyboardInterrupt):
        run_each(fn, range(50), threads=2)
    assert len(calls) < 10


def test_nested_calls_on_the_same_pool_finish():
    # a call made from one of the pool's own threads: the helpers it asks for may never start
    # (every pool thread busy); it is cancelled and the calling thread does the work
    outcome: list[object] = []

    def outer() -> None:
        outcome.append(
            run_each(lambda i: run_each(lambda j: (i, j), range(3), 2, "nest"), range(4), 2, "nest")
        )

    runner = threading.Thread(target=outer, daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "nested run_each did not finish within 60 s"
    assert outcome == [[[(i, j) for j in range(3)] for i in range(4)]]


def _square_in_child(queue) -> None:
    queue.put(run_each(lambda x: x * x, range(6), threads=3, name="fork-test"))


def test_a_forked_child_gets_its_own_threads():
    run_each(lambda x: x, range(6), threads=3, name="fork-test")  # the parent's pool
    assert result_of_forked_child(_square_in_child, "run_each") == [x * x for x in range(6)]


def test_executor_is_one_pool_per_name_and_size():
    a = executor("pool-test", 2)
    assert executor("pool-test", 2) is a
    assert executor("other-pool-test", 2) is not a
    b = executor("pool-test", 3)  # another size replaces it
    assert b is not a and executor("pool-test", 3) is b
    assert a.submit(lambda: 5).result(timeout=10) == 5  # a replaced pool still works


@pytest.mark.parametrize(
    ("threads", "message"),
    [
        (0, "threads: expected an integer >= 1, got 0"),
        (True, "threads: expected an integer >= 1, got True"),
        (2.0, "threads: expected an integer >= 1, got 2.0"),
    ],
)
def test_bad_thread_counts_are_named(threads, message):
    with pytest.raises(VireidError) as info:
        run_each(abs, [1, 2], threads=threads)
    assert str(info.value) == message
    with pytest.raises(VireidError):
        check_threads(threads)


def test_default_is_torch_threads():
    assert check_threads(None) == torch.get_num_threads()


def _count_on_a_new_thread() -> int:
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


@pytest.mark.parametrize("fails", [False, True])
def test_inner_threads_hold_inside_side_by_side_calls_and_the_count_comes_back(fails):
    # each call side by side runs with torch's count at inner_threads on its thread; afterwards
    # (returned or raised) the calling thread, and a thread started later, have the count of
    # before; the loop (one thread) leaves the count alone
    barrier = threading.Barrier(2, timeout=30)

    def fn(x: int) -> int:
        barrier.wait()  # both calls at once: each sets its own thread's count
        if fails and x == 1:
            raise ValueError("item 1")
        return torch.get_num_threads()

    with torch_threads(3):
        if fails:
            with pytest.raises(ValueError, match=r"^item 1$"):
                run_each(fn, [0, 1], threads=2, inner_threads=1)
        else:
            assert run_each(fn, [0, 1], threads=2, inner_threads=1) == [1, 1]
        assert torch.get_num_threads() == 3
        assert _count_on_a_new_thread() == 3
        assert run_each(lambda _: torch.get_num_threads(), [0, 1], 1, inner_threads=1) == [3, 3]


def test_bad_inner_thread_counts_are_named():
    with pytest.raises(VireidError) as info:
        run_each(abs, [1, 2], threads=2, inner_threads=0)
    assert str(info.value) == "inner_threads: expected an integer >= 1, got 0"


def test_threads_for_a_device():
    # the CPU shares work among torch's threads; another device runs it one piece at a time
    assert threads_for(torch.device("cpu")) is None
    assert threads_for(torch.device("meta")) == 1
