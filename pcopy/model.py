"""Value objects that flow through the pipeline: Entry → Task → Result → Report.

Entry, Task, Batch and Result are NamedTuples rather than dataclasses: tens of
thousands of them cross process boundaries per second, and tuples are the
cheapest immutable objects to build and pickle.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple, Optional

# Entry kinds
FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
SPECIAL = "special"  # FIFO, socket, device: never opened

# Task actions
COPY = "copy"  # copy a regular file (hash while writing)
LINK = "symlink"  # recreate a symbolic link
HASH = "hash"  # only hash the file already at DST (skipped, but in the manifest)
CHECKSUM = "checksum"  # same size at DST: compare contents, copy only if they differ
LINKDEST = "linkdest"  # unchanged in a --link-dest directory: hard-link it from there
HARDLINK = "hardlink"  # another name of an inode already copied in this run
ATTRS = "attrs"  # content unchanged, only the permissions differ: chmod in place

# Result statuses
COPIED = "copied"
SKIPPED = "skipped"
FAILED = "failed"
CANCELLED = "cancelled"
DEFERRED = "deferred"  # a big file found inside a batch: the engine resubmits it alone
LINKED = "linked"  # hard link created (--link-dest or -H)
CREATED = "created"  # directory created
DELETED = "deleted"  # removed from DST by --delete

UNKNOWN = -1  # size of an entry the walker did not stat


class Entry(NamedTuple):
    """One directory entry as the walker saw it (lstat unless following links).

    size is UNKNOWN (and times and mode 0) when the walker did not stat it.
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


class Task(NamedTuple):
    """One unit of work on one name inside a batch's directory.

    ``why`` is the rsync-style itemized change (``>f.st......``) shown by -v
    and dry runs; ``source`` is where a hard link comes from (LINKDEST: the
    --link-dest root; HARDLINK: the relative path of the first name).
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


class Result(NamedTuple):
    """What happened to one path; a failure is a result, never an exception."""

    relpath: str
    status: str
    kind: str
    size: int = 0
    digest: Optional[str] = None
    message: Optional[str] = None


class Results(list):
    """A worker's list of Results, pickled as plain tuples (see Batch.__reduce__)."""

    def __reduce__(self):
        return _unpickle_results, (tuple(map(tuple, self)),)


def _unpickle_results(plain: tuple) -> list:
    return list(map(functools.partial(tuple.__new__, Result), plain))


class Options(NamedTuple):
    """Everything a run needs; also travels, pickled, to every worker (a NamedTuple: immutable,
    cheap to import, ``options._replace(field=value)`` makes a changed copy)."""

    src: str
    dst: str
    hash: str = "xxh128"  # or "none": then the kernel copies (copy_file_range)
    force: bool = False
    follow_symlinks: bool = False
    manifest: bool = False  # skipped files must be hashed too
    fsync: bool = False
    token: str = "0"  # names this run's temporary files
    batch_files: int = 256
    batch_bytes: int = 16 << 20
    # sync
    delete: bool = False
    delete_excluded: bool = False
    max_delete: Optional[int] = None
    checksum: bool = False  # decide "changed" by content instead of size + mtime
    dry_run: bool = False
    hard_links: bool = False
    link_dest: tuple = ()  # absolute paths
    owner: bool = False  # preserve uid/gid (numeric); set when running as root
    replace: bool = False  # replace a DST entry of another kind (sync) instead of failing (copy)
    filters: tuple = ()  # gitignore-style lines, in order ("!pat" re-includes)
    sparse: bool = False  # write runs of zeros as holes
    # Transforms (pcopy.transforms): a name, "module:function", a Transform or a
    # top-level function (pickled by reference); None copies bytes unchanged.
    transform: object = None
    transform_level: Optional[int] = None


def relpath_join(reldir: str, name: str) -> str:
    return name if not reldir else reldir + os.sep + name


class Report:
    """What a run did; the CLI prints it, ``--json`` serialises it."""

    def __init__(self, results: Optional[list] = None, dry_run: bool = False) -> None:
        self.copied = 0
        self.skipped = 0
        self.failed = 0
        self.linked = 0
        self.deleted = 0
        self.bytes_copied = 0
        self.dirs = 0
        self.seconds = 0.0
        self.dry_run = dry_run
        self.stopped_early = False  # the destination filled up; the rest was not attempted
        self.failures: list = []
        self.warnings: list = []
        self.results = results  # every Result, when the caller asked for them

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={getattr(self, k)}" for k in ("copied", "skipped", "failed", "linked", "deleted",
                                                                "bytes_copied", "dirs", "seconds"))
        return f"Report({counts})"

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict:
        rate = self.bytes_copied / self.seconds if self.seconds > 0 else 0.0
        data = {
            "copied": self.copied,
            "skipped": self.skipped,
            "failed": self.failed,
            "linked": self.linked,
            "deleted": self.deleted,
            "bytes_copied": self.bytes_copied,
            "directories": self.dirs,
            "seconds": round(self.seconds, 6),
            "bytes_per_second": round(rate, 1),
            "dry_run": self.dry_run,
            "stopped_early": self.stopped_early,
            "failures": [{"path": r.relpath, "error": r.message} for r in self.failures],
            "warnings": list(self.warnings),
        }
        if self.results is not None:
            data["results"] = [r._asdict() for r in self.results]
        return data
