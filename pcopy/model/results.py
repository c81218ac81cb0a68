"""What happened to each path (Result) and to the whole run (Report).

A Result carries a *typed* outcome: ``status`` says what happened, ``reason``
says why in a word that code can test (``VANISHED``, ``DISK_FULL``, ...), and
``message`` is the human wording. Nothing decides anything by looking inside
a message.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

# Result statuses
COPIED = "copied"
SKIPPED = "skipped"
UPDATED = "updated"  # content unchanged; permissions or owner fixed in place
FAILED = "failed"
CANCELLED = "cancelled"
DEFERRED = "deferred"  # a big file found inside a batch: the engine resubmits it alone
LINKED = "linked"  # hard link created (--link-dest or -H)
CREATED = "created"  # directory created
DELETED = "deleted"  # removed from DST by --delete
MOVED = "moved"  # renamed in DST instead of copied again (watch's moves, sync --track-renames); message: old name
NOTE = "note"  # not a path: a worker's one-line warning for the run (``message``), e.g. attributes not stored

# Reasons (why a result has its status); "" when the status says it all
UNCHANGED = "unchanged"
SAME_CONTENT = "same-content"  # -c: sizes equal, digests equal
LINK_IN_PLACE = "link-in-place"
VANISHED = "vanished"  # deleted between the walk and the copy
SPECIAL_FILE = "special-file"  # FIFO, socket, device: not copied
NOT_REGULAR = "not-regular"  # replaced by something other than a file after the walk
SOURCE_CHANGED = "source-changed"  # kept changing while it was read
DISK_FULL = "disk-full"  # ENOSPC/EDQUOT: writing more is pointless
INTERRUPTED = "interrupted"
REPLACED = "replaced"  # a dry run's DST entry of another kind, removed to make way (not a --delete)
ERROR = "error"  # any other failure
# skipped by a selection rule the user asked for (rsync's --update, --ignore-existing, --existing, --max-size)
NEWER_IN_DST = "newer-in-dst"
EXISTS_IN_DST = "exists-in-dst"
NOT_IN_DST = "not-in-dst"
SIZE_LIMIT = "size-limit"
BY_RULE = (NEWER_IN_DST, EXISTS_IN_DST, NOT_IN_DST, SIZE_LIMIT)


class Result(NamedTuple):
    """What happened to one path; a failure is a result, never an exception.

    ``item`` is the rsync ``-i`` code of a change (``>f.st......``); for a
    hard link ``message`` names the path it links to.
    """

    relpath: str
    status: str
    kind: str
    size: int = 0
    digest: Optional[str] = None
    item: str = ""
    reason: str = ""
    message: Optional[str] = None


def failure(relpath: str, kind: str, message: str, reason: str = ERROR) -> Result:
    return Result(relpath, FAILED, kind, 0, None, "", reason, message)


class Results(list):
    """A worker's list of Results, pickled as plain tuples (see entries.Batch.__reduce__)."""

    def __reduce__(self):
        return _unpickle_results, (tuple(map(tuple, self)),)


def _unpickle_results(plain: tuple) -> list:
    return list(map(functools.partial(tuple.__new__, Result), plain))


COUNTS = ("copied", "symlinks", "updated", "skipped", "failed", "linked", "deleted", "bytes_copied", "dirs",
          "file_bytes", "total_size", "renamed")
# rsync's --stats kinds, for the source entries a run looked at and the new entries it made
KINDS = ("reg", "dir", "link", "special")
_KIND = {"file": "reg", "dir": "dir", "symlink": "link", "special": "special"}


