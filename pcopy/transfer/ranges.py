"""A big file split across workers: its hash and its ranges are pool items; renamed when all are done.

    Run.produce ─► Splitter.split(bundle): a bundle of one big COPY becomes pieces (``transfer.pieces``):
        SRC stat'ed; the temp created once (O_EXCL | O_NOFOLLOW, beneath DST; --partial: the kept copy)
        ─► one HASH piece (xxh128 of the whole file, read in order) + RANGE pieces of ``range_bytes``
    Run.consume ─► Splitter.consume(piece): every piece succeeded ─► the SEAL piece (check, metadata, rename)
        ─► the file's one Result (the HASH piece's digest) ─► Run._consume_batch, as any file's

Why: one worker copying a 4 GiB file left the others idle. xxh128 is sequential, so one piece hashes
the whole file in order while another worker writes the ranges. Linux serializes writes into one
file on its inode lock (tmpfs, ext4, xfs buffered, NFS, FUSE): two range writers are no faster than
one and the waiting one spins, so ``RANGE_WRITERS`` (1) ranges are handed out at a time, the next
when one is done, on whichever worker is free. (The hash piece reads ahead of the writer, so on a
cold disk the writer should find the source in the page cache: not measured yet.)

Not split, and why: -j 1 (no other worker); a busy machine (``spare_core``: the split reads the
source twice); dry runs; files smaller than ``range_bytes``; a young file (changed in the last
seconds: the whole-file path reads it twice to trust it, which pieces on several workers cannot do
as one read); files with holes and --sparse (``copydata`` keeps holes, ranges would fill them);
--transform and --bwlimit (nothing to gain). Every backend splits the same way: pieces are ordinary
pool items, run by processes, threads or the Dask cluster's workers (which see
DST at the same path, checked at start-up; the temp is created by this process, so its pid lives as
long as the run).

Failures: the first piece that fails fails the file (one Result with its path and reason), its temp
is removed at once (kept with --partial) and later pieces of it are dropped. A source that changed
goes back to the whole-file path, which retries and reports it as it does any file (SOURCE_CHANGED).
Ctrl-C: the engine removes the temps of the items in flight; ``discard`` removes any other.
"""

from __future__ import annotations

import functools
import itertools
import os
import stat
from typing import Callable, Iterable, Iterator, Optional

from ..content import digest as digests
from ..errors import describe
from ..fs.beneath import DirCache, unlink_quietly
from ..fs.temps import TMP_FLAGS, partial_name, temp_name
from ..model.batching import RANGE_WRITERS, single
from ..model.entries import COPY, FILE, Batch, relpath_join
from ..model.results import COPIED, SOURCE_CHANGED, failure
from ..options import Options
from ..runtime.backend import default_jobs
from ..runtime.progress import Counters
from .partial import open_kept
from .pieces import HASH, RANGE, SEAL, Piece, identity

__all__ = ["Piece", "Splitter"]


def spare_core() -> bool:
    """Whether a core would otherwise idle. A split file is read twice (the hash piece's pass and the
    writer's), so on a busy machine splitting only adds work: 4 GiB on tmpfs, 2 cores at a load of
    3-7, took 1.21-1.88 × cp -a split and 1.18-1.86 × whole, with 0.3-0.7 s more CPU split (three runs,
    no winner). The 1-minute load average is the signal."""
    try:
        return os.getloadavg()[0] + 1 <= default_jobs()
    except OSError:
        return True


class _File:
    """A split file in flight."""

    __slots__ = ("batch", "tmp", "left", "waiting", "digest", "written")

    def __init__(self, batch: Batch, tmp: str, left: set, waiting: list) -> None:
        self.batch, self.tmp, self.left = batch, tmp, left
        self.waiting = waiting  # range pieces not handed out yet, last first
        self.digest: Optional[str] = None
        self.written = 0  # range bytes already counted as progress


