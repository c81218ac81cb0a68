"""Young files in the copy worker: written to their temp name, published only after a second read.

A file changed in the last seconds may be in the middle of a write whose
timestamps have already moved (``content.digest``). Its copy is complete in
the temp file, but the final name waits: once per batch (or every
``MAX_FILES`` / ``MAX_BYTES``) the worker pauses (``digest.settle``), reads
each young source again and publishes the copies whose second digest agrees.
A file that disagrees is copied again, with its own pause, up to the retry
limit; then it is reported as changed. One pause per batch keeps a burst of
new files (watch mode) fast.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..content import digest as digests
from ..content.digest import XXH128
from ..errors import describe
from ..fs.beneath import unlink_quietly
from ..model.entries import FILE
from ..model.results import CANCELLED, COPIED, INTERRUPTED, SKIPPED, VANISHED, Result, failure

MAX_FILES = 64
MAX_BYTES = 64 << 20


class Pending(NamedTuple):
    """A young file's finished copy, waiting under its temp name."""

    relpath: str
    name: str
    tmp: str
    before: os.stat_result
    digest: str
    why: str
    seconds: float  # how long its read took
    src_name: str = ""  # the source's name (another than ``name`` only for a single file copied to a new name)
    slot: int = -1  # its place in the batch's results


class YoungFiles:
    def __init__(self, copier) -> None:
        self.copier = copier  # the batch's worker.BatchCopier
        self.items: list = []
        self.bytes = 0
        self.seconds = 0.0

    def add(self, pending: Pending) -> None:
        self.items.append(pending)
        self.bytes += pending.before.st_size
        self.seconds += pending.seconds

    def full(self) -> bool:
        return len(self.items) >= MAX_FILES or self.bytes >= MAX_BYTES

    def confirm(self, results: list) -> None:
        """Pause once, then publish or redo each waiting copy; fills its place in ``results``."""
        if not self.items:
            return
        items, self.items, self.bytes = self.items, [], 0
        digests.settle(self.seconds)
        self.seconds = 0.0
        for i, pending in enumerate(items):
            try:
                results[pending.slot] = self._confirm(pending)
            except OSError as exc:  # the rename into place failed (its temp is already removed)
                results[pending.slot] = self.copier.error_result(pending.relpath, FILE, exc)
            except BaseException:
                for rest in items[i:]:
                    unlink_quietly(rest.tmp, self.copier.dst_fd)
                raise

    def _confirm(self, p: Pending) -> Result:
        copier = self.copier
        if copier.stopping():
            unlink_quietly(p.tmp, copier.dst_fd)
            return Result(p.relpath, CANCELLED, FILE, 0, None, "", INTERRUPTED, "interrupted")
        try:
            fd = os.open(p.src_name or p.name, copier.src_flags, dir_fd=copier.src_fd)
        except OSError as exc:
            unlink_quietly(p.tmp, copier.dst_fd)
            if isinstance(exc, FileNotFoundError):
                return Result(p.relpath, SKIPPED, FILE, 0, None, "", VANISHED, "vanished before it could be copied")
            return failure(p.relpath, FILE, f"source: {describe(exc)}")
        try:
            same = digests.same_version(fd, p.before, p.digest, copier.hasher or XXH128, copier.stop)
        finally:
            os.close(fd)
        if not same:
            unlink_quietly(p.tmp, copier.dst_fd)
            return copier.copy_file_retrying(p.relpath, p.name, p.why, young_later=False, src_name=p.src_name or None)
        copier.rename_into_place(p.tmp, p.name)
        digest = p.digest if copier.hasher is not None else None
        return Result(p.relpath, COPIED, FILE, p.before.st_size, digest, p.why)

    def discard(self) -> None:
        for pending in self.items:
            unlink_quietly(pending.tmp, self.copier.dst_fd)
        self.items = []
