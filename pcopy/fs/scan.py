"""The one walker: stream a tree one directory at a time, never listing the whole tree first.

It is iterative (an explicit stack, so a 500-level tree cannot hit the
recursion limit) and yields a ``Listing`` per directory as soon as that
directory is read, parents first, names in sorted order. A directory that
cannot be read becomes a listing with an error; an entry that cannot be
stat'ed is reported in ``entry_errors``; the walk goes on either way.

``walk_paths`` is the sorted-path mode for ``pcopy hash``: the same reads,
yielded in byte order of the whole relative path (``LC_ALL=C sort``).
"""

from __future__ import annotations

import errno
import os
from stat import S_ISDIR, S_ISREG
from typing import Callable, Iterator, NamedTuple, Optional

from ..errors import PcopyError, describe
from ..model.entries import DIR, FILE, SYMLINK, UNKNOWN, kind_of, make_entry, relpath_join
from .beneath import DirFd

_LONG_PATH = 3800  # bytes; PATH_MAX is 4096: past this, open directories component by component


class Listing(NamedTuple):
    reldir: str
    entries: list  # of Entry, sorted by name
    error: Optional[OSError] = None  # the directory itself could not be read
    entry_errors: tuple = ()  # (name, OSError) of entries that could not be stat'ed


def scan_dir(path, follow_symlinks: bool = False, stat_files: bool = True, errors: Optional[list] = None) -> list:
    """Entries of one directory (a path or an open directory fd), sorted by name.

    With ``stat_files=False`` regular files and symlinks are typed from the
    directory entry alone (no stat call) and get ``size=UNKNOWN``: a copy into
    an empty destination needs nothing more, and the worker's fstat is then
    the only stat of each file. Raises OSError when the directory cannot be
    read; an entry that cannot be stat'ed (EIO, EACCES) goes to ``errors`` as
    ``(name, exc)`` when a list is given (one that vanished is just skipped).
    This loop runs once per file in the parent process: keep it lean.
    """
    entries: list = []
    append = entries.append
    with os.scandir(path) as it:
        for de in it:
            if not stat_files:
                try:
                    if de.is_file(follow_symlinks=follow_symlinks):
                        append(make_entry((de.name, FILE, UNKNOWN, 0, 0, 0, de.inode(), 0, 1, -1, -1, 0)))
                        continue
                    if not follow_symlinks and de.is_symlink():
                        append(make_entry((de.name, SYMLINK, UNKNOWN, 0, 0, 0, de.inode(), 0, 1, -1, -1, 0)))
                        continue
                except OSError:
                    pass  # fall through to a full stat, which reports properly
            try:
                st = de.stat(follow_symlinks=follow_symlinks)
            except OSError as exc:
                try:  # a dangling or looping link is kept as the link itself
                    if not (follow_symlinks and de.is_symlink()):
                        raise exc
                    st = de.stat(follow_symlinks=False)
                except OSError as final:
                    if errors is not None and not isinstance(final, FileNotFoundError):
                        errors.append((de.name, final))
                    continue  # FileNotFoundError: vanished between readdir and stat
            mode = st.st_mode
            append(make_entry((de.name, FILE if S_ISREG(mode) else kind_of(mode), st.st_size, st.st_mtime_ns,
                               st.st_atime_ns, mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid,
                               st.st_ctime_ns)))
    entries.sort()
    return entries


def read_dir(root: str, reldir: str, follow_symlinks: bool = False, stat_files: bool = True,
             errors: Optional[list] = None) -> list:
    """scan_dir of ``root/reldir``; by path while it is short, component by component past PATH_MAX."""
    path = os.path.join(root, reldir) if reldir else root
    if len(os.fsencode(path)) < _LONG_PATH:
        return scan_dir(path, follow_symlinks, stat_files, errors)
    with DirFd(root, reldir, follow_symlinks) as fd:
        return scan_dir(fd, follow_symlinks, stat_files, errors)