class Splitter:
    """The parent's table of split files (see the module docstring)."""

    def __init__(self, options: Options, src_dirs: DirCache, dst_dirs: DirCache, counters: Counters) -> None:
        self.options = options
        self.src_dirs, self.dst_dirs, self.counters = src_dirs, dst_dirs, counters
        self.on = (options.range_bytes > 0 and (options.jobs or default_jobs()) > 1 and not options.dry_run
                   and options.transform is None and not options.sparse and not options.bwlimit and spare_core())
        self.files: dict = {}  # key -> _File
        self._keys = itertools.count()

    def split_all(self, bundles: Iterable) -> Iterator:
        for bundle in bundles:
            yield from self.split(bundle)

    def split(self, bundle) -> Iterator:
        """The bundle itself, or the pieces of its one big file (none after the file failed)."""
        pieces = self._start(bundle[0]) if self.on and len(bundle) == 1 and len(bundle[0].tasks) == 1 else []
        if not pieces:
            yield bundle
            return
        for piece in pieces:
            if piece.key not in self.files:
                return  # failed already: the rest is not attempted
            yield piece

    def resubmitter(self, resubmit: Callable) -> Callable:
        """``resubmit`` for work handed back (a big file deferred by a batch): split like new work."""
        if not self.on:
            return resubmit

        def push(bundle) -> None:
            for item in self.split(bundle):
                resubmit(item)
        return push

    def _start(self, batch: Batch) -> list:
        """Stat the source, create the temp, register the file: its pieces (or [] to copy it whole)."""
        options, task = self.options, batch.tasks[0]
        if task.action != COPY or 0 <= task.size < options.range_bytes:
            return []
        try:
            with self.src_dirs.dir(batch.reldir) as dir_fd:
                st = os.stat(task.source or task.name, dir_fd=dir_fd, follow_symlinks=options.follow_symlinks)
            size = st.st_size
            if (not stat.S_ISREG(st.st_mode) or size < options.range_bytes or st.st_blocks * 512 < size
                    or digests.is_young(st)):
                return []
            with self.dst_dirs.dir(batch.reldir) as dir_fd:
                if options.partial:
                    tmp = partial_name(task.name)
                    out, kept = open_kept(dir_fd, tmp, size)
                else:
                    tmp, kept = temp_name(options.token), 0
                    out = os.open(tmp, TMP_FLAGS, 0o600, dir_fd=dir_fd)
                try:
                    made = os.fstat(out)
                finally:
                    os.close(out)
        except OSError:
            return []  # the whole-file path meets the same error and reports it
        key = next(self._keys)
        make = functools.partial(Piece, batch, key, tmp=tmp, tmp_id=(made.st_dev, made.st_ino),
                                 source=identity(st), kept=kept)
        step = options.range_bytes
        hashing = [make(HASH, 0, size)] if options.hash != "none" else []
        writing = [make(RANGE, start, min(start + step, size)) for start in range(0, size, step)]
        self.files[key] = _File(batch, tmp, {(p.part, p.start) for p in hashing + writing},
                                writing[RANGE_WRITERS:][::-1])
        return hashing + writing[:RANGE_WRITERS]

    def consume(self, piece: Piece, results, exc, resubmit: Callable) -> list:
        """A piece's outcome; once the file is done (or failed), its results for ``Run._consume_batch``.
        ``resubmit`` (not split further): the seal, or the file handed back to be copied whole."""
        file = self.files.get(piece.key)
        if file is None:
            return []  # the file failed already: a late piece
        if exc is not None:
            task = piece.batch.tasks[0]
            return self._end(piece.key, [failure(relpath_join(piece.batch.reldir, task.name), FILE,
                                                 f"worker failed: {describe(exc)}")])
        result, notes = results[0][0], list(results[0][1:])
        if result.status != COPIED:
            if result.reason == SOURCE_CHANGED:  # the whole-file path retries it, and reports it if it must
                self._end(piece.key, [])
                resubmit(single(file.batch))
                return []
            return self._end(piece.key, [result, *notes])
        if piece.part == SEAL:
            return self._end(piece.key, [result._replace(digest=file.digest), *notes], remove=False)
        if piece.part == HASH:
            file.digest = result.digest
        else:
            file.written += result.size
            self.counters.bytes_done += result.size  # progress as ranges land (taken back at the end)
            if file.waiting:
                resubmit(file.waiting.pop())
        file.left.discard((piece.part, piece.start))
        if not file.left:
            resubmit(piece._replace(part=SEAL, start=0, end=0))
        return []

    def _end(self, key: int, results: list, remove: bool = True) -> list:
        """Forget a file: its progress bytes are the final Result's to count; its temp goes unless kept."""
        file = self.files.pop(key)
        self.counters.bytes_done -= file.written
        if remove and not self.options.partial:
            self._remove(file)
        return results

    def _remove(self, file: _File) -> None:
        try:
            with self.dst_dirs.dir(file.batch.reldir) as dir_fd:
                unlink_quietly(file.tmp, dir_fd)
        except OSError:
            pass

    def discard(self) -> None:
        """The run ends (or was interrupted): no temp of a split file outlives it (--partial keeps its own)."""
        for key in list(self.files):
            self._end(key, [])

