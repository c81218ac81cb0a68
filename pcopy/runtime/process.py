"""Worker processes: no GIL contention on the many small syscalls of small files.

    parent (one thread)                          worker i
      submit ─► queue ─► send (fn, args) ───pipe i───► recv ─► fn(*args)
      wait   ◄─ recv (ok, value) ◄──────────pipe i──── send result (or a WorkerError)

Each worker has its own pipe and at most ``DEPTH`` items sent ahead; the
parent sends and receives only inside ``submit``/``wait``, in its own thread.
Unlike ``concurrent.futures.ProcessPoolExecutor`` there are no feeder or
manager threads, whose GIL hand-offs cost more than copying small files. A
worker that dies fails only the items it held (``WorkerDied``) and is
replaced. Workers start on the first submit (a run that needs none starts
none), die with the parent (``children``), and every wait here is bounded.
"""

from __future__ import annotations

import collections
import multiprocessing
import multiprocessing.connection as mp_connection
import os
from typing import Optional

from ..errors import describe
from . import children, worker

DEPTH = 2  # items sent ahead to one worker
JOIN_TIMEOUT = 2.0  # seconds a stopping worker may take before it is killed


class WorkerDied(Exception):
    """The worker process holding this item exited (killed, out of memory). ``running``: the item was
    the one it was working on, not one queued behind it (which did nothing to kill it)."""

    def __init__(self, message: str, running: bool = True) -> None:
        super().__init__(message)
        self.running = running


class WorkerError(Exception):
    """An item raised in a worker; only its one-line description travels (any exception can)."""


class Future:
    """A process-backend future, settled by ``ProcessBackend.wait`` in the owner's thread (no locks).

    It has the parts of ``concurrent.futures.Future`` that the pool uses.
    """

    __slots__ = ("_state", "_value", "_error")

    def __init__(self) -> None:
        self._state: str = "pending"
        self._value: object = None
        self._error: Optional[BaseException] = None

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
        return self._error if self._state != "cancelled" else WorkerError("cancelled")

    def result(self):
        if self._error is not None:
            raise self._error
        return self._value


def _worker_main(conn, stop_event, parent: Optional[int]) -> None:
    """A worker process: run (fn, args) messages until told to stop or the parent goes away."""
    children.child_start(parent)
    worker.init(stop_event, in_subprocess=True)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        except Exception as exc:  # an item that cannot be unpickled here
            reply = (False, WorkerError(f"cannot receive the work item: {describe(exc)}"))
        else:
            if message is None:
                return
            fn, args = message
            try:
                reply = (True, fn(*args))
            except BaseException as exc:  # a failing item must not kill the worker
                reply = (False, WorkerError(describe(exc)))
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return  # the pipe failed: the parent sees this worker die and reruns or fails its item
        except Exception as exc:  # the result could not be pickled
            try:
                conn.send((False, WorkerError(f"result not transferable: {describe(exc)}")))
            except (EOFError, OSError):
                return


class _Worker:
    def __init__(self, context, stop_event) -> None:
        parent = os.getpid() if context.get_start_method() != "forkserver" else None
        self.conn, child = context.Pipe()
        children.register_parent_end(self.conn)
        self.process = context.Process(target=_worker_main, args=(child, stop_event, parent),
                                       name="pcopy-worker", daemon=True)
        self.process.start()
        child.close()
        self.sent: collections.deque = collections.deque()  # futures whose items it holds, in order

    def stop(self, kill: bool) -> None:
        """Ask (or force) the process to end; ``reap`` waits for it."""
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass

    def reap(self, timeout: float) -> None:
        """Wait up to ``timeout`` s, then kill and wait briefly; close the pipe."""
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(JOIN_TIMEOUT)
        children.forget_parent_end(self.conn)
        self.conn.close()


class ProcessBackend:
    """The pool backend of worker processes (see the module docstring)."""

    def __init__(self, jobs: int, start_method: Optional[str] = None) -> None:
        method = start_method or os.environ.get("PCOPY_START_METHOD") or None
        self._context = multiprocessing.get_context(method)
        self.stop_event = self._context.Event()
        self.jobs = jobs
        self._workers: list = []
        self._queue: collections.deque = collections.deque()  # (future, message) not sent yet

    @property
    def started(self) -> bool:
        return bool(self._workers)

    def start(self) -> None:
        """Start the worker processes now (they start on the first submit otherwise)."""
        if not self._workers:
            self._workers = [_Worker(self._context, self.stop_event) for _ in range(self.jobs)]

    def submit(self, fn, *args):
        self.start()
        future = Future()
        self._queue.append((future, (fn, args)))
        self._dispatch()
        return future

    def _dispatch(self) -> None:
        while self._queue:
            target = min(self._workers, key=lambda w: len(w.sent))
            if len(target.sent) >= DEPTH:
                return
            future, message = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                target.conn.send(message)
            except OSError:  # the worker died while idle: replace it, send this item elsewhere
                self._queue.appendleft((future, message))
                self._replace(target)
                continue
            except Exception as exc:  # the item cannot be pickled
                future.set_exception(WorkerError(f"cannot send the work item: {describe(exc)}"))
                continue
            target.sent.append(future)

    def wait(self, futures, timeout: float):
        futures = list(futures)
        if not any(f.done() for f in futures):
            busy = [w for w in self._workers if w.sent]
            ready = mp_connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
            for target in busy:
                if target.conn in ready:
                    self._receive(target)
                elif target.process.sentinel in ready:
                    self._replace(target)
            self._dispatch()
        return {f for f in futures if f.done()}

    def _receive(self, target: _Worker) -> None:
        try:
            while target.sent and target.conn.poll():
                try:
                    ok, value = target.conn.recv()
                except (EOFError, OSError):
                    raise
                except Exception as exc:  # a result that cannot be unpickled here
                    ok, value = False, WorkerError(f"result not transferable: {describe(exc)}")
                future = target.sent.popleft()
                future.set_result(value) if ok else future.set_exception(value)
        except (EOFError, OSError):
            self._replace(target)

    def _replace(self, target: _Worker) -> None:
        """A worker died (or its pipe broke): fail what it held, make sure it is gone, start another."""
        target.stop(kill=True)
        target.reap(JOIN_TIMEOUT)
        running = True  # the pipe is FIFO: the first unanswered item is the one it was working on
        while target.sent:
            target.sent.popleft().set_exception(WorkerDied(f"worker process {target.process.pid} died "
                                                           f"(exit code {target.process.exitcode})", running))
            running = False
        self._workers[self._workers.index(target)] = _Worker(self._context, self.stop_event)

    def lost_items(self) -> list:
        return []  # the pool keeps track of the items of dead workers itself

    def shutdown(self, kill: bool = False) -> None:
        """Stop every worker; bounded: a worker that does not exit in time is killed."""
        for future, _ in self._queue:
            future.cancel()
        self._queue.clear()
        workers, self._workers = self._workers, []
        for target in workers:
            target.stop(kill)
        for target in workers:
            target.reap(JOIN_TIMEOUT)
