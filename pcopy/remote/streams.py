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

from ..errors import PcopyError
from ..model.entries import ATTRS, CHECKSUM, COPY, FILE, LINK, SYMLINK, Batch, Task, relpath_join
from ..model.results import COPIED, NOTE, SKIPPED, VANISHED, Result, failure
from ..runtime import worker as runtime_worker
from .protocol import ProtocolError, pick_codec, result_in
from .receive import MISMATCH, receive_batch
from .send import send_batch
from .transport import Connection

RESEND = 1  # a file whose digests differed after the transfer is sent once more, then reported


class Mover:
    """What one stream does with a batch; ``push``: SRC is here and DST there, else the other way."""

    def __init__(self, push: bool, src, dst, token: str, spec: dict, local_options, follow: bool,
                 dry_run: bool, stop: threading.Event, compress: bool = False) -> None:
        self.push = push
        self.src, self.dst = src, dst
        self.token, self.spec = token, spec
        self.local_options = local_options  # the receiver's Options when DST is here (pull)
        self.follow = follow
        self.dry_run = dry_run
        self.stop = stop
        self.compress = compress  # -z: chunks compressed with the best codec both ends have

    def run(self, conn: Connection, batch: Batch) -> list:
        results: list = []
        tasks = list(batch.tasks)
        checks = [t for t in tasks if t.action == CHECKSUM]
        same: list = []
        if checks:
            differ, same = self._compare(conn, batch.reldir, checks)
            tasks = [t for t in tasks if t.action != CHECKSUM] + differ
        fixes = [t for t in tasks if t.action == ATTRS]
        if fixes or same:
            tasks = [t for t in tasks if t.action != ATTRS]
            results.extend(self.fix(conn, batch.reldir, fixes + same, len(fixes)))
        if self.dry_run:
            results.extend(Result(relpath_join(batch.reldir, t.name), COPIED, SYMLINK if t.action == LINK else FILE,
                                  max(t.size, 0), None, t.why) for t in tasks)
            return notes_last(results)
        for attempt in range(RESEND + 1):
            if not tasks:
                break
            moved = self._move(conn, batch.reldir, tasks)
            again = {r.relpath for r in moved if r.reason == MISMATCH} if attempt < RESEND else set()
            results.extend(r for r in moved if r.relpath not in again)
            tasks = [t for t in tasks if relpath_join(batch.reldir, t.name) in again]
        return notes_last(results)

    def _compare(self, conn: Connection, reldir: str, checks: list) -> tuple:
        """-c with equal sizes: digests from each side, computed where the files are; (the differing
        ones, to copy; the same ones, whose other times, mode, owner or attributes are fixed in place)."""
        names = [t.name for t in checks]
        ours = self.src.digests(reldir, names, conn)
        theirs = self.dst.digests(reldir, names, conn)
        copy, same = [], []
        for task, a, b in zip(checks, ours, theirs, strict=True):
            if a is not None and a == b:
                same.append(Task(ATTRS, task.name, task.size, "." + task.why[1] + "." + task.why[3:]))
            else:
                copy.append(Task(COPY, task.name, task.size, task.why))
        return copy, same

    def fix(self, conn: Connection, reldir: str, tasks: list, planned: int = -1) -> list:
        """ATTRS: content unchanged, other mode, owner, times or attributes: the SRC end's stat and
        attributes go to the DST end, which fixes them in place (nothing is sent again). The tasks
        after the first ``planned`` come from -c (their digests matched)."""
        attrs = self.attrs
        found = self.src.src_meta([relpath_join(reldir, t.source or t.name) for t in tasks], self.follow, attrs, conn)
        items, results = [], []
        for n, (task, (meta, plain, error)) in enumerate(zip(tasks, found, strict=True)):
            relpath = relpath_join(reldir, task.name)
            if meta is None:
                gone = Result(relpath, SKIPPED, FILE, 0, None, "", VANISHED, "vanished before it could be copied")
                results.append(failure(relpath, FILE, f"source: {error}") if error is not None else gone)
            else:
                items.append([task.name, task.why, meta, plain, 0 <= planned <= n])
                if error is not None:  # its attributes could not be read: the run's warning
                    results.append(Result("", NOTE, FILE, 0, None, "", "", error))
        if items:
            spec = dict(self.spec, dry=self.dry_run)
            results.extend(result_in(r) for r in self.dst.fix(reldir, items, self.token, spec, conn))
        return results

    @property
    def attrs(self) -> tuple:
        return bool(self.spec.get("xattrs")), bool(self.spec.get("acls"))

    def _move(self, conn: Connection, reldir: str, tasks: list) -> list:
        files = [[t.name, t.why, t.action == LINK] for t in tasks]
        if self.push:
            conn.send({"op": "recv", "root": self.dst.root, "token": self.token, "reldir": reldir,
                       "opts": self.spec})
            codec = pick_codec(conn.codecs) if self.compress else ""
            sent = send_batch(self.src.root, reldir, files, conn.send, self.follow, self.stop, codec, self.attrs)
            written = conn.answer()["results"]
        else:
            conn.send({"op": "send", "root": self.src.root, "reldir": reldir, "files": files,
                       "follow": self.follow, "z": pick_codec(conn.codecs) if self.compress else "",
                       "attrs": list(self.attrs)})
            try:
                written = receive_batch(self.local_options, reldir, _frames(conn))
            except ProtocolError as exc:  # a hostile or broken remote: named, one line
                raise PcopyError(f"{conn.spec.host}: {exc}") from None
            sent = conn.answer()["results"]
        return [result_in(r) for r in sent] + [result_in(r) for r in written]


