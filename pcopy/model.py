"""Value objects that flow through the pipeline: Entry → Task → Result → Report.

Entry, Task, Batch and Result are NamedTuples rather than dataclasses: tens of
thousands of them cross process boundaries per second, and tuples are the
cheapest immutable objects to build and pickle.
"""

from __future__ import annotations

import dataclasses
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

# Result statuses
COPIED = "copied"
SKIPPED = "skipped"
FAILED = "failed"
CANCELLED = "cancelled"
DEFERRED = "deferred"  # a big file found inside a batch: the engine resubmits it alone

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


class Task(NamedTuple):
    """One unit of work on one name inside a batch's directory."""

    action: str
    name: str
    size: int


class Batch(NamedTuple):
    """Tasks that share a directory, so a worker opens that directory once."""

    reldir: str
    tasks: tuple


class Result(NamedTuple):
    """What happened to one path; a failure is a result, never an exception."""

    relpath: str
    status: str
    kind: str
    size: int = 0
    digest: Optional[str] = None
    message: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything a run needs; also travels, pickled, to every worker."""

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
    # Transforms (pcopy.transforms): a name, "module:function", a Transform or a
    # top-level function (pickled by reference); None copies bytes unchanged.
    transform: object = None
    transform_level: Optional[int] = None


def relpath_join(reldir: str, name: str) -> str:
    return name if not reldir else reldir + os.sep + name


@dataclasses.dataclass
class Report:
    """What a run did; the CLI prints it, ``--json`` serialises it."""

    copied: int = 0
    skipped: int = 0
    failed: int = 0
    bytes_copied: int = 0
    dirs: int = 0
    seconds: float = 0.0
    failures: list = dataclasses.field(default_factory=list)
    results: Optional[list] = None  # every Result, when the caller asked for them

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict:
        rate = self.bytes_copied / self.seconds if self.seconds > 0 else 0.0
        data = {
            "copied": self.copied,
            "skipped": self.skipped,
            "failed": self.failed,
            "bytes_copied": self.bytes_copied,
            "directories": self.dirs,
            "seconds": round(self.seconds, 6),
            "bytes_per_second": round(rate, 1),
            "failures": [{"path": r.relpath, "error": r.message} for r in self.failures],
        }
        if self.results is not None:
            data["results"] = [r._asdict() for r in self.results]
        return data
