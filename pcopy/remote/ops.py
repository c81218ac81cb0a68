"""The operations one side does on its own tree, as plain data: what ``pcopy serve`` runs for the
client, and what the client runs on its local side. Everything beneath the root goes through
``fs.beneath`` (``O_NOFOLLOW`` per component), so a symlink planted in the tree never redirects
a write, a deletion or a metadata change outside it.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Callable, Iterator, Optional

from ..errors import describe
from ..fs import beneath, filters, temps
from ..fs.backup import Backups
from ..fs.march import read_beneath
from ..fs.scan import walk
from ..model.entries import DIR, entry_from_stat, keep_parents, relpath_join
from .protocol import entry_out, error_out


def make_keep(root: str, spec: Optional[dict], marked: Optional[set] = None) -> Optional[Callable]:
    """The filter a walk applies: ``spec`` = {"filters": [...], "markers": [...], "listed": [...],
    "recursive": bool} (the client's options: --exclude-if-present, --files-from, -r). A directory
    left out for holding a marker is added to ``marked`` (the DST end must not delete its copy)."""
    if not spec:
        return None
    listed = spec.get("listed")
    keep = filters.restrict(filters.make_filter(tuple(spec.get("filters") or ())), root, (),
                            frozenset(map(str, listed)) if listed is not None else None, bool(spec.get("recursive")))
    by_marker = filters.restrict(None, root, tuple(spec.get("markers") or ()))
    if by_marker is None:
        return keep

    def kept(relpath: str, is_dir: bool) -> bool:
        if keep is not None and not keep(relpath, is_dir):
            return False
        if is_dir and not by_marker(relpath, True):
            if marked is not None:
                marked.add(relpath)
            return False
        return True
    return kept


def listing_out(listing) -> dict:
    return {"reldir": listing.reldir, "entries": [entry_out(e) for e in listing.entries],
            "error": error_out(listing.error),
            "entry_errors": [[name, exc.errno, exc.strerror] for name, exc in listing.entry_errors]}


def walk_out(root: str, follow: bool, keep: Optional[Callable], xdev: bool = False,
             marked: Optional[set] = None) -> Iterator[dict]:
    """Every directory of ``root`` (fs.scan's order: depth first, names sorted) as a message, with the
    directories its filter left out for holding a marker (``make_keep``)."""
    for listing in walk_listings(root, follow, keep, xdev):
        message = listing_out(listing)
        if marked:
            message["marked"] = sorted(marked)
            marked.clear()
        yield message


def walk_listings(root: str, follow: bool, keep: Optional[Callable], xdev: bool = False, start: str = "",
                  recursive: bool = True) -> Iterator:
    """fs.scan.walk; ``xdev`` (-x): a directory on another file system is listed as an entry (its
    mount point is made in DST) but not entered, as locally (transfer.run)."""
    if not xdev:
        yield from walk(root, follow, keep=keep, start=start, recursive=recursive)
        return
    prune: set = set()
    dev = os.stat(root).st_dev
    for listing in walk(root, follow, keep=keep, prune=prune, start=start, recursive=recursive):
        yield listing
        prune.update(relpath_join(listing.reldir, e.name) for e in listing.entries
                     if e.kind == DIR and e.dev and e.dev != dev)


def readdir_out(root: str, reldir: str) -> dict:
    """One directory read beneath ``root``: {"entries": [...]|None, "error": ...}."""
    entries, error, errors = read_beneath(root, reldir)
    return {"entries": None if entries is None else [entry_out(e) for e in entries.values()],
            "error": error_out(error), "entry_errors": [[n, e.errno, e.strerror] for n, e in errors]}


def root_info(path: str, follow: bool = True) -> dict:
    """What ``path`` is: {"kind": "dir"|"file"|"other"|None, "real": realpath} (``follow=False``: a
    symlink itself is "other", as a SRC that names a link without -L)."""
    try:
        st = os.stat(path) if follow else os.lstat(path.rstrip("/") or "/")
    except FileNotFoundError:
        return {"kind": None, "real": os.path.realpath(path)}
    except OSError as exc:
        return {"kind": "error", "error": describe(exc)}
    kind = DIR if stat.S_ISDIR(st.st_mode) else ("file" if stat.S_ISREG(st.st_mode) else "other")
    return {"kind": kind, "real": os.path.realpath(path), "stat": entry_out(entry_from_stat("", st))}


def make_root(path: str) -> Optional[str]:
    try:
        os.makedirs(path, 0o777)
    except FileExistsError:
        if not os.path.isdir(path):
            return f"{path}: destination exists and is not a directory"
    except OSError as exc:
        return f"{path}: cannot create destination: {describe(exc)}"
    return None


def mkdirs(root: str, reldirs: list) -> list:
    """mkdir each (parents first) beneath root; None or the error text for each."""
    out: list = []
    for reldir in reldirs:
        try:
            beneath.make_dir_beneath(root, reldir, 0o700)
            out.append(None)
        except OSError as exc:
            out.append(describe(exc))
    return out


def backups_of(spec: Optional[dict]) -> Optional[Backups]:
    """--backup on this end: {"dir": path or None, "suffix": ..., "token": ...} (a path there: "~" expanded)."""
    if not spec:
        return None
    where = spec.get("dir")
    return Backups(os.path.expanduser(where) if where else None, str(spec.get("suffix") or ""),
                   str(spec.get("token") or "backup"))


def delete(root: str, items: list, keep: Optional[Callable] = None, dry: bool = False,
           backup: Optional[dict] = None) -> list:
    """Delete each [relpath, is_dir] beneath root, a directory with what it holds that ``keep`` keeps
    (children first; never through a link); with ``backup`` (--backup) moved to its backup place
    instead, a directory whole unless there is a --backup-dir (as locally: transfer.finish).
    Returns [relpath, kind, error or None] per entry found."""
    out: list = []
    keeper = backups_of(backup)
    for relpath, is_dir, *whole in items:  # whole: a replaced entry, moved to its backup place whole
        if not relpath or relpath.startswith("/") or ".." in relpath.split(os.sep):
            out.append([relpath, "file", "refused: not a path beneath the root"])
            continue
        if is_dir and not _is_dir_beneath(root, relpath):
            is_dir = False  # a link (or file) where a directory was: removed itself, never followed
        found = [(relpath, DIR if is_dir else "file")]
        whole = keeper is not None and (keeper.backup_dir is None or bool(whole and whole[0]))
        if is_dir and not whole:
            for listing in walk(root, keep=keep, start=relpath):
                if listing.error is not None:
                    found.append((listing.reldir, "unreadable:" + describe(listing.error)))
                    continue
                found.extend((relpath_join(listing.reldir, e.name), e.kind) for e in listing.entries)
        kept: set = set()
        for path, kind in reversed(found):
            if kind.startswith("unreadable:"):
                out.append([path, DIR, f"cannot read directory: {kind[11:]}"])
                keep_parents(path, kept, True)
                continue
            if kind == DIR and path in kept:
                continue
            error = None
            if not dry:
                try:
                    if keeper is not None and (kind != DIR or whole):
                        keeper.move_out(root, path)
                    else:
                        beneath.remove_beneath(root, path, kind == DIR)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    error = "not deleted: it holds excluded files" if exc.errno == errno.ENOTEMPTY else describe(exc)
                    keep_parents(path, kept)
            out.append([path, kind, error])
    return out


def _is_dir_beneath(root: str, relpath: str) -> bool:
    parent, _, name = relpath.rpartition(os.sep)
    try:
        with beneath.DirFd(root, parent) as fd:
            return stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def remove_stale(root: str, reldir: str, names: list, partials: bool = False) -> int:
    """Remove the temp files of dead writers among ``names`` (checked here: never trust the list), and
    with ``partials`` the kept copies of a --partial run (a run without --partial would never use them)."""
    removed = 0
    try:
        handle = beneath.DirFd(root, reldir)
    except OSError:
        return 0
    with handle as fd:
        for name in names:
            if temps.is_temp_name(name) and (temps.is_stale_temp(name) or (partials and temps.is_partial_name(name))):
                beneath.unlink_quietly(name, fd)
                removed += 1
    return removed


def remove_run_temps(root: str, reldirs: list, token: str) -> int:
    return temps.remove_temp_files(root, reldirs, token)


def digests(root: str, reldir: str, names: list) -> list:
    """xxh128 of each file (``-c``), hashed here: only digests travel. None where it cannot be read."""
    from ..content import digest

    out: list = []
    try:
        handle = beneath.DirFd(root, reldir)
    except OSError:
        return [None] * len(names)
    with handle as fd:
        for name in names:
            try:
                out.append(digest.digest_at(fd, name, digest.XXH128).digest)
            except (OSError, digest.SourceChanged, digest.NotRegular):
                out.append(None)
    return out


