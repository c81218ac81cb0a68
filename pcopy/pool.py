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

BACKENDS = ("process", "thread")
WAIT_TICK = 0.1  # seconds between checks for a stop request while waiting


class ThreadBackend:
    """Workers are threads in this process (fine for big files: I/O and xxhash drop the GIL)."""

    def __init__(self, jobs: int, initializer: Callable, stop_event) -> None:
        self.stop_event = stop_event
        self._executor = cf.ThreadPoolExecutor(jobs, thread_name_prefix="pcopy-worker",
                                               initializer=initializer, initargs=(stop_event, False))

    def submit(self, fn, *args):
        return self._executor.submit(fn, *args)

    def wait(self, futures, timeout):
        return cf.wait(futures, timeout, return_when=cf.FIRST_COMPLETED)[0]

    def shutdown(self, kill: bool = False) -> None:
        self._executor.shutdown(wait=True, cancel_futures=kill)

    def restart(self) -> None:
        raise RuntimeError("a thread pool cannot break")


class ProcessBackend(ThreadBackend):
    """Workers are processes: no GIL contention on the many small syscalls of small files."""

    def __init__(self, jobs: int, initializer: Callable, stop_event=None,
                 start_method: Optional[str] = None) -> None:
        method = start_method or os.environ.get("PCOPY_START_METHOD") or None
        context = multiprocessing.get_context(method)
        self.stop_event = context.Event()
        self._make = lambda: cf.ProcessPoolExecutor(jobs, mp_context=context, initializer=initializer,
                                                    initargs=(self.stop_event, True))
        self._executor = self._make()

    def restart(self) -> None:
        """A worker died (OOM killer, kill -9): the executor is broken, start a fresh one."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = self._make()

    def shutdown(self, kill: bool = False) -> None:
        if kill:
            terminate = getattr(self._executor, "kill_workers", None)  # Python ≥ 3.14
            if terminate is not None:
                terminate()
            else:
                for process in list((getattr(self._executor, "_processes", None) or {}).values()):
                    process.kill()
        self._executor.shutdown(wait=True, cancel_futures=kill)


def make_backend(name: str, jobs: int, initializer: Callable):
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
        self._retried: set = set()  # id() of items resubmitted after a worker died
        self.lost: list = []  # items whose worker died: they may have left temp files

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
                try:
                    future = self.backend.submit(fn, item)
                except cf.BrokenExecutor:
                    self.backend.restart()
                    future = self.backend.submit(fn, item)
                self._pending[future] = item
                check()
            if not self._pending and not self._extra:
                return
            for future in self.backend.wait(list(self._pending), WAIT_TICK):
                item = self._pending.pop(future)
                exc = future.exception()
                if isinstance(exc, cf.BrokenExecutor):
                    self.lost.append(item)
                    if id(item) not in self._retried:  # maybe another batch's worker died: try once more
                        self._retried.add(id(item))
                        self._extra.append(item)
                        continue
                yield item, (None if exc is not None else future.result()), exc

    def map_ordered(self, fn: Callable, items: Iterable, check: Callable = lambda: None,
                    window: Optional[int] = None) -> Iterator:
        """Yield ``(payload, result, exception)`` in the order of ``items``.

        ``items`` yields ``(payload, work)``; ``fn(work)`` runs in the pool,
        and a ``work`` of None means nothing to run (result None). At most
        ``window`` items are held between being pulled and being yielded, so
        a slow item at the head bounds memory instead of letting results pile up.
        """
        window = max(window or 4 * self.max_in_flight, 1)
        queue: collections.deque = collections.deque()  # [payload, result, exc, done], in order

        def settle():
            check()
            for future in self.backend.wait(list(self._pending), WAIT_TICK):
                slot = self._pending.pop(future)
                exc = future.exception()
                slot[1], slot[2], slot[3] = (None if exc is not None else future.result()), exc, True

        for payload, work in items:
            check()
            slot = [payload, None, None, work is None]
            if work is not None:
                while len(self._pending) >= self.max_in_flight:
                    settle()
                self._pending[self.backend.submit(fn, work)] = slot
            queue.append(slot)
            while queue and (queue[0][3] or len(queue) >= window):
                if queue[0][3]:
                    head = queue.popleft()
                    yield head[0], head[1], head[2]
                else:
                    settle()
        while queue:
            if queue[0][3]:
                head = queue.popleft()
                yield head[0], head[1], head[2]
            else:
                settle()

    def close(self) -> None:
        """Normal end: every item was consumed; stop the workers."""
        self.backend.shutdown(kill=False)

    def abort(self, grace: float) -> list:
        """Interrupt: tell workers to stop, wait ``grace`` s, kill the rest.

        Returns the items that were in flight (their temp files may need removing).
        """
        self.backend.stop_event.set()
        items = self.in_flight()
        for future in list(self._pending):
            future.cancel()
        deadline = time.monotonic() + grace
        running = [f for f in self._pending if not f.done()]
        while running and time.monotonic() < deadline:
            running = [f for f in running if not f.done()]
            if running:
                cf.wait(running, min(WAIT_TICK, max(0.0, deadline - time.monotonic())))
        self.backend.shutdown(kill=bool(running))
        self._pending.clear()
        return items
