"""The two ends of a remote run behind one interface: ``Local`` calls ``ops`` directly, ``Remote``
asks ``pcopy serve`` over its control connection (and walks over a connection of its own, so the
walk streams while the control connection makes directories). The flow (``flow``) does not care
which end is which.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, Optional

from ..errors import PcopyError
from ..fs import beneath
from ..model.entries import Entry, entry_from_stat
from . import ops
from .protocol import ProtocolError, check_relpath, entry_in, error_in
from .receive import fix_batch, link_names, receiver_options, set_dirs
from .send import src_meta
from .transport import Connection


def _entry_errors(plain) -> tuple:
    return tuple((name, OSError(code, text)) for name, code, text in plain)


class Local:
    """This machine's end."""

    remote = False
    root_stat = None  # the root's Entry fields, set by info()

    def __init__(self, root: str, label: str, filter_spec: Optional[dict]) -> None:
        self.root = root
        self.label = label
        self.filter_spec = filter_spec
        self.marked: set = set()  # SRC directories left out for holding an --exclude-if-present marker
        self.keep = ops.make_keep(root, filter_spec, self.marked)

    def info(self) -> dict:
        info = ops.root_info(self.root)
        self.root_stat = info.get("stat")
        return info

    def make_root(self) -> None:
        self.make_root_at(self.root)

    def make_root_at(self, path: str) -> None:
        error = ops.make_root(path)
        if error:
            raise PcopyError(error)

    def info_at(self, path: str, follow: bool = True) -> dict:
        """What another path on this end is (a --link-dest root, a SRC)."""
        return ops.root_info(path, follow)

    def label_of(self, path: str) -> str:
        return path

    def listings(self, follow: bool, filtered: bool = True, xdev: bool = False, start: str = "",
                 recursive: bool = True) -> Iterator[tuple]:
        """(reldir, entries, error, entry_errors) for every directory, in walk order (``filtered``: what the
        filters keep; a DST walk is not, so that the run decides what --delete-excluded may delete);
        ``start``/``recursive``: only that directory (and what is below it), as a watch batch re-reads."""
        for listing in ops.walk_listings(self.root, follow, self.keep if filtered else None, xdev, start, recursive):
            yield listing.reldir, listing.entries, listing.error, listing.entry_errors

    def dir_entry(self, reldir: str, follow: bool) -> Optional[Entry]:
        """``reldir``'s own Entry when it is a directory reached beneath the root (no symlink on the way
        unless ``follow``), else None: a watch batch's start that vanished is skipped, as locally."""
        try:
            fd = beneath.open_dir_beneath(self.root, reldir, follow)
        except OSError:
            return None
        try:
            return entry_from_stat(reldir.rpartition(os.sep)[2], os.fstat(fd))
        except OSError:
            return None
        finally:
            os.close(fd)

    def readdir(self, reldir: str) -> tuple:
        message = ops.readdir_out(self.root, reldir)
        return _readdir_in(message)

    def readdir_at(self, root: str, reldir: str) -> tuple:
        """A directory of another tree on this end (a --link-dest snapshot)."""
        return _readdir_in(ops.readdir_out(root, reldir))

    def mkdirs(self, reldirs: list) -> list:
        return ops.mkdirs(self.root, reldirs)

    post_mkdirs = None  # here a mkdir costs no round trip

    def settle(self) -> None:
        pass

    backup: Optional[dict] = None  # --backup on the DST end: ops.backups_of

    def delete(self, items: list, dry: bool, protect: bool) -> list:
        return ops.delete(self.root, items, self.keep if protect else None, dry, self.backup)

    def set_dirs(self, items: list, token: str, spec: dict) -> dict:
        return set_dirs(receiver_options(self.root, token, spec), items)

    # metadata: the SRC end's stat and attributes, the DST end's in-place fixes and hard links

    def src_meta(self, relpaths: list, follow: bool, attrs: tuple, conn: Optional[Connection] = None) -> list:
        return src_meta(self.root, relpaths, follow, attrs)

    def fix(self, reldir: str, items: list, token: str, spec: dict, conn: Optional[Connection] = None) -> list:
        return fix_batch(receiver_options(self.root, token, spec), reldir, items)

    def link_names(self, items: list, token: str) -> list:
        return link_names(self.root, token, items)

    def remove_stale(self, reldir: str, names: list, partials: bool = False) -> int:
        return ops.remove_stale(self.root, reldir, names, partials)

    def cleanup(self, reldirs: list, token: str) -> int:
        return ops.remove_run_temps(self.root, reldirs, token)

    def digests(self, reldir: str, names: list, conn: Optional[Connection] = None) -> list:
        return ops.digests(self.root, reldir, names)

    def close(self) -> None:
        pass


