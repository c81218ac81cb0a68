"""A bounded pool over any backend: the only way commands run work in parallel.

    items (generator) ──► submit while in flight < max ──► backend workers
           ▲                                                   │
           └──── pulled only when a slot frees (back-pressure) ◄┘ results, as completed

Memory stays flat because at most ``max_in_flight`` items exist beyond the
producer at any time (``Executor.map(buffersize=)`` in CPython 3.14 bounds its
tasks the same way).

Stopping: the backend's ``stop_event`` tells workers to drop their current
file and return; ``abort`` waits a short grace period and then kills what is
still running, so Ctrl-C never hangs the way ``multiprocessing.Pool.map`` does.
"""

from __future__ import annotations

import collections
import time
from typing import Callable, Iterable, Iterator, Optional

from .backend import default_jobs, make_backend
from .process import WorkerDied

WAIT_TICK = 0.1  # seconds between checks for a stop request while waiting
ABORT_GRACE = 1.5  # seconds in-flight work may take to stop after Ctrl-C
IN_FLIGHT_PER_WORKER = 4


def make_pool(backend: str = "process", jobs: Optional[int] = None, scheduler=None,
              roots: Optional[tuple] = None, per_worker: int = IN_FLIGHT_PER_WORKER) -> "BoundedPool":
    """A BoundedPool on a new backend (see ``backend.make_backend``)."""
    workers = make_backend(backend, jobs if jobs or scheduler is not None else default_jobs(), scheduler, roots)
    return BoundedPool(workers, max_in_flight=workers.jobs * per_worker)


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
                self._pending[self.backend.submit(fn, item)] = item
                check()
            if not self._pending and not self._extra:
                return
            for future in self.backend.wait(list(self._pending), WAIT_TICK):
                item = self._pending.pop(future)
                exc = future.exception()
                if isinstance(exc, WorkerDied):
                    self.lost.append(item)
                    if not exc.running:  # queued behind the item that died with its worker: not its fault
                        self._extra.append(item)
                        continue
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

    def take_lost(self) -> list:
        """Items whose worker died (they ran again): their directories may hold its temp files."""
        lost, self.lost = self.lost + self.backend.lost_items(), []
        return lost

    @property
    def started(self) -> bool:
        """Whether any worker was started (a run that is all cache hits starts none)."""
        return self.backend.started

    def close(self) -> None:
        """Normal end: every item was consumed; stop the workers (bounded)."""
        self.backend.shutdown(kill=False)

    def abort(self, grace: float) -> list:
        """Interrupt: tell workers to stop, wait ``grace`` s, kill the rest.

        Returns the items that were in flight (their temp files may need removing).
        """
        self.backend.stop_event.set()
        items = self.in_flight() + self.take_lost()
        for future in list(self._pending):
            future.cancel()
        deadline = time.monotonic() + grace
        running = [f for f in self._pending if not f.done()]
        while running and time.monotonic() < deadline:
            self.backend.wait(running, min(WAIT_TICK, max(0.0, deadline - time.monotonic())))
            running = [f for f in running if not f.done()]
        self.backend.shutdown(kill=bool(running))
        self._pending.clear()
        self._extra.clear()
        return items

    def __enter__(self) -> "BoundedPool":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Leaving with an exception aborts (bounded); a normal exit closes."""
        if exc_type is None:
            self.close()
        else:
            self.abort(ABORT_GRACE)
