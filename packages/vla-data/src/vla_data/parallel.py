"""Run independent jobs in worker processes (or in-process for one worker) with progress."""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any


class LocalCounter:
    """In-process stand-in for `multiprocessing.Value("q")`."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self._lock


def add(counter: Any, amount: int) -> None:
    """Add to a progress counter (a LocalCounter or a shared multiprocessing Value)."""
    if counter is not None:
        with counter.get_lock():
            counter.value += amount


_COUNTER: Any = None


def _init_worker(counter: Any) -> None:
    global _COUNTER
    _COUNTER = counter


def _call(fn: Callable, job: tuple) -> Any:
    return fn(*job, counter=_COUNTER)


def run_jobs(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    workers: int,
    progress: Callable[[int, int], None] | None = None,
    total: int = 0,
) -> list[Any]:
    """Results of `fn(*job, counter=...)` for every job, in job order.

    `fn` adds its progress units to `counter` (see `add`); `progress(done, total)` is called
    as they arrive. With one worker or one job everything runs in this process; otherwise in
    `spawn`ed processes (`fn` must be a module-level function, jobs picklable).
    """
    if workers <= 1 or len(jobs) <= 1:
        counter, results = LocalCounter(), []
        for job in jobs:
            results.append(fn(*job, counter=counter))
            if progress:
                progress(counter.value, total)
        return results
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(counter,),
    ) as pool:
        futures = [pool.submit(_call, fn, job) for job in jobs]
        pending = set(futures)
        while pending:
            _done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            if progress:
                progress(counter.value, total)
        return [f.result() for f in futures]
