"""What one stream does with a batch (``Mover``): -c's digests, in-place fixes, the DST end's hashes
and links, then the files themselves, sent by one end and written by the other; a batch of files
alone can be sent before the previous one's answer is read (``begin`` / ``end``, ``streams``).
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from ..errors import PcopyError
from ..model.entries import ATTRS, CHECKSUM, COPY, FILE, HASH, LINK, LINKDEST, SYMLINK, Batch, Task, relpath_join
from ..model.results import COPIED, DEFERRED, LINKED, NOTE, SKIPPED, VANISHED, Result, failure
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
                 dry_run: bool, stop: threading.Event, compress: bool = False,
                 making: Optional[set] = None) -> None:
        self.push = push
        self.src, self.dst = src, dst
        self.token, self.spec = token, spec
        self.local_options = local_options  # the receiver's Options when DST is here (pull)
        self.follow = follow
        self.dry_run = dry_run
        self.stop = stop
        self.compress = compress  # -z: chunks compressed with the best codec both ends have
        # DST dirs being made (their mkdir was posted): the receiver makes one that is missing
        self.making = making if making is not None else set()
        self.unanswered: dict = {}  # id(conn) -> the batches ``begin`` sent on it whose answers are not read

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
            if batch.reldir in self.making:  # its mkdir was posted on the control session: answered first
                self.dst.settle()
            tasks = [t for t in tasks if t.action not in (HASH, LINKDEST)] + self._at_dst(conn, batch.reldir, there,
                                                                                       results)
        if tasks:
            results.extend(self._settle(conn, batch.reldir, tasks, self._move(conn, batch.reldir, tasks)))
        return notes_last(results)

    def overlaps(self, batch: Batch) -> bool:
        """Whether the batch can be sent before the previous batch's answer is read (``begin`` / ``end``):
        files and symlinks to copy, not in a dry run; not the tasks that wait for answers of their own
        (-c's digests, in-place fixes, the DST end's hashes and links, --partial's kept sizes)."""
        if self.dry_run or any(t.action not in (COPY, LINK) for t in batch.tasks):
            return False
        return not (self.spec.get("partial") and any(t.size > resume.MIN_SIZE for t in batch.tasks))

    def begin(self, conn: Connection, batch: Batch) -> list:
        """Send the batch (push: its files; pull: the request) without waiting for its answer."""
        begun = [batch, self._start(conn, batch.reldir, list(batch.tasks))]
        self.unanswered.setdefault(id(conn), []).append(begun)
        return begun

    def end(self, conn: Connection, begun: list) -> list:
        """The answer of a batch ``begin`` sent: its Results (mismatched files sent once more, after the
        answers of the batches begun since are read: a session answers in order)."""
        batch, sent = begun[0], begun[1]
        tasks = list(batch.tasks)
        later = [b for b in self.unanswered.get(id(conn), ()) if b is not begun]
        self.unanswered[id(conn)] = later
        moved = begun[2] if len(begun) > 2 else self._finish(conn, batch.reldir, tasks, sent)
        if any(r.reason == MISMATCH for r in moved):
            for other in later:
                if len(other) == 2:
                    other.append(self._finish(conn, other[0].reldir, list(other[0].tasks), other[1]))
        return notes_last(self._settle(conn, batch.reldir, tasks, moved))

    def _settle(self, conn: Connection, reldir: str, tasks: list, moved: list) -> list:
        """``moved``'s Results; a file whose digests differed is sent again (RESEND times), then reported."""
        results: list = []
        for attempt in range(RESEND + 1):
            again = {r.relpath for r in moved if r.reason == MISMATCH} if attempt < RESEND else set()
            results.extend(r for r in moved if r.relpath not in again)
            tasks = [t for t in tasks if relpath_join(reldir, t.name) in again]
            if not tasks:
                break
            moved = self._move(conn, reldir, tasks)
        return results

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
        return self._finish(conn, reldir, tasks, self._start(conn, reldir, tasks))

    def _start(self, conn: Connection, reldir: str, tasks: list) -> Optional[list]:
        """Send a batch: push, its files (the Results decided here come back); pull, the request."""
        files = [[t.source or t.name, t.why, t.action == LINK] for t in tasks]
        renamed = _renamed(tasks)
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
                       "opts": self.spec, "mkdir": reldir in self.making})
            codec = pick_codec(conn.codecs) if self.compress else ""
            emit = _renaming(conn.send, renamed) if renamed else conn.send
            return send_batch(self.src.root, reldir, files, emit, self.follow, self.stop, codec, self.attrs)
        conn.send({"op": "send", "root": self.src.root, "reldir": reldir, "files": files,
                   "follow": self.follow, "z": pick_codec(conn.codecs) if self.compress else "",
                   "attrs": list(self.attrs)})
        return None

    def _finish(self, conn: Connection, reldir: str, tasks: list, sent: Optional[list]) -> list:
        """Read a sent batch's answer (pull: receive its files first)."""
        renamed = _renamed(tasks)
        if self.push:
            written = conn.answer()["results"]
        else:
            frames = _frames(conn)
            if renamed:
                frames = _renaming_in(frames, renamed)
            try:
                written = receive_batch(self.local_options, reldir, frames)
            except ProtocolError as exc:  # a hostile or broken remote: named, one line
                raise PcopyError(f"{conn.spec.host}: {exc}") from None
            sent = conn.answer()["results"]
        sent = [result_in(r) for r in sent or ()]
        if renamed:  # what the sender decided carries its SRC name
            sent = [r._replace(relpath=relpath_join(reldir, renamed[r.relpath.rpartition("/")[2]]))
                    if r.relpath.rpartition("/")[2] in renamed else r for r in sent]
        return sent + [result_in(r) for r in written]


def _renamed(tasks: list) -> dict:
    return {t.source: t.name for t in tasks if t.source and t.source != t.name}  # one file, new name


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


def notes_last(results: list) -> list:
    """Both ends' one-line warnings (NOTE results) after the files, where the consumer looks for them."""
    notes = [r for r in results if r.status == NOTE]
    return [r for r in results if r.status != NOTE] + notes if notes else results
