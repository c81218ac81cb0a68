"""What the walker sees (Entry) and what a worker is asked to do (Task, Batch)."""

from __future__ import annotations

import functools
import os
import stat
from typing import NamedTuple, Optional

# Entry kinds
FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
SPECIAL = "special"  # FIFO, socket, device: never opened

UNKNOWN = -1  # size of an entry the walker did not stat

# Task actions
COPY = "copy"  # copy a regular file (hash while writing)
LINK = "symlink"  # recreate a symbolic link
HASH = "hash"  # only hash the file already at DST (skipped, but in the manifest)
CHECKSUM = "checksum"  # same size at DST: compare contents, copy only if they differ
LINKDEST = "linkdest"  # unchanged in a --link-dest directory: hard-link it from there
HARDLINK = "hardlink"  # another name of an inode already copied in this run
ATTRS = "attrs"  # content unchanged, only permissions or owner differ: fix them in place


class Entry(NamedTuple):
    """One directory entry as the walker saw it (lstat unless following links).

    size is UNKNOWN (and times, mode and ids 0 or -1) when the walker did not stat it.
    """

    name: str
    kind: str
    size: int
    mtime_ns: int
    atime_ns: int
    mode: int
    ino: int = 0
    dev: int = 0
    nlink: int = 1
    uid: int = -1
    gid: int = -1
    ctime_ns: int = 0


# An Entry from a plain tuple without NamedTuple's Python-level __new__ (once per file in the parent).
make_entry = functools.partial(tuple.__new__, Entry)


def entry_from_stat(name: str, st: os.stat_result) -> Entry:
    mode = st.st_mode
    return make_entry((name, kind_of(mode), st.st_size, st.st_mtime_ns, st.st_atime_ns, mode, st.st_ino,
                       st.st_dev, st.st_nlink, st.st_uid, st.st_gid, st.st_ctime_ns))


class Task(NamedTuple):
    """One unit of work on one name inside a batch's directory.

    ``why`` is the rsync-style itemized change (``>f.st......``) shown by -v
    and dry runs; ``source`` is where a hard link comes from (LINKDEST: the
    --link-dest root; HARDLINK: the relative path of the first name) or, for
    COPY/LINK/CHECKSUM/ATTRS, the source's name when it differs from the DST
    name (a single file copied to a new name).
    """

    action: str
    name: str
    size: int
    why: str = ""
    source: Optional[str] = None


class Batch(NamedTuple):
    """Tasks that share a directory, so a worker opens that directory once."""

    reldir: str
    tasks: tuple

    def __reduce__(self):
        # Pickle the tasks as plain tuples: a NamedTuple costs a Python call per
        # instance to pickle, and a batch crosses to a worker for every 256 files.
        return _unpickle_batch, (self.reldir, tuple(map(tuple, self.tasks)))


def _unpickle_batch(reldir: str, plain: tuple) -> Batch:
    return Batch(reldir, tuple(map(functools.partial(tuple.__new__, Task), plain)))


def relpath_join(reldir: str, name: str) -> str:
    return name if not reldir else reldir + os.sep + name


def keep_parents(relpath: str, kept: set, include_self: bool = False) -> None:
    """Add the directories above ``relpath`` (and it, with ``include_self``) to ``kept``: a deletion
    that failed or a kept entry keeps every directory above it."""
    if include_self:
        kept.add(relpath)
    while os.sep in relpath:
        relpath = relpath.rpartition(os.sep)[0]
        kept.add(relpath)


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
