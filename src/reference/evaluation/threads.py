"""Threads for the evaluation's independent pieces of work: process-local pools, and one call
per item with the results in order.

Spec: ``spec/evaluation/threads.md``. NumPy's sort and most torch kernels release the GIL, and
many of the ranking's steps run on one core (NumPy's passes, small torch kernels, the Python
between them), so independent pieces of work -- blocks of rows to sort (``rowsort.py``), the
galleries of a protocol's trials and the pooled scorer's chunks of queries (``pooled.py``) -- go
faster side by side. Each piece computes exactly what it computes alone: the results do not
depend on the thread count.

- :func:`executor` is this process's pool of a given name and size, started on first use and
  again after ``fork`` (a forked child has none of its parent's threads).
- :func:`run_each` is ``[fn(x) for x in items]`` on up to ``threads`` threads, the calling
  thread included; the first item (in order) whose call raised raises, after every call ended.
- :func:`threads_for` is the thread count for work on a device: torch's on the CPU, else one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

from reference.checks import check_integer

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
#: name -> (process id, workers, pool)
_pools: dict[str, tuple[int, int, ThreadPoolExecutor]] = {}


def executor(name: str, workers: int) -> ThreadPoolExecutor:
    """This process's pool ``name`` of ``workers`` threads; a new one after ``fork`` or when
    the count changes. A replaced pool is not shut down: a caller on another thread may still be
    using it; its threads end once nothing refers to it.

    Pools of different names never wait on each other's work: a task of one pool may wait for
    tasks it gave to another (a trial of ``run_each`` sorting its rows) without a deadlock.
    """
    with _lock:
        entry = _pools.get(name)
        if entry is None or entry[0] != os.getpid() or entry[1] != workers:
            entry = (os.getpid(), workers, ThreadPoolExecutor(workers, f"vireid-{name}"))
            _pools[name] = entry
        return entry[2]


def check_threads(threads: object) -> int:
    """``threads`` as an integer >= 1 (``None``: ``torch.get_num_threads()``), else an error
    naming it."""
    threads = torch.get_num_threads() if threads is None else threads
    return check_integer(threads, "threads", low=1, numpy=False)


def threads_for(device: torch.device) -> int | None:
    """The ``threads`` of :func:`run_each` for work on ``device``: on the CPU torch's thread
    count (``None``), elsewhere one (the device runs the kernels; threads would only queue
    them)."""
    return None if device.type == "cpu" else 1


def run_each(
    fn: Callable[[T], R],
    items: Sequence[T],
    threads: int | None = None,
    name: str = "each",
    inner_threads: int | None = None,
) -> list[R]:
    """``[fn(x) for x in items]``, the calls shared among ``threads`` threads (default
    ``torch.get_num_threads()``): the calling thread and up to ``threads - 1`` of pool ``name``.

    The calls run in any order and side by side, so ``fn`` must not depend on another call's
    effects. Items are handed out one at a time, in order, from a shared counter; once a call
    raises, no further item is handed out (as the loop stops), and every call already started
    ends before this returns or raises. The exception raised is that of the first item, in
    order, whose call raised: what the loop would raise, since every earlier item was handed
    out before it; a ``KeyboardInterrupt`` in a call is such an exception. A helper that has not
    started when the calling thread runs out of items is cancelled, so a call made from one of
    the pool's own threads (nested) finishes on the calling thread instead of waiting for a busy
    pool.

    ``inner_threads``: where the calls run side by side, each runs with torch's thread count
    set to this on its thread (``torch.set_num_threads``), and set back after it to the calling
    thread's count: pieces that each fill a core need no intra-op threads of their own, and two
    levels of threads on the same cores slow both. The plain loop leaves the count alone.
    """
    threads = check_threads(threads)
    if inner_threads is not None:
        inner_threads = check_integer(inner_threads, "inner_threads", low=1, numpy=False)
    items = list(items)
    if threads == 1 or len(items) < 2:
        return [fn(x) for x in items]
    if inner_threads is not None:
        fn = _with_torch_threads(fn, inner_threads, torch.get_num_threads())
    pool = executor(name, threads - 1)
    next_item = iter(range(len(items)))
    take = threading.Lock()
    halt = threading.Event()  # set once a call raised: hand out no further item
    results: list[R | None] = [None] * len(items)
    errors: list[BaseException | None] = [None] * len(items)

    def worker() -> None:
        while True:
            with take:
                i = None if halt.is_set() else next(next_item, None)
            if i is None:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # Ctrl-C too; raised again below, in item order
                errors[i] = exc
                halt.set()

    helpers: list[Future[None]] = [pool.submit(worker) for _ in range(min(threads, len(items)) - 1)]
    try:
        worker()
    finally:
        for helper in helpers:
            if not helper.cancel():  # started: it ends once the items run out
                helper.result()
    for exc in errors:
        if exc is not None:
            raise exc
    return results  # type: ignore[return-value]


def _with_torch_threads(fn: Callable[[T], R], count: int, after: int) -> Callable[[T], R]:
    """``fn`` run with torch's thread count set to ``count`` on the thread that calls it, and
    set to ``after`` once it returns or raises. torch keeps a count per thread, and a new thread
    starts from the last count set on any thread: every call ends by setting the caller's count,
    so the count new threads start from is the caller's again, whichever call ends last."""

    def call(x: T) -> R:
        torch.set_num_threads(count)
        try:
            return fn(x)
        finally:
            torch.set_num_threads(after)

    return call
