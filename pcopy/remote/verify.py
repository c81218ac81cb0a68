"""``pcopy verify SRC host:DST``, ``verify host:SRC DST`` and ``verify -m MANIFEST host:ROOT``: each
machine reads and hashes its own files, at the same time; only listings and digests travel.

    local tree ─► the one march (walked here) ─► SideView (local cache) ─┐
    remote tree ─► ``vtree`` stream (verify_serve) ─► _RemoteLister ─────┴─► pair_records (the local rules)
                                                                              ▼
        local misses ─► BoundedPool.map_ordered ─► hash_batch      remote outcomes (already in the frame)
                                                                              ▼
        compare_outcomes (the local words) ─► differences, in order ─► the same report as a local verify

While the ssh session opens, the local workers already read the local tree's first files
(``verify_ahead``); the march then takes those outcomes instead of reading the files again.
The march walks the local tree whichever side it is; the remote lister answers every DST (or SRC)
listing from the stream. A directory that exists on one side only is not entered on either: the
client tells the remote (``prune``) so its walk, running ahead, skips reading it.
"""

from __future__ import annotations

import errno
import functools
import os
import threading
import time
from typing import Callable, Optional

from ..errors import PcopyError, UsageError, describe
from ..fs.march import March
from ..fs.scan import require_dir
from ..integrity.compare import pair_records, report_records
from ..integrity.report import ERROR, Difference, IntegrityReport
from ..integrity.session import Session, open_cache, relpath
from ..integrity.sides import DIRECTORY, Side, SideView
from ..integrity.tree import guarded
from ..integrity.worker import FAILED, HashJob, compare_outcomes, hash_batch
from ..model.batching import group
from ..model.entries import DIR
from ..runtime.progress import Counters
from . import transport
from .hashing import report_from
from .protocol import ProtocolError, check_name
from .verify_ahead import Opening, ReadAhead

ALGO = "xxh128"
SEND_EVERY = 256 << 10  # bytes of manifest per frame
_EMPTY = Side((), (), 0, 0, "")
_GONE = (errno.ENOENT, "vanished during the check")
_READ_THERE = ()  # a remote outcome's key: read (counted as read), but nothing for the local cache


class _Remote:
    """One remote directory: its Side (no cache hits: the digests are in ``out``) and an outcome per file."""

    __slots__ = ("side", "out")

    def __init__(self, side: Side, out: dict) -> None:
        self.side, self.out = side, out


class _View:
    """The march's view of the remote tree (its values come from the stream, never from a local read)."""

    def make(self, root: str, listing):
        raise AssertionError("a remote tree is never listed locally")

    def subdirs(self, value: _Remote):
        side = value.side
        return (name for name, shape in zip(side.names, side.shape, strict=True) if shape == DIRECTORY)


def _shape(plain):
    return tuple(plain) if type(plain) is list else plain


def _outcome(plain) -> tuple:
    digest, size, read, error = plain
    return digest, size, _READ_THERE if read else None, None if error is None else tuple(error)


