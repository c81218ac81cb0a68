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
import multiprocessing
import multiprocessing.connection as mp_connection
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
        import concurrent.futures as cf  # only for threads: it pulls in logging (start-up time)

        self._cf = cf
        self.stop_event = stop_event
        self.jobs = jobs
        self._executor = cf.ThreadPoolExecutor(jobs, thread_name_prefix="pcopy-worker",
                                               initializer=initializer, initargs=(stop_event, False))

    def submit(self, fn, *args):
        return self._executor.submit(fn, *args)

    def wait(self, futures, timeout):
        return self._cf.wait(futures, timeout, return_when=self._cf.FIRST_COMPLETED)[0]

    def shutdown(self, kill: bool = False) -> None:
        self._executor.shutdown(wait=True, cancel_futures=kill)

    def start(self) -> None:
        """Threads start with their first item."""

    def lost_items(self) -> list:
        """Items whose worker vanished and that ran again elsewhere (the Dask backend has some)."""
        return []


class WorkerDied(Exception):
    """The worker process running this item exited (killed, out of memory)."""


class _Future:
    """A process-backend future: settled by ``ProcessBackend.wait`` in the owner's thread, so no locks.

    It has the parts of ``concurrent.futures.Future`` that BoundedPool uses.
    """

    __slots__ = ("_state", "_value", "_error")

    def __init__(self) -> None:
        self._state, self._value, self._error = "pending", None, None

    def set_running_or_notify_cancel(self) -> bool:
        if self._state == "cancelled":
            return False
        self._state = "running"
        return True

    def cancel(self) -> bool:
        if self._state == "pending":
            self._state = "cancelled"
        return self._state == "cancelled"

    def cancelled(self) -> bool:
        return self._state == "cancelled"

    def done(self) -> bool:
        return self._state in ("finished", "cancelled")

    def set_result(self, value) -> None:
        self._state, self._value = "finished", value

    def set_exception(self, error: BaseException) -> None:
        self._state, self._error = "finished", error

    def exception(self):
        return self._error if self._state != "cancelled" else RuntimeError("cancelled")

    def result(self):
        if self._error is not None:
            raise self._error
        return self._value


def _worker_main(conn, initializer: Callable, initargs: tuple) -> None:
    """A worker process: run (fn, args) messages until told to stop or the parent goes away."""
    initializer(*initargs)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, args = message
        try:
            reply = (True, fn(*args))
        except BaseException as exc:  # a failing item must not kill the worker
            reply = (False, exc)
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # the result or exception could not be pickled
            conn.send((False, RuntimeError(f"result not transferable: {type(exc).__name__}: {exc}")))


class _Worker:
    def __init__(self, context, initializer: Callable, initargs: tuple) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, initializer, initargs),
                                       name="pcopy-worker", daemon=True)
        self.process.start()
        child.close()
        self.sent: collections.deque = collections.deque()  # futures whose items it holds, in order


class ProcessBackend:
    """Workers are processes: no GIL contention on the many small syscalls of small files.

    Each worker has its own pipe and at most ``DEPTH`` items sent ahead; the
    parent sends and receives only inside ``submit``/``wait``, in its own
    thread. Unlike ``concurrent.futures.ProcessPoolExecutor`` there are no
    feeder or manager threads, whose GIL hand-offs cost more than the
    copying of small files itself. A worker that dies fails only the items
    it held (``WorkerDied``) and is replaced.
    """

    DEPTH = 2

    def __init__(self, jobs: int, initializer: Callable, start_method: Optional[str] = None) -> None:
        method = start_method or os.environ.get("PCOPY_START_METHOD") or None
        self._context = multiprocessing.get_context(method)
        self.stop_event = self._context.Event()
        self.jobs = jobs
        self._initializer = initializer
        self._workers: list = []  # started on the first submit: a no-op run starts none
        self._queue: collections.deque = collections.deque()  # (future, message) not sent yet

    def _spawn(self) -> _Worker:
        return _Worker(self._context, self._initializer, (self.stop_event, True))

    def start(self) -> None:
        """Start the worker processes now (they start on the first submit otherwise)."""
        if not self._workers:
            self._workers = [self._spawn() for _ in range(self.jobs)]

    def submit(self, fn, *args):
        self.start()
        future = _Future()
        self._queue.append((future, (fn, args)))
        self._dispatch()
        return future

    def _dispatch(self) -> None:
        while self._queue:
            worker = min(self._workers, key=lambda w: len(w.sent))
            if len(worker.sent) >= self.DEPTH:
                return
            future, message = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                worker.conn.send(message)
            except OSError:  # the worker died while idle: replace it, send this item elsewhere
                self._queue.appendleft((future, message))
                self._replace(worker)
                continue
            worker.sent.append(future)

    def wait(self, futures, timeout):
        futures = list(futures)
        if not any(f.done() for f in futures):
            busy = [w for w in self._workers if w.sent]
            ready = mp_connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
            for worker in busy:
                if worker.conn in ready:
                    self._receive(worker)
                elif worker.process.sentinel in ready:
                    self._replace(worker)
            self._dispatch()
        return {f for f in futures if f.done()}

    def _receive(self, worker: _Worker) -> None:
        try:
            while worker.sent and worker.conn.poll():
                ok, value = worker.conn.recv()
                future = worker.sent.popleft()
                future.set_result(value) if ok else future.set_exception(value)
        except (EOFError, OSError):
            self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        worker.process.join(timeout=1.0)
        while worker.sent:
            worker.sent.popleft().set_exception(WorkerDied(f"worker process {worker.process.pid} died "
                                                           f"(exit code {worker.process.exitcode})"))
        worker.conn.close()
        self._workers[self._workers.index(worker)] = self._spawn()

    def lost_items(self) -> list:
        return []  # BoundedPool keeps track of the items of dead workers itself

    def shutdown(self, kill: bool = False) -> None:
        for future, _ in self._queue:
            future.cancel()
        self._queue.clear()
        for worker in self._workers:
            if kill:
                worker.process.kill()
            else:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        for worker in self._workers:
            worker.process.join(timeout=None if not kill else 5.0)
            worker.conn.close()
        self._workers = []


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

    def close(self) -> None:
        """Normal end: every item was consumed; stop the workers."""
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
        return items
