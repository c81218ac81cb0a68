"""Several ssh sessions in parallel, each served by one thread of the client: a thread takes a
batch (the files of one directory, up to the batch limits: many small files travel in one
request, a big file alone), moves it over its own session and hands back one Result per file.

Why sessions, not ControlMaster channels: channels of one connection share one TCP stream, one
cipher context and one sshd process on the remote, so they serialize on the same core at both
ends; separate sessions give each stream its own ssh process and its own ``pcopy serve``,
which is what lets the work spread over the cores of both machines. A user's own ControlMaster
setting in ~/.ssh/config still applies (then the sessions share its connection).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Optional

from ..model.entries import CHECKSUM, FILE, LINK, SYMLINK, Batch, relpath_join
from ..model.results import failure
from ..runtime import worker as runtime_worker
from .mover import Mover
from .transport import Connection

STAGGER = 0.2  # seconds after a session came up before another one is opened for the same backlog
BIG_BACKLOG = 64 << 20  # bytes waiting in the queue that are worth another session at once (no stagger)


class Streams:
    """Up to ``count`` threads, each moving batches over a session of its own (the first over the
    control session, ``shared``, when given); a bounded queue of batches in and a queue of results out.

    Sessions start when they are needed, not up front: each costs an ssh handshake, a remote login
    shell and an interpreter start (about 0.1 s of CPU here and 0.2 s on the remote), which would
    dominate a no-op sync or a small run. The first thread starts with the first batch; one more
    when batches still queue up behind the running ones STAGGER after the last session came up (so
    a run that one session clears quickly never pays for a second), or at once when BIG_BACKLOG bytes
    wait; a thread opens its session with its first batch that needs one (a dry run without -c needs
    none).
    """

    def __init__(self, open_session: Callable[[], Connection], count: int, mover: Mover,
                 shared: Optional[Connection] = None, release: Optional[Callable[[Connection], None]] = None) -> None:
        self.open_session = open_session
        self.release = release  # gets a stream's own session back when the stream ends cleanly
        self.shared = shared  # the control session: the first stream's, from the first batch on
        self.count = max(1, count)
        self.mover = mover
        self.todo: queue.Queue = queue.Queue(maxsize=2 * self.count)
        self.done: queue.Queue = queue.Queue()
        self.error: Optional[BaseException] = None
        self.in_flight = 0
        self.threads: list = []
        self.lock = threading.Lock()
        self.waiting_bytes = 0  # of the batches in the queue
        self.opening = 0  # threads started whose session is not up yet (or not needed yet)
        self.came_up = 0.0  # when the last one was ready (time.monotonic)

    def _add(self) -> None:
        with self.lock:
            self.opening += 1
        conn = self.shared if not self.threads else None
        thread = threading.Thread(target=self._serve, args=(conn,), name=f"pcopy-stream-{len(self.threads)}",
                                  daemon=True)
        self.threads.append(thread)
        thread.start()

    def _needs_session(self, batch: Batch) -> bool:
        return not self.mover.dry_run or any(t.action == CHECKSUM for t in batch.tasks)

    def _serve(self, conn: Optional[Connection]) -> None:
        """Batches are pipelined on a session of the stream's own: the next batch is sent before the
        previous one's answer is read, so a round trip per batch is not waited for while work is
        queued (the 1 ms-latency row). On the shared control session a batch is one operation under
        its ``op_lock``, so the flow's own operations find their turn between batches."""
        if conn is not None:
            self._serve_shared(conn)
            return
        begun: Optional[list] = None  # a batch sent whose answer is not read yet
        first = True
        try:
            while True:
                if begun is None:
                    batch = self.todo.get()
                else:
                    try:
                        batch = self.todo.get_nowait()
                    except queue.Empty:
                        self._end(conn, begun)
                        begun = None
                        continue
                if batch is None:
                    self._end(conn, begun)
                    if conn is not None and self.error is None and self.release is not None:
                        self.release(conn)  # nothing in flight on it: the next flow may use it
                    return
                with self.lock:
                    self.waiting_bytes -= _size(batch)
                if self.error is not None or self.mover.stop.is_set():
                    self._end(conn, begun, failed=True)
                    begun = None
                    self.done.put((batch, None))
                    continue
                try:
                    if conn is None and self._needs_session(batch):
                        conn = self._open(first)
                        first = False
                    elif first:
                        first = False
                        self._opened()  # this stream needs no session (yet): it does not hold the next one back
                    if not self.mover.overlaps(batch):
                        self._end(conn, begun)
                        begun = None
                        self.done.put((batch, self.mover.run(conn, batch)))  # type: ignore[arg-type]
                        continue
                    started = self.mover.begin(conn, batch)  # type: ignore[arg-type]
                except BaseException as exc:
                    self._failed(exc)
                    self._end(conn, begun, failed=True)
                    begun = None
                    self.done.put((batch, None))
                    continue
                self._end(conn, begun)
                begun = started
        finally:
            runtime_worker.drop_dir_caches()

    def _serve_shared(self, conn: Connection) -> None:
        self._opened()  # up already: the next stream need not wait for this one
        try:
            while True:
                batch = self.todo.get()
                if batch is None:
                    return
                with self.lock:
                    self.waiting_bytes -= _size(batch)
                results = None
                if self.error is None and not self.mover.stop.is_set():
                    try:
                        with conn.op_lock:
                            results = self.mover.run(conn, batch)
                    except BaseException as exc:
                        self._failed(exc)
                self.done.put((batch, results))
        finally:
            runtime_worker.drop_dir_caches()

    def _open(self, counted: bool) -> Connection:
        try:
            return self.open_session()
        finally:
            self._opened(counted)

    def _opened(self, counted: bool = True) -> None:
        with self.lock:
            self.opening -= counted
            self.came_up = time.monotonic()

    def _end(self, conn: Optional[Connection], begun: Optional[list], failed: bool = False) -> None:
        """Read the answer of the batch in ``begun`` (if any) and hand its Results on (None when it failed)."""
        if begun is None:
            return
        results = None
        if not failed and self.error is None:
            try:
                results = self.mover.end(conn, begun)  # type: ignore[arg-type]
            except BaseException as exc:
                self._failed(exc)
        self.done.put((begun[0], results))

    def _failed(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.mover.stop.set()

    def put(self, batch: Batch, take: Callable, check: Callable) -> None:
        """Queue a batch, taking finished results while the queue is full; start one more stream when
        batches wait behind the running ones."""
        if not self.threads:
            self._add()
        while True:
            check()
            self.drain(take)
            self._grow()
            try:
                with self.lock:
                    self.waiting_bytes += _size(batch)
                self.todo.put(batch, timeout=0.05)
                self.in_flight += 1
                return
            except queue.Full:
                with self.lock:
                    self.waiting_bytes -= _size(batch)
                continue

    def _grow(self) -> None:
        """One more stream when batches wait behind every running one and no session is opening."""
        if len(self.threads) >= self.count or self.todo.qsize() < len(self.threads):
            return
        if self.waiting_bytes >= BIG_BACKLOG or (not self.opening and time.monotonic() - self.came_up >= STAGGER):
            self._add()

    def drain(self, take: Callable, wait: bool = False, check: Optional[Callable] = None) -> None:
        while self.in_flight:
            try:
                batch, results = self.done.get(timeout=0.05 if wait else 0)
            except queue.Empty:
                if not wait:
                    return
                if check is not None:
                    check()
                self._grow()  # the walk is done but batches still wait: the last big files
                continue
            self.in_flight -= 1
            if self.error is not None and results is None:
                continue
            take(batch, results)
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        for _ in self.threads:
            try:
                self.todo.put_nowait(None)
            except queue.Full:
                break
        deadline = time.monotonic() + 1.0  # bounded: a thread stuck on a cut session is a daemon
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _size(batch: Batch) -> int:
    return sum(max(t.size, 0) for t in batch.tasks)


def failed(batch: Batch, message: str) -> list:
    return [failure(relpath_join(batch.reldir, t.name), SYMLINK if t.action == LINK else FILE, message)
            for t in batch.tasks]