def _readdir_in(message: dict) -> tuple:
    entries = message.get("entries")
    return (None if entries is None else {e[0]: e for e in map(entry_in, entries)},
            error_in(message.get("error")), _entry_errors(message.get("entry_errors") or ()))


class Remote:
    """The other machine's end: ``control`` for operations, ``walker`` for the walk (the same session
    by default: ``pcopy serve`` streams a walk beside other operations)."""

    remote = True
    root_stat = None

    def __init__(self, root: str, label: str, filter_spec: Optional[dict], control: Connection,
                 open_walker: Callable[[], Connection]) -> None:
        self.root = root
        self.label = label
        self.filter_spec = filter_spec
        self.control = control
        self.open_walker = open_walker
        self.walker: Optional[Connection] = None
        self.marked: set = set()  # as Local's: from the walk's messages
        self.keep = ops.make_keep(root, dict(filter_spec, markers=()) if filter_spec else None)  # never reads disk

    def info(self) -> dict:
        info = self.control.call({"op": "stat", "path": self.root})
        self.root_stat = info.get("stat")
        return info

    def make_root(self) -> None:
        self.make_root_at(self.root)

    def make_root_at(self, path: str) -> None:
        self.control.call({"op": "mkroot", "path": path})

    def info_at(self, path: str, follow: bool = True) -> dict:
        return self.control.call({"op": "stat", "path": path, "follow": follow})

    def label_of(self, path: str) -> str:
        return f"{self.control.spec.login}:{path}"

    def listings(self, follow: bool, filtered: bool = True, xdev: bool = False) -> Iterator[tuple]:
        conn = self.walker = self.open_walker()
        with conn.op_lock:  # a data stream may share the session: its frames and ours do not mix
            conn.send({"op": "walk", "root": self.root, "follow": follow, "xdev": xdev,
                       "filter": self.filter_spec if filtered else None})
            conn.flush()
        while True:
            header = conn.recv_walk()  # the walk streams beside the control session's other answers
            try:
                listing = self._listing(header)
            except ProtocolError as exc:
                raise PcopyError(f"{conn.spec.host}: {exc}") from None
            if listing is not None:
                self.marked.update(check_relpath(p) for p in header.get("marked") or ())
                yield listing
                continue
            if not header.get("ok"):
                raise PcopyError(f"{conn.spec.host}: {header.get('error', 'walk failed')}")
            return

    @staticmethod
    def _listing(header: dict) -> Optional[tuple]:
        if header.get("t") != "listing":
            return None
        return (check_relpath(header["reldir"]), [entry_in(e) for e in header["entries"]],
                error_in(header.get("error")), _entry_errors(header.get("entry_errors") or ()))

    def readdir(self, reldir: str) -> tuple:
        return _readdir_in(self.control.call({"op": "readdir", "root": self.root, "reldir": reldir}))

    def readdir_at(self, root: str, reldir: str) -> tuple:
        return _readdir_in(self.control.call({"op": "readdir", "root": root, "reldir": reldir}))

    def kept_sizes(self, reldir: str, names: list, conn: Optional[Connection] = None) -> list:
        """--partial: the bytes each name's kept copy holds there (``resume``)."""
        return (conn or self.control).call({"op": "kept", "root": self.root, "reldir": reldir,
                                            "names": names})["sizes"]

    def dst_tasks(self, reldir: str, tasks: list, token: str, spec: dict, conn: Optional[Connection] = None,
                  given: Optional[dict] = None) -> list:
        """HASH and LINKDEST tasks done there (``dstonly``); a Result (as a list) each."""
        conn = conn or self.control
        return conn.call({"op": "dsttasks", "root": self.root, "token": token, "reldir": reldir,
                          "tasks": [list(t) for t in tasks], "opts": spec, "attrs": given or {}})["results"]

    def mkdirs(self, reldirs: list) -> list:
        return self.control.call({"op": "mkdirs", "root": self.root, "reldirs": reldirs})["errors"]

    def post_mkdirs(self, reldirs: list, landed: Callable[[list, dict], None]) -> None:
        """mkdirs without a round trip: ``landed(reldirs, answer)`` later (a batch into one of them
        makes the directory itself if it comes first: mover.Mover)."""
        self.control.post({"op": "mkdirs", "root": self.root, "reldirs": reldirs},
                          lambda answer: landed(reldirs, answer))

    def settle(self) -> None:
        self.control.settle()

    backup: Optional[dict] = None

    def delete(self, items: list, dry: bool, protect: bool) -> list:
        return self.control.call({"op": "delete", "root": self.root, "items": items, "dry": dry,
                                  "filter": self.filter_spec if protect else None, "backup": self.backup})["found"]

    def set_dirs(self, items: list, token: str, spec: dict) -> dict:
        return self.control.call({"op": "dirs", "root": self.root, "items": items, "token": token, "opts": spec})

    def src_meta(self, relpaths: list, follow: bool, attrs: tuple, conn: Optional[Connection] = None) -> list:
        return (conn or self.control).call({"op": "srcmeta", "root": self.root, "relpaths": relpaths,
                                            "follow": follow, "attrs": list(attrs)})["meta"]

    def fix(self, reldir: str, items: list, token: str, spec: dict, conn: Optional[Connection] = None) -> list:
        return (conn or self.control).call({"op": "fix", "root": self.root, "reldir": reldir, "items": items,
                                            "token": token, "opts": spec})["results"]

    def link_names(self, items: list, token: str) -> list:
        return self.control.call({"op": "links", "root": self.root, "items": items, "token": token})["results"]

    def remove_stale(self, reldir: str, names: list, partials: bool = False) -> int:
        return self.control.call({"op": "stale", "root": self.root, "reldir": reldir, "names": names,
                                  "partials": partials})["removed"]

    def cleanup(self, reldirs: list, token: str) -> int:
        return self.control.call({"op": "cleanup", "root": self.root, "reldirs": reldirs,
                                  "token": token})["removed"]

    def digests(self, reldir: str, names: list, conn: Optional[Connection] = None) -> list:
        conn = conn or self.control
        return conn.call({"op": "digests", "root": self.root, "reldir": reldir, "names": names})["digests"]

    def close(self) -> None:
        """The client closes the sessions it opened."""


def _parts(reldir: str) -> list:
    return reldir.split(os.sep) if reldir else []


class DstListings:
    """DST listings in SRC's walk order: from the DST end's walk when it streams one (the march's
    lockstep rule: both walks go depth first, names sorted), else read one directory at a time."""

    def __init__(self, dst, stream) -> None:
        self.dst = dst
        self.stream = stream
        self.ahead = None

    def get(self, reldir: str) -> tuple:
        want = _parts(reldir)
        while self.stream is not None:
            message = self.ahead
            self.ahead = None
            if message is None:
                message = next(self.stream, None)
                if message is None:
                    self.stream = None
                    break
            if message[0] == reldir:
                _, entries, error, errors = message
                if error is not None:
                    return None, error, errors
                return {e.name: e for e in entries}, None, errors
            if _parts(message[0]) > want:
                self.ahead = message
                break
        return self.dst.readdir(reldir)

    def finish(self) -> None:
        """Read the rest of a remote walk, so its session is ready for another request."""
        if self.stream is not None and self.dst.remote:
            for _ in self.stream:
                pass
        self.stream = None