class Report:
    """What a run did; the CLI prints it, ``--json`` serialises it."""

    def __init__(self, results: Optional[list] = None, dry_run: bool = False) -> None:
        self.copied = 0  # regular files written
        self.symlinks = 0  # symbolic links written
        self.updated = 0  # files whose permissions or owner were fixed in place
        self.skipped = 0
        self.failed = 0
        self.linked = 0
        self.deleted = 0
        self.renamed = 0  # DST entries renamed instead of copied again (rclone's "Renamed")
        self.bytes_copied = 0  # file data and symlink targets written (rsync's "sent" size)
        self.file_bytes = 0  # regular files' data written (rsync's "Total transferred file size")
        self.total_size = 0  # the size of the source's files and symlinks looked at ("Total file size")
        self.dirs = 0
        self.listed = dict.fromkeys(KINDS, 0)  # source entries looked at, by kind ("Number of files")
        self.created = dict.fromkeys(KINDS, 0)  # entries new in DST, by kind ("Number of created files")
        self.seconds = 0.0
        self.dry_run = dry_run
        self.stopped_early = False  # the destination filled up; the rest was not attempted
        self.discarded = 0  # files in flight when a watch session was stopped (temp files removed)
        self.failures: list = []
        self.warnings: list = []
        self.results = results  # every Result, when the caller asked for them

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={getattr(self, k)}" for k in (*COUNTS, "seconds"))
        return f"Report({counts})"

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def look_at(self, entries) -> None:
        """Count source entries the run considered (after filters), for ``--stats``."""
        listed = self.listed
        for entry in entries:
            kind = _KIND[entry[1]]
            listed[kind] += 1
            if kind != "dir":
                self.total_size += max(entry[2], 0)

    def count(self, results) -> tuple:
        """Add results to the counts; returns (files done, bytes written) for the progress display.

        "Files" are the source entries that are not directories, the same
        entries the walk counts as found: a directory's result (created,
        failed) and a deletion are not one. One call per batch (not per
        result) keeps the parent's per-file cost low.
        """
        nbytes = files = 0
        for result in results:
            status = result.status
            if status == COPIED:
                if result.kind == "symlink":
                    self.symlinks += 1
                else:
                    self.copied += 1
                    self.file_bytes += result.size
                nbytes += result.size  # a symlink counts its target's length, as in rsync
                if result.item.endswith("+++++++++"):
                    self.created[_KIND[result.kind]] += 1
            elif status == SKIPPED:
                self.skipped += 1
            elif status == LINKED:
                self.linked += 1
                if result.item.endswith("+++++++++"):
                    self.created["reg"] += 1
            elif status == UPDATED:
                self.updated += 1
            elif status == DELETED:
                if result.reason != REPLACED:
                    self.deleted += 1
                continue
            elif status == MOVED:
                self.renamed += 1
                continue
            elif status == CREATED:
                self.dirs += 1
                self.created["dir"] += 1
                continue
            elif status == FAILED:
                self.failed += 1
                self.failures.append(result)
            if result.kind != "dir":
                files += 1
        self.bytes_copied += nbytes
        return files, nbytes

    def merge(self, other: "Report", warnings: bool = True) -> None:
        """Add another run's counts (and warnings) to this one (watch sums its batches this way)."""
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind in KINDS:
            self.listed[kind] += other.listed[kind]
            self.created[kind] += other.created[kind]
        if warnings:
            self.warnings.extend(w for w in other.warnings if w not in self.warnings)
        self.stopped_early = self.stopped_early or other.stopped_early

    def to_dict(self) -> dict:
        rate = self.bytes_copied / self.seconds if self.seconds > 0 else 0.0
        data = {name: getattr(self, name) for name in COUNTS if name != "dirs"}
        data.update({
            "directories": self.dirs,
            "listed": dict(self.listed),
            "created": dict(self.created),
            "seconds": round(self.seconds, 6),
            "bytes_per_second": round(rate, 1),
            "dry_run": self.dry_run,
            "stopped_early": self.stopped_early,
            "discarded": self.discarded,
            "failures": [{"path": r.relpath, "error": r.message, "reason": r.reason} for r in self.failures],
            "warnings": list(self.warnings),
        })
        if self.results is not None:
            data["results"] = [r._asdict() for r in self.results]
        return data