class _RemoteLister:
    """The remote's ``dir`` frames, handed to the march in its walk order (like ``fs.march._Lister``)."""

    def __init__(self, conn: transport.Connection, on_warning: Optional[Callable]) -> None:
        self.conn, self.on_warning = conn, on_warning
        self.done = False  # never: every listing is answered from the stream
        self.ended = False
        self._ahead = None

    def _next(self):
        parts: list = []  # a big directory's frames before its last
        while not self.ended:
            header, _ = self.conn.recv()
            kind = header.get("t")
            if kind == "dir":
                if header.get("more"):
                    parts.append(header)
                    continue
                try:
                    if parts:
                        header = _joined(parts + [header])
                    return self._message(header)
                except (KeyError, TypeError, ValueError, ProtocolError) as exc:
                    raise PcopyError(f"{self.conn.spec.host}: bad directory frame from the remote pcopy: "
                                     f"{exc}") from None
            if kind == "warn":
                if self.on_warning is not None:
                    self.on_warning(f"{self.conn.spec.host}: {header['message']}")
                continue
            self.ended = True
            if not header.get("ok"):
                raise PcopyError(f"{self.conn.spec.host}: {header.get('error') or 'remote verify failed'}")
        return None

    @staticmethod
    def _message(h: dict) -> tuple:
        errors = tuple((name, code, text) for name, code, text in h["entry_errors"])
        if h["error"] is not None:
            return h["reldir"], None, tuple(h["error"]), errors
        names = tuple(map(check_name, h["names"]))  # a hostile remote's names are only ever printed, still
        shape = tuple(_shape(s) for s in h["shape"])
        files = [name for name, s in zip(names, shape, strict=True) if type(s) is int]
        side = Side(names, shape, len(files), 0, "", tuple(tuple(p) for p in h["problems"]))
        return h["reldir"], _Remote(side, dict(zip(files, map(_outcome, h["out"]), strict=True))), None, errors

    def get(self, reldir: str):
        want = reldir.split(os.sep) if reldir else []
        message = self._ahead or self._next()
        self._ahead = None
        while message is not None and message[0] != reldir:
            if (message[0].split(os.sep) if message[0] else []) > want:  # passed it: changed meanwhile
                self._ahead = message
                break
            message = self._next()
        if message is None or message[0] != reldir:
            return reldir, None, _GONE, ()
        return message

    def finish(self) -> None:
        """The rest of the stream (directories nobody asked for) and the remote's final answer."""
        self._ahead = None
        while self._next() is not None:
            pass

    def close(self) -> None:
        pass


def _joined(parts: list) -> dict:
    """One directory frame from its parts (see ``verify_serve._frames``)."""
    whole = dict(parts[0])
    for key in ("names", "shape", "out"):
        whole[key] = [item for part in parts for item in part[key]]
    if any(part["reldir"] != whole["reldir"] for part in parts):
        raise ValueError("parts of different directories")
    return whole


class _Told(set):
    """The march's prune set; what is added is also told to the remote (its walk skips those)."""

    def __init__(self) -> None:
        super().__init__()
        self.new: list = []

    def add(self, path) -> None:
        if path not in self:
            super().add(path)
            self.new.append(path)


class _Unit:
    """Some pairs of one directory: records as in ``integrity.compare.Unit``; ``todo``: local reads."""

    __slots__ = ("reldir", "records", "names", "known", "sizes", "todo", "remote")

    def __init__(self, reldir: str, records: list, names: tuple, known: tuple, sizes: tuple, remote: _Remote,
                 local: int, ahead: ReadAhead) -> None:
        self.reldir, self.records, self.names, self.known, self.sizes = reldir, records, names, known, sizes
        self.remote = remote
        got = ahead.got
        self.todo = tuple(j for j, k in enumerate(known) if k[local] is None and (reldir, names[j]) not in got)

    def work(self):
        return (self.reldir, ALGO, tuple((0, self.names[j]) for j in self.todo)) if self.todo else None


