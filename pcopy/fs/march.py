"""The one lockstep march of SRC and DST (like rclone's ``fs/march``): sync, --delete, link-dest, verify.

    main:   walk SRC dir by dir ─► for each dir DST also has: its DST listing ─► Pair ─► caller
                                                      ▲ one-way pipe, in walk order
    lister: walk DST dir by dir (same sorted depth-first order) ─┘  (a forked helper process)

A sync or verify compares two trees; reading them one after the other in one
process is what makes a no-op sync slow. Like rsync's sender and generator, a
helper process walks DST while the main process walks SRC. Both walks visit
directories in the same order (depth first, names sorted), so the listing the
main process asks for is always the next one in the pipe that it has not
passed; DST-only directories are skipped over. Nothing is buffered, so memory
stays flat, and the pipe flows one way, so it cannot deadlock. If the orders
ever disagree (the trees changed under us) the directory is read in-process:
the answer is always correct. Without fork, or for targeted runs (watch), every
DST listing is read in-process, beneath the root (``O_NOFOLLOW`` per component).

A caller that needs less than every Entry of DST (verify) passes a ``view``:
the lister then also does the caller's per-directory work on DST (verify looks
its files up in the hash cache there) and sends only the view's compact
result, so the main process neither unpickles an Entry per file nor does that
work for both trees. ``dtype_only`` lists both trees from directory entries
alone (no stat per file), for callers that open every file anyway.
"""

from __future__ import annotations

import errno
import functools
import multiprocessing
import os
import signal
from typing import Any, Callable, Iterator, NamedTuple, Optional, Protocol

from ..model.entries import DIR, Entry, relpath_join
from ..runtime import children
from .beneath import DirFd
from .scan import Listing, scan_dir, walk


class Pair(NamedTuple):
    """One directory of the march: SRC's listing and what DST holds at the same place."""

    reldir: str
    src: Listing
    dst: Any  # {name: Entry}, or the view's value; None when DST has no directory here (nothing to compare with)
    dst_error: Optional[OSError] = None  # DST has the directory but it could not be read
    dst_entry_errors: tuple = ()  # (name, OSError) of DST entries that could not be stat'ed


class View(Protocol):
    """What a caller makes of each DST listing, in the lister process (it must pickle, as must its result)."""

    def make(self, root: str, listing: Listing) -> Any: ...

    def subdirs(self, value: Any) -> Iterator[str]: ...


def read_beneath(root: str, reldir: str, keep: Optional[Callable] = None, stat_files: bool = True):
    """``(entries dict or None, error, entry_errors)`` for root/reldir; None when it is not a directory."""
    errors: list = []
    try:
        with DirFd(root, reldir) as fd:
            entries = scan_dir(fd, stat_files=stat_files, errors=errors)
    except (FileNotFoundError, NotADirectoryError):
        return None, None, ()
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink where a directory was expected: no directory here
            return None, None, ()
        return None, exc, ()
    if keep is not None:
        entries = [e for e in entries if keep(relpath_join(reldir, e.name), e.kind == DIR)]
    return {e.name: e for e in entries}, None, tuple(errors)


_as_entry = functools.partial(tuple.__new__, Entry)


def _serve(conn, root: str, keep: Optional[Callable], parent: int, view: Optional[View], stat: bool) -> None:
    """The lister process: stream every DST listing, then None.

    Entries travel as plain tuples (a NamedTuple costs a Python call per entry
    to unpickle; the parent is the busier process), or as the view's value.
    """
    children.child_start(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    stat_files = functools.partial(_constant, stat)
    try:
        for listing in walk(root, False, stat_files, keep):
            error = listing.error
            if error is not None:
                payload: Any = None
            elif view is not None:
                payload = view.make(root, listing)
            else:
                payload = tuple(map(tuple, listing.entries))
            conn.send((listing.reldir, payload, None if error is None else (error.errno, error.strerror),
                       tuple((name, exc.errno, exc.strerror) for name, exc in listing.entry_errors)))
        conn.send(None)
    except (OSError, EOFError, KeyboardInterrupt):
        pass  # the parent is gone or the pipe failed: the parent then reads DST itself


def _constant(value: bool, reldir: str) -> bool:
    return value


def _parts(reldir: str) -> list:
    return reldir.split(os.sep) if reldir else []


class _Lister:
    """DST listings from a forked helper, asked for in SRC walk order."""

    def __init__(self, root: str, keep: Optional[Callable], view: Optional[View], stat: bool) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe(duplex=False)
        children.register_parent_end(self._conn)
        self._process = context.Process(target=_serve, args=(child, root, keep, os.getpid(), view, stat),
                                        name="pcopy-dst-lister", daemon=True)
        self._process.start()
        child.close()
        self._ahead = None  # a message read but not yet asked for
        self.done = False

    def get(self, reldir: str):
        """The listing message for reldir, or None when the helper cannot give it (read it in-process)."""
        want = _parts(reldir)
        while not self.done:
            message = self._ahead
            self._ahead = None
            if message is None:
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):
                    message = None
                if message is None:
                    self.close()
                    return None
            if message[0] == reldir:
                return message
            if _parts(message[0]) > want:  # it passed the place where reldir would be: keep it for later
                self._ahead = message
                return None
        return None

    def close(self) -> None:
        if self.done:
            return
        self.done = True
        children.forget_parent_end(self._conn)
        self._conn.close()  # the helper's next send fails and it exits
        self._process.join(timeout=1.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=2.0)