def require_dir(path: str, what: str) -> os.stat_result:
    """The stat of a directory the user named; PcopyError (one line naming it) otherwise."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PcopyError(f"{path}: cannot read {what}: {describe(exc)}") from None
    if not S_ISDIR(st.st_mode):
        raise PcopyError(f"{path}: {what} is not a directory")
    return st


def _stat_dir(root: str, reldir: str) -> os.stat_result:
    path = os.path.join(root, reldir) if reldir else root
    if len(os.fsencode(path)) < _LONG_PATH:
        return os.stat(path)
    with DirFd(root, reldir, True) as fd:
        return os.fstat(fd)


def _always(reldir: str) -> bool:
    return True


def walk(root: str, follow_symlinks: bool = False, stat_files: Callable[[str], bool] = _always,
         keep: Optional[Callable[[str, bool], bool]] = None, start: str = "", recursive: bool = True,
         prune: Optional[set] = None) -> Iterator[Listing]:
    """Yield a Listing for ``root/start`` and each directory below it, parents first.

    ``stat_files(reldir)`` says whether the files of a directory need a stat
    (see ``scan_dir``); it is asked just before that directory is read.
    ``keep(relpath, is_dir)`` filters entries (see ``filters``); a directory
    it drops is not entered. ``prune``: relpaths the caller added while
    handling a listing, so their directories are not entered (a directory
    that could not be created in DST, say). With ``recursive=False`` only
    ``start`` itself is listed (watch mode re-reads just what changed).
    """
    stack: list = [(start, None)]  # (reldir, ancestors): ancestors is a linked list of (dev, ino)
    while stack:
        reldir, ancestors = stack.pop()
        if follow_symlinks:
            try:
                st = _stat_dir(root, reldir)
            except OSError as exc:
                yield Listing(reldir, [], exc)
                continue
            key = (st.st_dev, st.st_ino)
            if _is_ancestor(key, ancestors):
                yield Listing(reldir, [], OSError(errno.ELOOP, "symbolic link loop: leads back to a parent"))
                continue
            ancestors = (key, ancestors)
        entry_errors: list = []
        try:
            entries = read_dir(root, reldir, follow_symlinks, stat_files(reldir), entry_errors)
        except OSError as exc:
            yield Listing(reldir, [], exc)
            continue
        if keep is not None:
            entries = [e for e in entries if keep(relpath_join(reldir, e.name), e.kind == DIR)]
        yield Listing(reldir, entries, None, tuple(entry_errors))
        if recursive:
            subdirs = [relpath_join(reldir, e.name) for e in entries if e.kind == DIR]
            if prune:
                subdirs = [d for d in subdirs if d not in prune]
            stack.extend((d, ancestors) for d in reversed(subdirs))  # pop in name order


def _is_ancestor(key: tuple, ancestors) -> bool:
    while ancestors is not None:
        if ancestors[0] == key:
            return True
        ancestors = ancestors[1]
    return False


def _path_key(entry) -> bytes:
    """A directory's name sorts as ``name/``: that makes the whole walk byte-ordered by relative path."""
    name = os.fsencode(entry.name)
    return name + b"/" if entry.kind == DIR else name


def walk_paths(root: str, stat_files: bool = True, skip: frozenset = frozenset()) -> Iterator[Listing]:
    """Listings in byte order of the relative path (``a.b`` < ``a/x`` < ``a0``).

    Each directory's entries are yielded in runs, split where a subdirectory
    is descended into, so every path comes out in ``LC_ALL=C sort`` order while
    only one listing per level is held. Directory entries themselves are not
    part of the runs. ``skip``: relpaths to leave out (the manifest being written).
    """
    def level(reldir: str):
        errors: list = []
        try:
            entries = read_dir(root, reldir, False, stat_files, errors)
        except OSError as exc:
            return None, exc, ()
        if skip:
            entries = [e for e in entries if relpath_join(reldir, e.name) not in skip]
        entries.sort(key=_path_key)
        return iter(entries), None, tuple(errors)

    top, error, entry_errors = level("")
    if error is not None:
        yield Listing("", [], error)
        return
    stack = [("", top, entry_errors)]
    while stack:
        reldir, it, entry_errors = stack[-1]
        run: list = []
        descended = False
        for entry in it:
            if entry.kind != DIR:
                run.append(entry)
                continue
            if run or entry_errors:
                yield Listing(reldir, run, None, entry_errors)
                run, entry_errors = [], ()
                stack[-1] = (reldir, it, ())
            sub = relpath_join(reldir, entry.name)
            children, error, sub_errors = level(sub)
            if error is not None:
                yield Listing(sub, [], error)
                continue
            stack.append((sub, children, sub_errors))
            descended = True
            break
        if run or entry_errors:
            yield Listing(reldir, run, None, entry_errors)
            stack[-1] = (reldir, it, ())
        if not descended:
            stack.pop()