class _Flow:
    def __init__(self, session: Session, root: str, push: bool, lister: _RemoteLister, view: SideView,
                 ahead: ReadAhead) -> None:
        self.session, self.report, self.root, self.push, self.lister = session, session.report, root, push, lister
        self.local = 0 if push else 1  # the local tree's index in (SRC, DST)
        self.view, self.ahead = view, ahead
        cached = session.cache is not None
        self.march = March(root, "", need_stat=cached, dtype_only=not cached, view=_View(), lister=lister)
        self.prune = self.march.prune = _Told()

    def _tell(self) -> None:
        if self.prune.new:
            self.lister.conn.send({"t": "prune", "paths": self.prune.new})
            self.lister.conn.flush()  # at once: the remote stops hashing there
            self.prune.new = []

    def units(self):
        session = self.session
        for pair in self.march.pairs():
            self._tell()
            reldir = pair.reldir
            where = reldir or "."
            local_error, remote_error = pair.src.error, pair.dst_error
            errors = (local_error, remote_error) if self.push else (remote_error, local_error)
            failed = next(((side, e) for side, e in zip(("SRC", "DST"), errors, strict=True) if e is not None), None)
            if failed is not None:
                session.difference(ERROR, where, f"cannot read directory in {failed[0]}: {describe(failed[1])}")
                subdirs = [e.name for e in pair.src.entries if e.kind == DIR]
                if pair.dst is not None:
                    subdirs += _View().subdirs(pair.dst)
                for name in subdirs:
                    self.prune.add(relpath(reldir, name))
                continue
            entry_errors = (pair.src.entry_errors, pair.dst_entry_errors)
            unknown = set()
            for side, errs in zip(("SRC", "DST"), entry_errors if self.push else entry_errors[::-1], strict=True):
                for name, exc in errs:
                    unknown.add(name)
                    session.difference(ERROR, relpath(reldir, name), f"cannot stat in {side}: {describe(exc)}")
            remote = pair.dst if pair.dst is not None else _Remote(_EMPTY, {})
            local = self.view.make(self.root, pair.src)
            s, d = (local, remote.side) if self.push else (remote.side, local)
            records, names, known, hits = pair_records(reldir, s, d, self.prune, unknown)
            self.report.cache_hits += hits  # the remote side has no hits: each pair is counted in ``digested``
            yield from self._units(reldir, records, names, known, remote)
        self._tell()

    def _units(self, reldir: str, records: list, names: list, known: list, remote: _Remote):
        """The directory's records in units of the one batching rule (sizes: the larger side's, known)."""
        out = remote.out
        sizes = [max(k[2], out[name][1] if name in out else 0) for name, k in zip(names, known, strict=True)]

        def size(i: int) -> int:
            return 2 * sizes[records[i]] if type(records[i]) is int else 0

        for chunk in group(range(len(records)), size):
            part = [records[i] for i in chunk]
            picked = [r for r in part if type(r) is int]
            at = {j: n for n, j in enumerate(picked)}
            unit = _Unit(reldir, [at[r] if type(r) is int else r for r in part], tuple(names[j] for j in picked),
                         tuple(known[j] for j in picked), tuple(sizes[j] for j in picked), remote, self.local,
                         self.ahead)
            self.session.counters.discovered(2 * len(unit.names), 2 * sum(unit.sizes))
            yield unit

    def done(self, unit: _Unit, results, exc) -> None:
        if exc is not None:
            results = [(None, 0, None, (FAILED, f"worker failed: {describe(exc)}"))] * len(unit.todo)
        read = dict(zip(unit.todo, results or (), strict=True))
        here = [read[j] if j in read else (k[self.local], k[2], None, None) if k[self.local] is not None
                else self.ahead.take(unit.reldir, unit.names[j]) for j, k in enumerate(unit.known)]
        there = [unit.remote.out[name] for name in unit.names]
        a, b = (here, there) if self.push else (there, here)
        cache = self.session.cache
        found, _, rows, hashed, nbytes, digested = compare_outcomes(a, b, cache is not None)
        report, counters = self.report, self.session.counters
        cached = sum(1 for o in there if o[2] is None and o[3] is None)  # the remote's cache knew them
        report.cache_hits += cached  # (counted in ``digested`` with the rest: their digests came along)
        report.hashed += hashed
        report.bytes_hashed += nbytes
        report.files += digested
        counters.files_done += 2 * len(unit.names)
        counters.bytes_done += nbytes
        if cache is not None:
            for _, _, key, digest in rows:
                cache.put(ALGO, key, digest)
        diffs = {j: (kind, detail) for j, kind, detail in found}
        report_records(self.session, unit.records, diffs, unit.reldir, unit.names)


