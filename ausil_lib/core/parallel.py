"""Per-file work (a baseline's fingerprints) spread over processes, in order, with the same results.

The baselines fingerprint each file in single-threaded numpy, so on a 2-core machine one process
leaves a core idle. `ordered_map` runs a pure function of one item in `workers` spawned processes
(fresh interpreters: no forked PostgreSQL connection or torch thread pool; they inherit the pinned
numeric environment, core/numerics.py) and hands the results back in the items' order, so whatever
consumes them (a database load, song ids, a results file) sees exactly what one process would give.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_AHEAD = 2  # items queued per worker: enough to keep every worker busy, little held in memory


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 1) -> Iterator[Callable[[], R]]:
    """One thunk per item, in order; calling it returns `fn(item)` or raises what `fn` raised.

    The thunk, not the value, is yielded so that the consumer handles a failed item (a file that
    cannot be decoded) where it handles it in a serial loop, and the other items go on. With
    `workers` 1 `fn` runs in this process when the thunk is called. `fn` and the items must be
    picklable for more workers (a module-level function or a functools.partial of one).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        for item in items:
            yield lambda item=item: fn(item)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending: deque[Future[R]] = deque()
        source = iter(items)
        for item in source:
            pending.append(pool.submit(fn, item))
            if len(pending) >= workers * _AHEAD:
                break
        while pending:
            ready = pending.popleft()
            for item in source:  # keep the queue full: one new item for each one handed back
                pending.append(pool.submit(fn, item))
                break
            yield ready.result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
