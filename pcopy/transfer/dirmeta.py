"""Directory modes, owners, attributes and times, set after their contents: by the workers.

A real tree has a directory per ~6 files; setting each one's metadata serially in the
parent took a quarter of its time while the workers idled. The directories of one
depth do not depend on each other (setting a child's times or mode does not touch its
parent's mtime), so each depth level goes to the pool in chunks, deepest level first:
a parent made read-only or untraversable afterwards cannot get in the way of its children.
The parent keeps the report: a worker hands back one ``DirOutcome`` per directory.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import NamedTuple, Optional

from ..content.metadata import At
from ..errors import describe
from ..fs.beneath import DirCache
from ..model.entries import DIR
from ..model.results import UPDATED, Result, failure
from ..options import Options
from ..runtime import worker
from .attrs import AttrCopier
from .plan import wanted_attrs

CHUNK_DIRS = 256  # directories per pool item
IN_PARENT_BELOW = 64  # fewer directories than this: not worth a round trip to the workers


class DirOutcome(NamedTuple):
    reldir: str
    item: Optional[str]  # rsync's ``.d...pog.ax`` for an existing directory that changed, else None
    error: Optional[str]  # why its metadata could not be set


class DirChunk(tuple):
    """``(reldir, new)`` pairs for one pool item. Like a bundle it names the directories whose temp
    files an abort must remove: none (directory metadata writes no temp file)."""

    __slots__ = ()
    reldirs: frozenset = frozenset()
    files = 0


def run_dirs(options: Options, chunk: DirChunk) -> tuple:
    """A worker's part: ``(outcomes, notes)`` for the directories of ``chunk``."""
    srcs = worker.dir_cache(options.token, options.src, options.follow_symlinks)
    dsts = worker.dir_cache(options.token, options.dst)
    return apply_dirs(options, srcs, dsts, chunk)


def apply_dirs(options: Options, srcs: DirCache, dsts: DirCache, chunk) -> tuple:
    meta: Optional[AttrCopier] = None
    if options.xattrs or options.acls:
        with dsts.dir("") as root_fd:
            meta = AttrCopier(options.xattrs, options.acls, options.token, root_fd, options.dst_unstored)
    outcomes = [apply_dir(options, srcs, dsts, meta, reldir, new) for reldir, new in chunk]
    return outcomes, list(dict.fromkeys(meta.notes)) if meta is not None else []


def apply_dir(options: Options, srcs: Optional[DirCache], dsts: DirCache, meta: Optional[AttrCopier], reldir: str,
              new: bool, source: Optional[tuple] = None) -> DirOutcome:
    """One directory's metadata; ``source``: the SRC directory's (stat, attributes) when it is on
    another machine (``remote.receive.set_dirs``), else read through ``srcs``."""
    try:
        if source is not None:
            st, attrs = source
        else:
            assert srcs is not None
            st, attrs = _source_dir(srcs, reldir, options.follow_symlinks, meta)
        mode, uid, gid = wanted_attrs(options, st.st_mode, st.st_uid, st.st_gid, True)
        with dsts.dir(reldir) as fd:
            before = os.fstat(fd)
            chown = options.owner or options.chown != (-1, -1)
            if chown:
                os.fchown(fd, uid, gid)
            if options.dst_modes:
                os.fchmod(fd, stat.S_IMODE(mode))
            x = a = False
            if meta is not None:
                have = meta.read(fd)
                x, a = meta.differs(attrs, have)
                meta.apply(fd, attrs, have)  # mkdir under a default ACL inherits one: compared, not assumed
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            if options.fsync:
                os.fsync(fd)
    except OSError as exc:
        return DirOutcome(reldir, None, f"cannot set directory metadata: {describe(exc)}")
    item = None if new else _item(options, before, (mode, uid, gid) if chown else (mode, -1, -1), x, a)
    return DirOutcome(reldir, item, None)


def outcome_results(outcome: DirOutcome, unreadable: set) -> Optional[Result]:
    """The report's line for one directory (None: nothing to say, or already reported as unreadable)."""
    if outcome.error is not None:
        return None if outcome.reldir in unreadable else failure(outcome.reldir or ".", DIR, outcome.error)
    return Result(outcome.reldir or ".", UPDATED, DIR, 0, None, outcome.item) if outcome.item else None


def levels(dirs: list, new: set) -> list:
    """``DirChunk`` lists, one per depth, deepest first."""
    by_depth: dict = {}
    for reldir in dirs:
        by_depth.setdefault(reldir.count(os.sep) + 1 if reldir else 0, []).append((reldir, reldir in new))
    return [[DirChunk(pairs[i:i + CHUNK_DIRS]) for i in range(0, len(pairs), CHUNK_DIRS)]
            for _, pairs in sorted(by_depth.items(), reverse=True)]


def _item(options: Options, before: os.stat_result, wanted: tuple, x: bool, a: bool) -> Optional[str]:
    """rsync's ``.d...pog.ax`` for a directory that existed and got other permissions, owner or
    attributes (its times change whenever something is written into it: not itemized, as with rsync -v)."""
    mode, uid, gid = wanted
    p = options.dst_modes and stat.S_IMODE(before.st_mode) != stat.S_IMODE(mode)
    o, g = uid >= 0 and before.st_uid != uid, gid >= 0 and before.st_gid != gid
    if not (p or o or g or x or a):
        return None
    return "".join((".d...", "p" if p else ".", "o" if o else ".", "g" if g else ".", ".",
                    "a" if a else ".", "x" if x else "."))


def _source_dir(srcs: DirCache, reldir: str, follow_symlinks: bool, meta: Optional[AttrCopier]) -> tuple:
    """The SRC directory's stat and attributes, through its parent (a directory we may not read can
    still be stat'ed)."""
    parent, _, name = reldir.rpartition(os.sep)
    with srcs.dir(parent) as fd:
        st = os.stat(name, dir_fd=fd, follow_symlinks=follow_symlinks) if name else os.fstat(fd)
        attrs = (meta.read(At(fd, name)) if name else meta.read(fd)) if meta is not None else {}
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "source is no longer a directory")
    return st, attrs
