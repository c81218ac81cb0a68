"""Remote verify's start: the ssh session opens (half a second on a loaded machine) while the local
workers already read the local tree's first files.

    main:    walk the local tree ─► misses of the local cache ─► pool (hash_batch) ─► outcomes kept by path
    thread:  ssh handshake, then the ``vtree`` request (the remote starts walking and hashing)
             └─ once it is done, no more files are read ahead: the march takes over (``remote.verify``)

At most ``AHEAD_FILES`` outcomes are kept; the march takes each one it needs (a file read ahead
that the march never pairs, say in a directory missing on the remote, was read for nothing, as the
remote's own reads of such files are).
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from ..content.cache import unpack
from ..fs.scan import walk
from ..integrity.session import Session
from ..integrity.sides import SideView
from ..model.batching import BATCH_FILES, group
from ..model.entries import FILE
from . import transport

AHEAD_FILES = 50_000


class Opening:
    """One ssh session opened in a thread; ``wait(check)`` joins it (interruptibly) and raises its error."""

    def __init__(self, spec: transport.Spec, rsh: Optional[str], remote_pcopy: Optional[str], request: dict) -> None:
        self.conn = transport.Connection(spec, rsh, remote_pcopy)
        self.request = request
        self.error: Optional[BaseException] = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._open, name="pcopy-verify-connect", daemon=True)
        self.thread.start()

    def _open(self) -> None:
        try:
            self.conn.handshake()
            self.conn.send(self.request)
            self.conn.flush()  # the remote starts while we read ahead
        except BaseException as exc:  # handed to the main thread by wait()
            self.error = exc
        finally:
            self.done.set()

    def wait(self, check: Callable[[], None]) -> transport.Connection:
        while not self.done.wait(0.05):
            check()
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.conn

    def kill(self) -> None:
        self.conn.kill()
        self.thread.join(timeout=2.0)


class _Part:
    __slots__ = ("reldir", "names")

    def __init__(self, reldir: str, names: tuple) -> None:
        self.reldir, self.names = reldir, names

    def work(self):
        return self.reldir, "xxh128", tuple((0, name) for name in self.names)


class ReadAhead:
    """Local outcomes read before the session was open, by ``(reldir, name)``."""

    def __init__(self, session: Session, root: str, view: SideView, opened: threading.Event) -> None:
        self.session, self.root, self.view, self.opened = session, root, view, opened
        self.got: dict = {}

    def units(self):
        cached, left = self.session.cache is not None, AHEAD_FILES
        for listing in walk(self.root, False, lambda reldir: cached):
            if self.opened.is_set() or left <= 0:
                return
            if listing.error is not None:
                continue
            side = self.view.make(self.root, listing) if cached else None
            hits = unpack(side.digests) if side is not None and side.hits else {}
            files = [(e.name, e.size) for i, e in enumerate(listing.entries) if e.kind == FILE and i not in hits]
            for chunk in group(files[:left], lambda item: item[1], max_files=BATCH_FILES):
                yield _Part(listing.reldir, tuple(name for name, _ in chunk))
            left -= len(files)

    def done(self, part: _Part, results, exc) -> None:
        if exc is None:
            for name, outcome in zip(part.names, results, strict=True):
                if outcome[3] is None:
                    self.got[(part.reldir, name)] = outcome

    def take(self, reldir: str, name: str):
        return self.got.pop((reldir, name), None)
