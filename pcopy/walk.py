"""Stream a tree one directory at a time, never listing the whole tree first.

The walker is iterative (an explicit stack, so a 500-level tree cannot hit
the recursion limit) and yields a ``Listing`` per directory as soon as that
directory is read. A directory that cannot be read becomes a listing with an
error; the walk goes on.
"""

from __future__ import annotations

import os
import stat
from typing import Iterator, NamedTuple, Optional

from .model import DIR, FILE, SPECIAL, SYMLINK, Entry, relpath_join


class Listing(NamedTuple):
    reldir: str
    entries: list  # of Entry, sorted by name
    error: Optional[OSError] = None


def kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    return SPECIAL


def entry_from_stat(name: str, st: os.stat_result) -> Entry:
    return Entry(name, kind_of(st.st_mode), st.st_size, st.st_mtime_ns, st.st_atime_ns, st.st_mode)


def scan_dir(path: str, follow_symlinks: bool = False) -> list:
    """Entries of one directory, sorted by name. Raises OSError."""
    entries = []
    with os.scandir(path) as it:
        for de in it:
            try:
                st = de.stat(follow_symlinks=follow_symlinks)
            except FileNotFoundError:
                if follow_symlinks and de.is_symlink():  # dangling: keep the link itself
                    st = de.stat(follow_symlinks=False)
                else:
                    continue  # vanished between readdir and stat
            entries.append(entry_from_stat(de.name, st))
    entries.sort()
    return entries


def walk(root: str, follow_symlinks: bool = False) -> Iterator[Listing]:
    """Yield a Listing for ``root`` and each directory below it, parents first."""
    stack = [""]
    seen = set()  # (dev, ino) of directories entered, to break symlink loops
    while stack:
        reldir = stack.pop()
        path = os.path.join(root, reldir) if reldir else root
        if follow_symlinks:
            try:
                st = os.stat(path)
            except OSError as exc:
                yield Listing(reldir, [], exc)
                continue
            if (st.st_dev, st.st_ino) in seen:
                yield Listing(reldir, [], OSError(40, "symbolic link loop, directory already visited"))
                continue
            seen.add((st.st_dev, st.st_ino))
        try:
            entries = scan_dir(path, follow_symlinks)
        except OSError as exc:
            yield Listing(reldir, [], exc)
            continue
        yield Listing(reldir, entries)
        subdirs = [relpath_join(reldir, e.name) for e in entries if e.kind == DIR]
        stack.extend(reversed(subdirs))  # pop in name order
