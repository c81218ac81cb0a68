"""The remote half of ``pcopy verify`` with a host:path side: the remote ``pcopy serve`` reads and
hashes its own files; only listings and digests travel.

    tree (``vtree``):   walk ROOT ─► SideView (its own cache) ─► misses hashed by its pool (hash_batch)
                          ─► one ``dir`` frame per directory, in walk order: names, shapes, an outcome per file
    manifest (``vmanifest``): the client's manifest lines arrive as ``data`` frames and feed
                          ``integrity.manifest.verify_manifest`` here; its differences travel back

The client may name directories not to enter (``prune`` frames: a directory on one side only);
the walk, ahead of the client, skips those it has not reached yet (their files are not read).
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Callable, Optional

from ..content.cache import unpack
from ..errors import PcopyError, describe
from ..fs.scan import require_dir, walk
from ..integrity.report import Difference, IntegrityReport
from ..integrity.session import Session, open_cache
from ..integrity.sides import Reading, SideView
from ..integrity.tree import guarded
from ..integrity.worker import FAILED, HashJob, hash_batch
from ..model.batching import group
from ..model.entries import FILE
from ..runtime.progress import Counters
from .protocol import check_relpath, error_out

ALGO = "xxh128"
FRAME_NAMES = 20_000  # names per directory frame (~2 MB of JSON; the protocol allows 64 MiB)


class _Dir:
    """One directory's frame being filled in: an outcome per regular file, by name."""

    __slots__ = ("header", "out", "reading", "keys")

    def __init__(self, header: dict, reading: Optional[Reading], keys: dict) -> None:
        self.header, self.reading, self.keys = header, reading, keys
        self.out: dict = {}


class _Part:
    """Some files of one directory for a pool worker (``last``: the directory's frame goes after it)."""

    __slots__ = ("d", "reldir", "names", "last")

    def __init__(self, d: _Dir, reldir: str, names: tuple, last: bool) -> None:
        self.d, self.reldir, self.names, self.last = d, reldir, names, last

    def work(self):
        return (self.reldir, ALGO, tuple((0, name) for name in self.names)) if self.names else None


