"""The one batching rule: small files share a batch, big ones go alone.

A batch is what one worker round trip carries: at most ``BATCH_FILES`` items
and ``BATCH_BYTES`` bytes of one directory (so the worker opens that directory
once); an item bigger than ``ALONE_BYTES`` is a batch of its own, so big files
spread over the workers. Items whose size is unknown (the walker did not stat
them) are grouped by count; the worker hands back a big one it finds (DEFERRED)
to run alone. Copy, sync, watch, hash, verify and map all batch through here.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

from .entries import UNKNOWN, Batch

BATCH_FILES = 256
BATCH_BYTES = 16 << 20
ALONE_BYTES = 4 << 20

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
