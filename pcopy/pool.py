"""A bounded worker pool over interchangeable backends.

    items (generator) ──► submit while in flight < max ──► backend workers
           ▲                                                   │
           └──── pulled only when a slot frees (back-pressure) ◄┘ results, as completed

Memory stays flat because at most ``max_in_flight`` items exist beyond the
producer at any time. A backend is anything with ``submit``/``wait``/
``shutdown`` returning ``concurrent.futures``-style futures, which is also
the shape of a Dask ``distributed.Client``; the engine never sees which one
runs.

Stopping: a shared ``stop_event`` tells workers to drop their current file
and return; ``abort`` waits a short grace period and then kills what is still
running, so Ctrl-C never hangs the way ``multiprocessing.Pool.map`` does.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import multiprocessing
import os
import threading
import time
from typing import Callable, Iterable, Iterator, Optional

from .errors import PcopyError

BACKENDS = ("process", "thread")
WAIT_TICK = 0.1  # seconds between checks for a stop request while waiting


class ThreadBackend:
    """Workers are threads in this process (fine for big files: I/O and xxhash drop the GIL)."""

    def __init__(self, jobs: int, initializer: Callable, stop_event) -> None:
        self.stop_event = stop_event
        self.jobs = jobs
        self._executor = cf.ThreadPoolExecutor(jobs, thread_name_prefix="pcopy-worker",
                                               initializer=initializer, initargs=(stop_event, False))

    def submit(self, fn, *args):
        return self._executor.submit(fn, *args)

    def wait(self, futures, timeout):
        return cf.wait(futures, timeout, return_when=cf.FIRST_COMPLETED)[0]

    def lost_items(self) -> list:
        """Items whose worker vanished mid-run and that were rerun elsewhere (none here)."""
        return []

    def shutdown(self, kill: bool = False) -> None:
        self._executor.shutdown(wait=True, cancel_futures=kill)


class ProcessBackend(ThreadBackend):
    """Workers are processes: no GIL contention on the many small syscalls of small files."""

    def __init__(self, jobs: int, initializer: Callable, stop_event=None,
                 start_method: Optional[str] = None) -> None:
        method = start_method or os.environ.get("PCOPY_START_METHOD") or None
        context = multiprocessing.get_context(method)
        self.stop_event = context.Event()
        self.jobs = jobs
        self._executor = cf.ProcessPoolExecutor(jobs, mp_context=context, initializer=initializer,
                                                initargs=(self.stop_event, True))

    def shutdown(self, kill: bool = False) -> None:
        if kill:
            terminate = getattr(self._executor, "kill_workers", None)  # Python ≥ 3.14
            if terminate is not None:
                terminate()
            else:
                for process in list((getattr(self._executor, "_processes", None) or {}).values()):
                    process.kill()
        self._executor.shutdown(wait=True, cancel_futures=kill)


def make_backend(name: str, jobs: Optional[int], initializer: Callable, scheduler=None, roots=None):
    """A backend with ``jobs`` workers; with a ``scheduler``, the Dask cluster there.

    ``jobs`` may be None only with a scheduler (the cluster's size is used);
    ``roots`` (SRC, DST) are checked to be visible to remote workers.
    """
    if scheduler is not None:
        try:
            from .dask_backend import DaskBackend  # imports distributed: only when asked for
        except ImportError as exc:
            raise PcopyError(f"a scheduler needs the 'dask' extra (pip install 'pcopy[dask]'): {exc}") from None
        return DaskBackend(scheduler, jobs, roots)
    if name == "thread":
        return ThreadBackend(jobs, initializer, threading.Event())
    if name == "process":
        return ProcessBackend(jobs, initializer)
    raise ValueError(f"unknown backend: {name}")


class BoundedPool:
    """Runs ``fn(item)`` for a stream of items with a bounded number in flight."""

    def __init__(self, backend, max_in_flight: int) -> None:
        self.backend = backend
        self.max_in_flight = max(1, max_in_flight)
        self._pending: dict = {}
        self._extra: collections.deque = collections.deque()

    def in_flight(self) -> list:
        return list(self._pending.values())

    def push(self, item) -> None:
        """Queue an extra item (e.g. work handed back by a worker); it goes before new ones."""
        self._extra.append(item)

    def map_unordered(self, fn: Callable, items: Iterable, check: Callable = lambda: None) -> Iterator:
        """Yield ``(item, result, exception)`` as each item completes.

        ``check`` runs at least every WAIT_TICK seconds; it may raise to stop.
        """
        source = iter(items)
        exhausted = False
        while True:
            check()
            while len(self._pending) < self.max_in_flight:
                if self._extra:
                    item = self._extra.popleft()
                elif exhausted:
                    break
                else:
                    try:
                        item = next(source)
                    except StopIteration:
                        exhausted = True
                        continue
                self._pending[self.backend.submit(fn, item)] = item
                check()
            if not self._pending and not self._extra:
                return
            for future in self.backend.wait(list(self._pending), WAIT_TICK):
                item = self._pending.pop(future)
                exc = future.exception()
                yield item, (None if exc is not None else future.result()), exc

    def close(self) -> list:
        """Normal end: every item was consumed; stop the workers.

        Returns the items a lost worker held (they were rerun elsewhere, but
        their directories may hold that worker's temp files).
        """
        lost = self.backend.lost_items()
        self.backend.shutdown(kill=False)
        return lost

    def abort(self, grace: float) -> list:
        """Interrupt: tell workers to stop, wait ``grace`` s, kill the rest.

        Returns the items that were in flight or held by a lost worker (their
        temp files may need removing).
        """
        self.backend.stop_event.set()
        items = self.in_flight() + self.backend.lost_items()
        for future in list(self._pending):
            future.cancel()
        deadline = time.monotonic() + grace
        running = [f for f in self._pending if not f.done()]
        while running and time.monotonic() < deadline:
            running = [f for f in running if not f.done()]
            if running:
                self.backend.wait(running, min(WAIT_TICK, max(0.0, deadline - time.monotonic())))
        self.backend.shutdown(kill=bool(running))
        self._pending.clear()
        return items
