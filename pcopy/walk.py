"""Stream a tree one directory at a time, never listing the whole tree first.

The walker is iterative (an explicit stack, so a 500-level tree cannot hit
the recursion limit) and yields a ``Listing`` per directory as soon as that
directory is read. A directory that cannot be read becomes a listing with an
error; the walk goes on.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from stat import S_ISREG
from typing import Callable, Iterator, NamedTuple, Optional

from .model import DIR, FILE, SPECIAL, SYMLINK, UNKNOWN, Entry, relpath_join

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_LONG_PATH = 3800  # bytes; PATH_MAX is 4096: past this, open directories component by component


def open_dir_beneath(root: str, reldir: str, follow_symlinks: bool = False) -> int:
    """Open ``root/reldir`` one component at a time, each with ``O_NOFOLLOW``.

    A symlink planted anywhere below ``root`` makes this fail (ELOOP/ENOTDIR)
    instead of leading outside the tree, and any depth works (no PATH_MAX).
    """
    fd = os.open(root, _DIR_FLAGS)
    flags = _DIR_FLAGS if follow_symlinks else _DIR_FLAGS | os.O_NOFOLLOW
    try:
        for part in reldir.split(os.sep) if reldir else ():
            next_fd = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _stat_deep(root: str, reldir: str) -> os.stat_result:
    fd = open_dir_beneath(root, reldir, True)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _scan_deep(root: str, reldir: str, follow_symlinks: bool, stat_files: bool, errors: list) -> list:
    """scan_dir for a directory whose path is longer than PATH_MAX allows."""
    fd = open_dir_beneath(root, reldir, follow_symlinks)
    try:
        return scan_dir(fd, follow_symlinks, stat_files, errors)
    finally:
        os.close(fd)


# Entry from a tuple without NamedTuple's Python-level __new__ (this runs once per file).
_entry = functools.partial(tuple.__new__, Entry)


class Listing(NamedTuple):
    reldir: str
    entries: list  # of Entry, sorted by name
    error: Optional[OSError] = None  # the directory itself could not be read
    entry_errors: tuple = ()  # (name, OSError) of entries that could not be stat'ed


def kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    return SPECIAL


def kind_name(mode: int) -> str:
    """The kind of a file in words, for messages."""
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "regular file" if stat.S_ISREG(mode) else "special file"


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
    entries = []
    append = entries.append
    with os.scandir(path) as it:
        for de in it:
            if not stat_files:
                try:
                    if de.is_file(follow_symlinks=follow_symlinks):
                        append(_entry((de.name, FILE, UNKNOWN, 0, 0, 0, de.inode(), 0, 1)))
                        continue
                    if not follow_symlinks and de.is_symlink():
                        append(_entry((de.name, SYMLINK, UNKNOWN, 0, 0, 0, de.inode(), 0, 1)))
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
            kind = FILE if S_ISREG(mode) else kind_of(mode)
            append(_entry((de.name, kind, st.st_size, st.st_mtime_ns, st.st_atime_ns, mode,
                           st.st_ino, st.st_dev, st.st_nlink)))
    entries.sort()
    return entries


def walk(root: str, follow_symlinks: bool = False,
         stat_files: Callable[[str], bool] = lambda reldir: True,
         keep: Optional[Callable[[str, bool], bool]] = None, start: str = "",
         recursive: bool = True) -> Iterator[Listing]:
    """Yield a Listing for ``root/start`` and each directory below it, parents first.

    With ``recursive=False`` only ``start`` itself is listed (watch mode
    re-reads just the directories whose contents changed).
    ``stat_files(reldir)`` says whether the files of a directory need a stat
    (see ``scan_dir``); it is asked just before that directory is read.
    ``keep(relpath, is_dir)`` filters entries (see ``filters``); a directory
    it drops is not entered.
    """
    stack = [(start, None)]  # (reldir, ancestors): ancestors is a linked list of (dev, ino)
    while stack:
        reldir, ancestors = stack.pop()
        path = os.path.join(root, reldir) if reldir else root
        if follow_symlinks:
            try:
                st = os.stat(path) if len(os.fsencode(path)) < _LONG_PATH else _stat_deep(root, reldir)
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
            if len(os.fsencode(path)) < _LONG_PATH:
                entries = scan_dir(path, follow_symlinks, stat_files(reldir), entry_errors)
            else:
                entries = _scan_deep(root, reldir, follow_symlinks, stat_files(reldir), entry_errors)
        except OSError as exc:
            yield Listing(reldir, [], exc)
            continue
        if keep is not None:
            entries = [e for e in entries if keep(relpath_join(reldir, e.name), e.kind == DIR)]
        yield Listing(reldir, entries, None, tuple(entry_errors))
        if recursive:
            subdirs = [(relpath_join(reldir, e.name), ancestors) for e in entries if e.kind == DIR]
            stack.extend(reversed(subdirs))  # pop in name order


def _is_ancestor(key: tuple, ancestors) -> bool:
    while ancestors is not None:
        if ancestors[0] == key:
            return True
        ancestors = ancestors[1]
    return False