def verify_trees(src: str, dst: str, *, jobs: Optional[int] = None, backend: str = "process", cache=True,
                 counters: Optional[Counters] = None, on_difference: Optional[Callable] = None,
                 on_warning: Optional[Callable] = None, keep: bool = True, rsh: Optional[str] = None,
                 remote_pcopy: Optional[str] = None) -> IntegrityReport:
    """``integrity.compare.verify_trees`` with one side on another machine (``--cache FILE`` is the local
    side's; the remote uses its own default cache, or none with ``cache=False``)."""
    started = time.monotonic()
    src_spec, dst_spec = transport.parse(src), transport.parse(dst)
    if src_spec is not None and dst_spec is not None:
        raise UsageError(f"{dst}: SRC and DST are both remote (host:path); one of them must be local")
    push = dst_spec is not None
    spec = dst_spec or src_spec
    assert spec is not None
    root = src if push else dst
    require_dir(root, "source" if push else "destination")
    report = IntegrityReport(differences=[] if keep else None)
    session = Session(report, counters if counters is not None else Counters(), open_cache(cache, report, on_warning),
                      on_difference)
    request = {"op": "vtree", "root": spec.path, "jobs": jobs, "what": "destination" if push else "source",
               "cache": cache is not False}
    view = SideView(ALGO, session.cache)
    fn = functools.partial(hash_batch, HashJob((root,)))

    def run(check: Callable) -> None:  # under the signal guard from the start: no ssh is left behind
        opening = Opening(spec, rsh, remote_pcopy, request)
        ok = False
        try:
            ahead = ReadAhead(session, root, view, opening.done)
            session.run_units(ahead.units(), fn, ahead.done, jobs, backend, check)  # while the session opens
            lister = _RemoteLister(opening.wait(check), on_warning)
            flow = _Flow(session, root, push, lister, view, ahead)
            session.run_units(flow.units(), fn, flow.done, jobs, backend, check)
            lister.conn.send({"t": "end"})
            lister.finish()
            ok = True
        finally:
            if ok:
                opening.conn.close()
            else:
                opening.kill()

    guarded(session, run, started)
    report.seconds = time.monotonic() - started
    return report


def verify_manifest(stream, arg: str, *, manifest_name: str, jobs: Optional[int] = None, cache=True,
                    on_difference: Optional[Callable] = None, on_warning: Optional[Callable] = None,
                    rsh: Optional[str] = None, remote_pcopy: Optional[str] = None) -> IntegrityReport:
    """``verify -m MANIFEST host:ROOT``: the manifest's lines travel, the remote reads and hashes."""
    spec = transport.parse(arg)
    assert spec is not None
    if cache not in (True, False):
        raise PcopyError(f"{arg}: --cache FILE names a local file; a remote tree uses the remote's default cache")
    conn = transport.connect(spec, rsh, remote_pcopy)
    ok = False
    failure: list = []
    found: list = []
    try:
        conn.send({"op": "vmanifest", "root": spec.path, "name": manifest_name, "jobs": jobs, "cache": cache})
        sender = threading.Thread(target=_send_manifest, args=(conn, stream, failure), name="pcopy-manifest-send",
                                  daemon=True)
        sender.start()
        while True:
            header, _ = conn.recv()
            kind = header.get("t")
            if kind == "diff":
                diff = Difference(header["kind"], header["path"], header.get("detail", ""))
                found.append(diff)
                if on_difference is not None:
                    on_difference(diff)
            elif kind == "warn":
                if on_warning is not None:
                    on_warning(f"{spec.host}: {header['message']}")
            elif not header.get("ok"):
                raise PcopyError(f"{spec.host}: {header.get('error') or 'remote verify failed'}")
            else:
                break
        sender.join()
        if failure:
            raise failure[0]
        ok = True
    finally:
        if ok:
            conn.close()
        else:
            conn.kill()
    report = report_from(header["report"])
    report.differences = found
    return report


def _send_manifest(conn: transport.Connection, stream, failure: list) -> None:
    """The manifest in frames, then ``end`` (a read error ends it too, and fails the run)."""
    try:
        while True:
            try:
                data = stream.read(SEND_EVERY)
            except OSError as exc:
                failure.append(PcopyError(f"cannot read manifest: {describe(exc)}"))
                data = b""
            if not data:
                break
            conn.send({"t": "data"}, data)
        conn.send({"t": "end"})
        conn.flush()  # frames are written in blocks (transport): the last ones now
    except PcopyError:
        pass  # the connection is gone: the reader reports it


__all__ = ["verify_manifest", "verify_trees"]
