"""Read DST in a helper process while the main process walks SRC.

A sync compares two trees; reading them one after the other in one process
is what makes a no-op sync slow. Like rsync's sender and generator, a helper
process walks DST while the main process walks SRC:

    main:   walk SRC dir by dir ─► for each dir that DST also has: get(reldir) ─► plan
                                                       ▲ one-way pipe, in walk order
    helper: walk DST dir by dir (same sorted depth-first order) ─┘

Both walks visit directories in the same order, so the listing the main
process asks for is always the next one in the pipe that it has not passed;
listings of DST-only directories are skipped over. Nothing is buffered, so
memory stays flat, and the pipe only flows one way, so it cannot deadlock.
If the orders ever disagree (the trees changed under us), ``get`` falls back
to reading the directory itself: the answer is always correct.
The helper is a forked child (cheap to start, inherits the filter); where
fork is unavailable every listing is read in-process.
"""

from __future__ import annotations

import functools
import multiprocessing
import operator
import os
import signal
from typing import Callable, Optional

from . import walk
from .model import DIR, Entry, relpath_join
from .walk import open_dir_beneath


def entries_at(root: str, reldir: str, keep: Optional[Callable] = None) -> dict:
    """{name: Entry} of root/reldir, filtered; {} when it does not exist (or is not a directory)."""
    try:
        fd = open_dir_beneath(root, reldir)
    except OSError:
        return {}
    try:
        entries = walk.scan_dir(fd)
    except OSError:
        return {}
    finally:
        os.close(fd)
    if keep is not None:
        entries = [e for e in entries if keep(relpath_join(reldir, e.name), e.kind == DIR)]
    return {e.name: e for e in entries}


_as_entry = functools.partial(tuple.__new__, Entry)
_name_of = operator.itemgetter(0)


def _serve(conn, root: str, keep: Optional[Callable]) -> None:
    """The helper: stream every DST listing, then None.

    Entries travel as plain tuples (a NamedTuple costs a Python call per entry
    to unpickle; the parent is the busier process).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        for listing in walk.walk(root, keep=keep):
            conn.send((listing.reldir, tuple(map(tuple, listing.entries))))
        conn.send(None)
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass


class Lister:
    """DST listings from a helper process, asked for in SRC walk order."""

    def __init__(self, root: str, keep: Optional[Callable] = None) -> None:
        self.root = root
        self.keep = keep
        self._conn = None
        self._process = None
        if "fork" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("fork")
            self._conn, child = context.Pipe(duplex=False)
            self._process = context.Process(target=_serve, args=(child, root, keep),
                                            name="pcopy-dst-lister", daemon=True)
            self._process.start()
            child.close()

    def get(self, reldir: str) -> dict:
        """The listing of DST/reldir; call it only for directories DST has."""
        while self._conn is not None:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                message = None
            if message is None:
                self.close()
                break
            if message[0] == reldir:
                entries = list(map(_as_entry, message[1]))
                return dict(zip(map(_name_of, entries), entries, strict=True))
        return entries_at(self.root, reldir, self.keep)

    def close(self) -> None:
        if self._process is None:
            return
        self._conn.close()  # the helper's next send fails and it exits
        self._conn = None
        self._process.join(timeout=1.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process = None