def _message_to_pair(reldir: str, listing: Listing, message, view: Optional[View]) -> Pair:
    _, plain, error, entry_errors = message
    errors = tuple((name, OSError(code, text)) for name, code, text in entry_errors)
    if error is not None:
        return Pair(reldir, listing, None, OSError(error[0], error[1]), errors)
    if view is not None:
        return Pair(reldir, listing, plain, None, errors)
    entries = list(map(_as_entry, plain))
    return Pair(reldir, listing, {e[0]: e for e in entries}, None, errors)


class March:
    """Walk SRC and, in step, DST; yields a ``Pair`` per SRC directory.

    ``dst_exists``: whether DST itself exists (a new DST is known to be empty).
    ``need_stat``: SRC files must be stat'ed even where DST has nothing to
    compare them with (hard links, link-dest). ``dtype_only``: stat no file
    on either side (sizes are UNKNOWN). ``view``: ``pair.dst`` is
    ``view.make(dst, listing)`` instead of a dict (see the module docstring).
    ``prune``: relpaths the caller adds so that those SRC directories are not entered.
    ``lister``: DST listings from elsewhere (remote verify: a remote tree's stream), an object like
    ``_Lister`` whose ``get`` always answers, so DST is never read in this process.
    """

    def __init__(self, src: str, dst: str, *, follow_symlinks: bool = False, keep: Optional[Callable] = None,
                 dst_keep: Optional[Callable] = None, dst_exists: bool = True, need_stat: bool = False,
                 dtype_only: bool = False, view: Optional[View] = None, lister=None) -> None:
        self.src, self.dst = src, dst
        self.follow_symlinks = follow_symlinks
        self.keep, self.dst_keep = keep, dst_keep
        self.need_stat = need_stat
        self.dtype_only = dtype_only
        self.view = view
        self.prune: set = set()
        self._dst_dirs: set = {""} if dst_exists else set()  # SRC dirs known to be directories in DST
        self._lister: Optional[_Lister] = lister

    def start_lister(self) -> None:
        """Read DST in a forked helper (call before any thread of ours exists)."""
        if self._dst_dirs and "fork" in multiprocessing.get_all_start_methods():
            self._lister = _Lister(self.dst, self.dst_keep, self.view, not self.dtype_only)

    def _stat_files(self, reldir: str) -> bool:
        return not self.dtype_only and (self.need_stat or reldir in self._dst_dirs)

    def pairs(self, start: str = "", recursive: bool = True) -> Iterator[Pair]:
        """Pairs for ``start`` and (when recursive) every SRC directory below it, parents first."""
        if start:
            entries, error, errors = read_beneath(self.dst, start, self.dst_keep, not self.dtype_only)
            if entries is not None or error is not None:
                self._dst_dirs.add(start)
        lister = self._lister if (start == "" and recursive) else None
        for listing in walk(self.src, self.follow_symlinks, self._stat_files, self.keep, start, recursive,
                            self.prune):
            reldir = listing.reldir
            pair = self._pair(reldir, listing, lister)
            if pair.dst and self.view is not None:
                self._dst_dirs.update(relpath_join(reldir, name) for name in self.view.subdirs(pair.dst))
            elif pair.dst:
                for name, entry in pair.dst.items():
                    if entry.kind == DIR:
                        self._dst_dirs.add(relpath_join(reldir, name))
            yield pair
            self._dst_dirs.discard(reldir)
        if lister is not None:
            self.close()

    def _pair(self, reldir: str, listing: Listing, lister: Optional[_Lister]) -> Pair:
        if reldir not in self._dst_dirs:
            return Pair(reldir, listing, None)
        if lister is not None and not lister.done:
            message = lister.get(reldir)
            if message is not None:
                return _message_to_pair(reldir, listing, message, self.view)
        entries, error, errors = read_beneath(self.dst, reldir, self.dst_keep, not self.dtype_only)
        if entries is not None and self.view is not None:
            dst_listing = Listing(reldir, list(entries.values()), None, errors)
            return Pair(reldir, listing, self.view.make(self.dst, dst_listing), error, errors)
        return Pair(reldir, listing, entries, error, errors)

    def close(self) -> None:
        if self._lister is not None:
            self._lister.close()
            self._lister = None
