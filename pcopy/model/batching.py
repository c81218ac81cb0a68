"""The one batching rule: small files share a batch, big ones go alone.

A batch is at most ``BATCH_FILES`` items and ``BATCH_BYTES`` bytes of one
directory (so the worker opens that directory once); batches of small
directories travel together as one ``Bundle`` per worker round trip. An item
bigger than ``ALONE_BYTES`` is a batch of its own, so big files spread over
the workers. Items whose size is unknown (the walker did not stat
them) are grouped by count; the worker hands back a big one it finds (DEFERRED)
to run alone. Copy, sync, watch, hash, verify and map all batch through here.
A file of at least ``RANGE_BYTES`` is split further, into ranges of that size
that several workers copy at once (``transfer.ranges``).
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator, TypeVar

from .entries import UNKNOWN, Batch

BATCH_FILES = 256
BATCH_BYTES = 16 << 20
ALONE_BYTES = 4 << 20
RANGE_BYTES = 256 << 20  # a file this big is copied in ranges of this size by several workers
# ranges of one file written at once: Linux serializes writes into one file on its inode lock (tmpfs, ext4,
# xfs buffered, NFS, FUSE), so a second writer only spins; the reading and hashing run beside it instead
RANGE_WRITERS = 1

T = TypeVar("T")


def group(items: Iterable[T], size_of: Callable[[T], int], max_files: int = BATCH_FILES,
          max_bytes: int = BATCH_BYTES, alone_bytes: int = ALONE_BYTES) -> Iterator[list]:
    """Split items into lists that follow the rule above (sizes < 0 count as unknown: 0 bytes)."""
    chunk: list = []
    nbytes = 0
    for item in items:
        size = max(size_of(item), 0)
        if chunk and (len(chunk) >= max_files or nbytes + size > max_bytes or size > alone_bytes):
            yield chunk
            chunk, nbytes = [], 0
        chunk.append(item)
        nbytes += size
        if size > alone_bytes:
            yield chunk
            chunk, nbytes = [], 0
    if chunk:
        yield chunk


def _task_size(task) -> int:
    return task.size


def batches(reldir: str, tasks: list, max_files: int = BATCH_FILES, max_bytes: int = BATCH_BYTES,
            alone_bytes: int = ALONE_BYTES) -> Iterator[Batch]:
    """Batches of one directory's tasks."""
    if tasks and all(t.size == UNKNOWN for t in tasks):  # sizes unknown: by count (the worker defers big files)
        for start in range(0, len(tasks), max_files):
            yield Batch(reldir, tuple(tasks[start:start + max_files]))
        return
    for chunk in group(tasks, _task_size, max_files, max_bytes, alone_bytes):
        yield Batch(reldir, tuple(chunk))


def should_defer(size: int, shared: bool, alone_bytes: int = ALONE_BYTES) -> bool:
    """Inside a batch of unknown sizes, a file this big is handed back to run alone."""
    return shared and size > alone_bytes


BUNDLE_WAIT = 0.02  # seconds a started bundle waits for more directories before it goes anyway


class Bundle(tuple):
    """Batches of several directories that travel to a worker as one item.

    A real tree's directories hold a handful of files each (the median of a Python installation is
    about six): one round trip per directory kept the workers waiting on the parent. Small
    directories' batches therefore share a bundle up to the same file and byte limits as a batch.
    """

    __slots__ = ()

    @property
    def reldirs(self) -> set:
        return {batch.reldir for batch in self}

    @property
    def files(self) -> int:
        return sum(len(batch.tasks) for batch in self)


class Bundler:
    """Collects batches into bundles: ``add`` yields the bundles that are ready, ``flush`` the rest.

    A bundle goes when it is full, when a batch is big enough to travel alone, or when its first
    batch has waited ``max_wait`` seconds (a slow walk must not leave the workers idle).
    """

    def __init__(self, max_files: int = BATCH_FILES, max_bytes: int = BATCH_BYTES,
                 max_wait: float = BUNDLE_WAIT, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_files, self.max_bytes, self.max_wait, self.clock = max_files, max_bytes, max_wait, clock
        self._batches: list = []
        self._files = self._bytes = 0
        self._since = 0.0

    def add(self, batch: Batch) -> Iterator[Bundle]:
        files = len(batch.tasks)
        nbytes = sum(max(t.size, 0) for t in batch.tasks)
        if files * 2 >= self.max_files or nbytes * 2 >= self.max_bytes:
            yield Bundle((batch,))  # big already: alone, and the bundle being built goes on waiting
            if self._batches and self.clock() - self._since >= self.max_wait:
                yield from self.flush()
            return
        if self._batches and (self._files + files > self.max_files or self._bytes + nbytes > self.max_bytes):
            yield from self.flush()
        if not self._batches:
            self._since = self.clock()
        self._batches.append(batch)
        self._files += files
        self._bytes += nbytes
        if self._files >= self.max_files or self.clock() - self._since >= self.max_wait:
            yield from self.flush()

    def flush(self) -> Iterator[Bundle]:
        if self._batches:
            bundle = Bundle(self._batches)
            self._batches, self._files, self._bytes = [], 0, 0
            yield bundle


def single(batch: Batch) -> Bundle:
    """One batch as a bundle of its own (work handed back by a worker, a rerun)."""
    return Bundle((batch,))
