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
from ..model.entries import ATTRS, CHECKSUM, COPY, FILE, HASH, LINK, LINKDEST, SYMLINK, Batch, Task, relpath_join
from ..model.results import COPIED, DEFERRED, LINKED, NOTE, SKIPPED, VANISHED, Result, failure
from ..runtime import worker as runtime_worker
from . import resume
from .dstonly import run_dst_tasks
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
        known: dict = {}  # -c: the digests that matched (the manifest's lines for files fixed in place)
        if checks:
            differ, same, known = self._compare(conn, batch.reldir, checks)
            tasks = [t for t in tasks if t.action != CHECKSUM] + differ
        fixes = [t for t in tasks if t.action == ATTRS]
        if fixes or same:
            tasks = [t for t in tasks if t.action != ATTRS]
            fixed = self.fix(conn, batch.reldir, fixes + same, len(fixes))
            results.extend(r._replace(digest=known[r.relpath]) if r.digest is None and r.relpath in known else r
                           for r in fixed)
        if self.dry_run:
            results.extend(Result(relpath_join(batch.reldir, t.name), LINKED, FILE, max(t.size, 0), None, t.why,
                                  "", t.source) if t.action == LINKDEST else
                           Result(relpath_join(batch.reldir, t.name), COPIED, SYMLINK if t.action == LINK else FILE,
                                  max(t.size, 0), None, t.why) for t in tasks)
            return notes_last(results)
        there = [t for t in tasks if t.action in (HASH, LINKDEST)]
        if there:
            tasks = [t for t in tasks if t.action not in (HASH, LINKDEST)] + self._at_dst(conn, batch.reldir, there,
                                                                                       results)
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
        ours = self.src.digests(reldir, [t.source or t.name for t in checks], conn)
        theirs = self.dst.digests(reldir, [t.name for t in checks], conn)
        copy, same, known = [], [], {}
        for task, a, b in zip(checks, ours, theirs, strict=True):
            if a is not None and a == b:
                same.append(Task(ATTRS, task.name, task.size, "." + task.why[1] + "." + task.why[3:], task.source))
                known[relpath_join(reldir, task.name)] = a
            else:
                copy.append(Task(COPY, task.name, task.size, task.why, task.source))
        return copy, same, known

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

    def _at_dst(self, conn: Connection, reldir: str, tasks: list, results: list) -> list:
        """Hash (for the manifest) or hard-link (--link-dest) on the DST end (``dstonly``); returns the
        files that must be copied after all (the snapshot's copy went away)."""
        by_name = {t.name: t for t in tasks}
        copy = []
        given: dict = {}
        links = [t for t in tasks if t.action == LINKDEST]
        if links and any(self.attrs):  # -X/-A: SRC's attributes, read where SRC is, decide with the rest
            found = self.src.src_meta([relpath_join(reldir, t.name) for t in links], self.follow, self.attrs, conn)
            for task, (meta, plain, _) in zip(links, found, strict=True):
                if meta is None:
                    copy.append(Task(COPY, task.name, task.size, task.why))  # the copy reports what happened
                    tasks = [t for t in tasks if t is not task]
                else:
                    given[task.name] = plain
        if not tasks:
            return copy
        if self.dst.remote:
            done = self.dst.dst_tasks(reldir, tasks, self.token, self.spec, conn, given)
        else:
            done = run_dst_tasks(self.dst.root, self.token, reldir, tasks, self.spec, given)
        for result in map(result_in, done):
            if result.status == DEFERRED:
                task = by_name[result.relpath.rpartition("/")[2]]
                copy.append(Task(COPY, task.name, task.size, task.why))
            else:
                results.append(result)
        return copy

    def _move(self, conn: Connection, reldir: str, tasks: list) -> list:
        files = [[t.source or t.name, t.why, t.action == LINK] for t in tasks]
        renamed = {t.source: t.name for t in tasks if t.source and t.source != t.name}  # one file, new name
        if self.spec.get("partial"):  # what the DST end kept of big files: only the rest is sent (``resume``)
            big = [i for i, t in enumerate(tasks) if t.action == COPY and t.size > resume.MIN_SIZE]
            if big:
                names = [tasks[i].name for i in big]
                sizes = self.dst.kept_sizes(reldir, names, conn) if self.dst.remote else \
                    resume.kept_sizes(self.dst.root, reldir, names)
                for i, kept in zip(big, sizes, strict=True):
                    if kept:
                        files[i].append(int(kept))
        if self.push:
            conn.send({"op": "recv", "root": self.dst.root, "token": self.token, "reldir": reldir,
                       "opts": self.spec})
            codec = pick_codec(conn.codecs) if self.compress else ""
            emit = _renaming(conn.send, renamed) if renamed else conn.send
            sent = send_batch(self.src.root, reldir, files, emit, self.follow, self.stop, codec, self.attrs)
            written = conn.answer()["results"]
        else:
            conn.send({"op": "send", "root": self.src.root, "reldir": reldir, "files": files,
                       "follow": self.follow, "z": pick_codec(conn.codecs) if self.compress else "",
                       "attrs": list(self.attrs)})
            frames = _frames(conn)
            if renamed:
                frames = _renaming_in(frames, renamed)
            try:
                written = receive_batch(self.local_options, reldir, frames)
            except ProtocolError as exc:  # a hostile or broken remote: named, one line
                raise PcopyError(f"{conn.spec.host}: {exc}") from None
            sent = conn.answer()["results"]
        sent = [result_in(r) for r in sent]
        if renamed:  # what the sender decided carries its SRC name
            sent = [r._replace(relpath=relpath_join(reldir, renamed[r.relpath.rpartition("/")[2]]))
                    if r.relpath.rpartition("/")[2] in renamed else r for r in sent]
        return sent + [result_in(r) for r in written]


def _renaming(emit: Callable, renamed: dict) -> Callable:
    """The sender's frames with a file's DST name (a single file copied to a new name)."""
    def send(header: dict, payload: bytes = b"") -> None:
        if header.get("t") in ("file", "link") and header.get("name") in renamed:
            header = dict(header, name=renamed[header["name"]])
        emit(header, payload)
    return send


def _renaming_in(next_frame: Callable, renamed: dict) -> Callable:
    def renamed_frame():
        header, payload = next_frame()
        if header.get("t") in ("file", "link") and header.get("name") in renamed:
            header = dict(header, name=renamed[header["name"]])
        return header, payload
    return renamed_frame


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