class _Prunes:
    """The client's ``prune`` frames, read beside the walk until its ``end`` frame."""

    def __init__(self, next_frame: Callable) -> None:
        self.paths: set = set()
        self.ended = threading.Event()  # the client has all it asked for: read and send no more
        self.next_frame = next_frame
        self.thread = threading.Thread(target=self._read, name="pcopy-verify-prunes", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                header, _ = self.next_frame()
                if header.get("t") != "prune":
                    return
                for path in header.get("paths", ()):
                    check_relpath(path)
                    self.paths.add(path)
        except (EOFError, OSError, PcopyError):
            return
        finally:
            self.ended.set()


def serve_tree(emit: Callable, next_frame: Callable, h: dict) -> dict:
    """In ``pcopy serve``: stream ``h["root"]``'s directories with a digest outcome per file."""
    root = h["root"]
    require_dir(root, h.get("what", "root"))
    prunes = _Prunes(next_frame)
    try:
        _stream(emit, root, h, prunes.paths, prunes.ended)
    finally:
        prunes.thread.join()  # the client's ``end`` (or EOF): the next frame is an operation again
    return {}


def _stream(emit: Callable, root: str, h: dict, prune: set, ended: Optional[threading.Event] = None) -> None:
    report = IntegrityReport(differences=None)

    def warning(message: str) -> None:
        emit({"t": "warn", "message": message})

    cache = h.get("cache", True)
    session = Session(report, Counters(), open_cache(cache is not False, report, warning), None)
    view = SideView(ALGO, session.cache)

    def units():
        for listing in walk(root, False, lambda reldir: True):
            if ended is not None and ended.is_set():
                return
            if prune and _pruned(listing.reldir, prune):
                continue
            header: dict = {"t": "dir", "reldir": listing.reldir, "error": error_out(listing.error),
                            "entry_errors": [[name, *error_out(exc)] for name, exc in listing.entry_errors]}
            if listing.error is not None:
                yield _Part(_Dir(header, None, {}), listing.reldir, (), True)
                continue
            side = view.make(root, listing)
            header.update(names=list(side.names), shape=list(side.shape), problems=[list(p) for p in side.problems])
            keys = {e[0]: (e[7], e[6], e[2], e[3], e[11]) for e in listing.entries if e[1] == FILE}
            reading = Reading(side, side) if side.fingerprint is not None else None
            d = _Dir(header, reading, keys)
            hits = unpack(side.digests) if side.hits else {}
            todo = []
            for i, (name, shape) in enumerate(zip(side.names, side.shape, strict=True)):
                if type(shape) is not int:
                    continue
                if i in hits:
                    d.out[name] = [hits[i], shape, False, None]
                    if reading is not None:
                        reading.add(0, name, keys[name], hits[i])
                else:
                    todo.append((name, shape))
            chunks = list(group(todo, lambda item: item[1])) or [[]]
            for n, chunk in enumerate(chunks):
                yield _Part(d, listing.reldir, tuple(name for name, _ in chunk), n == len(chunks) - 1)

    def done(part: _Part, results, exc) -> None:
        d = part.d
        if exc is not None:
            results = [(None, 0, None, (FAILED, f"worker failed: {describe(exc)}"))] * len(part.names)
        for name, (digest, size, key, error) in zip(part.names, results or (), strict=True):
            d.out[name] = [digest, size, key is not None, None if error is None else list(error)]
            if error is None and key is not None and session.cache is not None:
                session.cache.put(ALGO, key, digest)
                if d.reading is not None and key == d.keys[name]:
                    d.reading.add(0, name, key, digest)
        if part.last:
            if d.reading is not None and session.cache is not None:
                d.reading.store(session.cache, ALGO)
            for frame in _frames(d):
                emit(frame)

    fn = functools.partial(hash_batch, HashJob((root,)))
    guarded(session, lambda check: session.run_units(units(), fn, done, h.get("jobs"), "process", check),
            time.monotonic())


def _frames(d: _Dir):
    """The directory's frame; a big one in parts of FRAME_NAMES names (``more``: another part follows),
    so that no frame nears the protocol's size limit."""
    header = d.header
    if "names" not in header:
        yield header
        return
    names, shape, out = header["names"], header["shape"], d.out
    for start in range(0, max(len(names), 1), FRAME_NAMES):
        part = dict(header) if start == 0 else {"t": "dir", "reldir": header["reldir"], "error": None,
                                                "entry_errors": [], "problems": []}
        part["names"], part["shape"] = names[start:start + FRAME_NAMES], shape[start:start + FRAME_NAMES]
        part["out"] = [out[name] for name, kind in zip(part["names"], part["shape"], strict=True) if type(kind) is int]
        if start + FRAME_NAMES < len(names):
            part["more"] = True
        yield part


def _pruned(reldir: str, prune: set) -> bool:
    """reldir or one of its parents is a directory the client will not ask for."""
    parts = reldir.split("/")
    return any("/".join(parts[:n]) in prune for n in range(1, len(parts) + 1))


class _FrameReader:
    """The manifest as a binary stream (``readline``), read from the client's ``data`` frames until ``end``."""

    def __init__(self, next_frame: Callable) -> None:
        self.next_frame = next_frame
        self.buf = b""
        self.ended = False

    def _more(self) -> bool:
        if self.ended:
            return False
        header, payload = self.next_frame()
        if header.get("t") == "data":
            self.buf += payload
        else:
            self.ended = True
        return not self.ended

    def readline(self, limit: int = -1) -> bytes:
        while True:
            at = self.buf.find(b"\n")
            if at >= 0 and (limit < 0 or at < limit):
                line, self.buf = self.buf[:at + 1], self.buf[at + 1:]
                return line
            if 0 <= limit <= len(self.buf) or not self._more():
                cut = len(self.buf) if limit < 0 else limit
                line, self.buf = self.buf[:cut], self.buf[cut:]
                return line

    def drain(self) -> None:
        while self._more():
            self.buf = b""


def serve_manifest(emit: Callable, next_frame: Callable, h: dict) -> dict:
    """In ``pcopy serve``: check ``h["root"]`` against the manifest the client streams."""
    from ..integrity.manifest import verify_manifest

    stream = _FrameReader(next_frame)

    def difference(diff: Difference) -> None:
        emit({"t": "diff", "kind": diff.kind, "path": diff.path, "detail": diff.detail})

    def warning(message: str) -> None:
        emit({"t": "warn", "message": message})

    try:
        report = verify_manifest(stream, h["root"], manifest_name=h.get("name", "manifest"), jobs=h.get("jobs"),
                                 cache=h.get("cache", True) is not False, on_difference=difference,
                                 on_warning=warning, keep=False)
    finally:
        stream.drain()
    return {"report": report.to_dict()}


__all__ = ["serve_manifest", "serve_tree"]