def _frames(conn: Connection) -> Callable:
    def next_frame():
        header, payload = conn.recv()
        if "t" not in header:
            raise PcopyError(f"{conn.spec.host}: {header.get('error', 'the remote pcopy refused the batch')}")
        return header, payload
    return next_frame


class Streams:
    """N threads, one Connection each, a bounded queue of batches in and a queue of results out."""

    def __init__(self, conns: list, mover: Mover) -> None:
        self.conns = conns
        self.mover = mover
        self.todo: queue.Queue = queue.Queue(maxsize=2 * len(conns))
        self.done: queue.Queue = queue.Queue()
        self.error: Optional[BaseException] = None
        self.in_flight = 0
        self.threads = [threading.Thread(target=self._serve, args=(c,), name=f"pcopy-stream-{i}", daemon=True)
                        for i, c in enumerate(conns)]
        for thread in self.threads:
            thread.start()

    def _serve(self, conn: Connection) -> None:
        try:
            while True:
                batch = self.todo.get()
                if batch is None:
                    return
                if self.error is not None or self.mover.stop.is_set():
                    self.done.put((batch, None))
                    continue
                try:
                    results = self.mover.run(conn, batch)
                except BaseException as exc:
                    if self.error is None:
                        self.error = exc
                    self.mover.stop.set()
                    results = None
                self.done.put((batch, results))
        finally:
            runtime_worker.drop_dir_caches()

    def put(self, batch: Batch, take: Callable, check: Callable) -> None:
        """Queue a batch, taking finished results while the queue is full."""
        while True:
            check()
            self.drain(take)
            try:
                self.todo.put(batch, timeout=0.05)
                self.in_flight += 1
                return
            except queue.Full:
                continue

    def drain(self, take: Callable, wait: bool = False, check: Optional[Callable] = None) -> None:
        while self.in_flight:
            try:
                batch, results = self.done.get(timeout=0.05 if wait else 0)
            except queue.Empty:
                if not wait:
                    return
                if check is not None:
                    check()
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


def notes_last(results: list) -> list:
    """Both ends' one-line warnings (NOTE results) after the files, where the consumer looks for them."""
    notes = [r for r in results if r.status == NOTE]
    return [r for r in results if r.status != NOTE] + notes if notes else results


def failed(batch: Batch, message: str) -> list:
    return [failure(relpath_join(batch.reldir, t.name), SYMLINK if t.action == LINK else FILE, message)
            for t in batch.tasks]
