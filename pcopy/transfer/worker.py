"""The worker: copy (and hash) the files of one batch, return a Result for each.

This is the one copy path. Copy, sync, watch and every pool backend call
``run_batch``; it never raises for a single file. For each file it:

1. opens the source relative to its directory's fd, with ``O_NOFOLLOW``;
2. writes the data into a temp name (``fs.temps``) created with ``O_EXCL``
   beside the final name, hashing (xxh128) what it reads (``content``);
3. checks that the source held still (``content.digest.confirm``: fstat
   before and after, and a second read of a file changed in the last seconds);
4. sets owner, mode and ns times on the temp file, then renames it into place.

So a final name only ever holds a complete file. Directories are opened with
``O_NOFOLLOW`` from their parent's fd, down from the root, and kept open for the
batches that follow (``fs.beneath.DirCache``), so a symlink planted in DST can
never redirect a write.
"""

from __future__ import annotations

import functools
import os
import stat
import time
from typing import Callable, Optional

from ..content import digest as digests
from ..content import throttle
from ..content.copydata import copy_data, dst_error
from ..content.digest import XXH128, Cancelled, SourceChanged
from ..errors import describe, is_disk_full
from ..fs.backup import Backups
from ..fs.beneath import unlink_quietly
from ..fs.temps import TMP_FLAGS, next_number, temp_prefix
from ..model.batching import should_defer
from ..model.entries import ATTRS, CHECKSUM, COPY, FILE, HASH, LINK, LINKDEST, SYMLINK, UNKNOWN, Batch
from ..model.results import (
    CANCELLED,
    COPIED,
    DEFERRED,
    DISK_FULL,
    ERROR,
    INTERRUPTED,
    NOT_REGULAR,
    NOTE,
    SKIPPED,
    SOURCE_CHANGED,
    VANISHED,
    Result,
    Results,
    failure,
)
from ..options import Options
from ..runtime import inner, worker
from ..runtime.backend import default_jobs
from .attrs import AttrCopier
from .inplace import InPlaceTasks
from .pieces import Piece, run_piece
from .plan import wanted_attrs
from .young import Pending, YoungFiles

STOP_CHECK_EVERY = 16  # files between two checks of the stop flag


INNER_PART = 8  # files per part when a worker runs its bundle on several threads (``runtime.inner``)
ONE_THREAD_PART = 64  # files per part while it runs on one


def run_bundle(options: Options, bundle) -> list:
    """A ``model.batching.Bundle``: one list of Results per batch, in order. A batch that raises
    (a bug, never a file's failure) fails its own files, not the other directories' of the bundle.
    With ``options.inner_threads`` above 1 the batches run in parts (``_parts``) on as many threads
    as the storage keeps busy (``runtime.inner``). A ``transfer.pieces.Piece`` (a part of a
    big file split across workers) is one batch's work."""
    if isinstance(bundle, Piece):
        return [run_batch(options, bundle.batch, functools.partial(run_piece, piece=bundle))]
    if options.inner_threads <= 1:
        return [_safe_batch(options, batch) for batch in bundle]
    gauge = inner.gauge()
    parts = _parts(bundle, INNER_PART if gauge.threads > 1 else -1 if gauge.quick else 0)
    done = inner.run_parts([part for _, part in parts], functools.partial(_safe_batch, options),
                           options.inner_threads)
    out: list = [[] for _ in bundle]
    for (n, _), results in zip(parts, done, strict=True):
        out[n].extend(results)
    return out


def _parts(bundle, size: int) -> list:
    """``(batch number, part)``: parts of ``size`` files. One thread so far (``size`` 0): a part costs
    a batch's set-up, so a first probe part of INNER_PART files (slow storage shows in the first
    window), then parts of ONE_THREAD_PART. The last bundle went by within one window (``size``
    -1: fast storage): the batches whole, as without threads (the bundle's time is still measured)."""
    if size < 0:
        return [(n, b) for n, b in enumerate(bundle) if b.tasks]
    parts: list = []
    for n, b in enumerate(bundle):
        if not b.tasks:
            continue
        first = size or (INNER_PART if not parts else ONE_THREAD_PART)
        parts.append((n, Batch(b.reldir, b.tasks[:first])))
        step = size or ONE_THREAD_PART
        parts += [(n, Batch(b.reldir, b.tasks[i:i + step])) for i in range(first, len(b.tasks), step)]
    return parts


def _safe_batch(options: Options, batch: Batch) -> list:
    try:
        return run_batch(options, batch)
    except Exception as exc:
        return fail_all(batch, f"worker failed: {describe(exc)}")


def run_batch(options: Options, batch: Batch, job: Optional[Callable] = None) -> list:
    """Run every task of a batch (or ``job(copier)``: a piece); one Result per task, never an exception."""
    srcs = worker.dir_cache(options.token, options.src, options.follow_symlinks)
    dsts = worker.dir_cache(options.token, options.dst)
    try:
        src_fd = srcs.acquire(batch.reldir)
    except OSError as exc:
        return fail_all(batch, f"source directory: {describe(exc)}", exc)
    try:
        dst_fd = dsts.acquire(batch.reldir)
    except OSError as exc:
        srcs.release(src_fd)
        return fail_all(batch, f"destination directory: {describe(exc)}", exc)
    try:
        copier = BatchCopier(options, src_fd, dst_fd)
        results = Results(copier.run(batch) if job is None else [job(copier)])
        results.extend(copier.notes())
        if options.fsync and not options.dry_run:
            os.fsync(dst_fd)  # the renames of this batch reach the disk too
        return results
    except OSError as exc:
        return fail_all(batch, f"destination directory: fsync: {describe(exc)}", exc)
    finally:
        srcs.release(src_fd)
        dsts.release(dst_fd)


def fail_all(batch: Batch, message: str, exc: Optional[BaseException] = None) -> list:
    reason = DISK_FULL if exc is not None and is_disk_full(exc) else ERROR
    prefix = batch.reldir + os.sep if batch.reldir else ""
    return [failure(prefix + t.name, SYMLINK if t.action == LINK else FILE, message, reason) for t in batch.tasks]


class BatchCopier(InPlaceTasks):
    """Per-batch state, so the per-file path does no repeated lookups (it is the hot loop)."""

    def __init__(self, options: Options, src_fd: int, dst_fd: int) -> None:
        self.options = options
        self.src_fd = src_fd
        self.dst_fd = dst_fd
        self.hasher = digests.algo(options.hash) if options.hash != "none" else None
        self.stop = worker.stop_flag()
        self.umask = worker.umask()
        # O_NONBLOCK: a file swapped for a FIFO after the walk must not hang the open (no effect on files)
        self.src_flags = (os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
                          | (0 if options.follow_symlinks else os.O_NOFOLLOW))
        self.tmp_prefix = temp_prefix(options.token)
        self.reldir = ""
        # Ownership (root, or --chown): files are born ours; chown only when the wanted ids differ.
        self.chown = options.owner or options.chown != (-1, -1)
        self.rewrites_attrs = bool(options.chmod) or options.chown != (-1, -1)
        self.born_ids: Optional[tuple] = (os.geteuid(), os.getegid())
        if self.chown and os.fstat(dst_fd).st_mode & stat.S_ISGID:
            self.born_ids = None  # a setgid directory decides the group: always chown
        self.transform = None
        if options.transform is not None:
            from ..content import transforms

            self.transform = transforms.for_options(options)
        self.backups = Backups(options.backup_dir, options.suffix, options.token) if options.backup else None
        self.meta = AttrCopier(options.xattrs, options.acls, options.token, dst_fd, options.dst_unstored)
        self.throttle = (throttle.for_run(options.token, options.bwlimit, options.jobs or default_jobs())
                         if options.bwlimit else None)

    def attrs(self, st: os.stat_result, is_dir: bool = False) -> tuple:
        """(mode, uid, gid) DST gets for a source with this stat (--chmod/--chown applied)."""
        if not self.rewrites_attrs:
            return st.st_mode, st.st_uid, st.st_gid
        return wanted_attrs(self.options, st.st_mode, st.st_uid, st.st_gid, is_dir)

    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def check_stop(self) -> None:
        if self.stopping():
            raise Cancelled

    def new_temp(self) -> str:
        return self.tmp_prefix + str(next_number())

    def notes(self) -> list:
        """The batch's one-line warnings for the run, as NOTE results (the consumer dedupes them)."""
        return [Result("", NOTE, FILE, 0, None, "", "", note) for note in dict.fromkeys(self.meta.notes)]

    def run(self, batch: Batch) -> list:
        results: list = []
        reldir = self.reldir = batch.reldir
        prefix = reldir + os.sep if reldir else ""
        shared = len(batch.tasks) > 1
        stopped = False
        young = YoungFiles(self)
        try:
            for i, task in enumerate(batch.tasks):
                if not i % STOP_CHECK_EVERY:  # an Event check costs a lock: small files check in groups
                    stopped = stopped or self.stopping()
                if stopped:
                    results.append(Result(prefix + task.name, CANCELLED, FILE, 0, None, "", INTERRUPTED,
                                          "interrupted"))
                    continue
                result = self.run_task(prefix + task.name, task, shared and task.size == UNKNOWN)
                if isinstance(result, Pending):  # a young file: published after its second read
                    young.add(result._replace(slot=i))
                    results.append(None)
                    if young.full():
                        young.confirm(results)
                else:
                    results.append(result)
            young.confirm(results)
        finally:
            young.discard()
        return results

    def error_result(self, relpath: str, kind: str, exc: OSError) -> Result:
        side = getattr(exc, "pcopy_side", "source")
        if side == "source" and isinstance(exc, FileNotFoundError):
            return Result(relpath, SKIPPED, kind, 0, None, "", VANISHED, "vanished before it could be copied")
        return failure(relpath, kind, f"{side}: {describe(exc)}", DISK_FULL if is_disk_full(exc) else ERROR)

    def run_task(self, relpath: str, task, may_defer: bool = False):
        """The task's Result (or, for a young file, its Pending copy); never raises for one file."""
        kind = SYMLINK if task.action == LINK else FILE
        try:
            action = task.action
            if action == COPY:
                return self.copy_file_retrying(relpath, task.name, task.why, may_defer, young_later=True,
                                               src_name=task.source)
            if action == HASH:
                return self.hash_existing(relpath, task)
            if action == CHECKSUM:
                return self.copy_if_content_differs(relpath, task)
            if action == LINKDEST:
                return self.link_from(relpath, task)
            if action == ATTRS:
                return self.fix_attrs(relpath, task)
            return self.copy_symlink(relpath, task)
        except Cancelled:
            return Result(relpath, CANCELLED, kind, 0, None, "", INTERRUPTED, "interrupted")
        except SourceChanged:
            return failure(relpath, kind, "source changed while being read", SOURCE_CHANGED)
        except digests.NotRegular:
            return Result(relpath, SKIPPED, kind, 0, None, "", NOT_REGULAR, "no longer a regular file")
        except OSError as exc:
            return self.error_result(relpath, kind, exc)

    # ----------------------------------------------------------------- regular files

    def copy_file_retrying(self, relpath: str, name: str, why: str = "", may_defer: bool = False,
                           young_later: bool = False, src_name: Optional[str] = None):
        """``name`` in DST; ``src_name`` when the source has another name (a single-file copy to a new name)."""
        try:
            for attempt in range(digests.RETRIES + 1):
                if attempt == digests.RETRIES:  # last try: once the file has been quiet for a while
                    digests.wait_until_quiet(os.stat(src_name or name, dir_fd=self.src_fd,
                                                     follow_symlinks=self.options.follow_symlinks))
                try:
                    return self.copy_file(relpath, name, may_defer, why, young_later, src_name)
                except SourceChanged:
                    young_later = False  # it is being written: check the next attempt right away
                    continue
        except OSError as exc:
            return self.error_result(relpath, FILE, exc)
        return failure(relpath, FILE, f"source changed while being copied (tried {digests.RETRIES + 1} times)",
                       SOURCE_CHANGED)

    def copy_file(self, relpath: str, name: str, may_defer: bool = False, why: str = "", young_later: bool = False,
                  src_name: Optional[str] = None):
        """Copy one file; with ``young_later`` a young file comes back as a Pending copy (see ``young``)."""
        fd = os.open(src_name or name, self.src_flags, dir_fd=self.src_fd)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return Result(relpath, SKIPPED, FILE, 0, None, "", NOT_REGULAR, "no longer a regular file")
            size = before.st_size
            if may_defer and should_defer(size, True):
                return Result(relpath, DEFERRED, FILE, size)  # hand it back to run alone on any free worker
            if self.transform is not None and self.transform.applies(name):
                from .transformed import transform_file

                return transform_file(self, relpath, name, fd, before)
            if self.options.partial and size > digests.SMALL_FILE:
                from .partial import copy_resuming

                return copy_resuming(self, relpath, name, fd, before, why)
            mode = stat.S_IMODE(self.attrs(before)[0])
            # created with its final mode, no fchmod: only where the umask, not a default ACL, masks it
            born_right = not (mode & self.umask or mode & 0o7000 or self.meta.default_acl)
            young = digests.is_young(before)
            hasher: Optional[digests.Algo] = self.hasher if self.hasher is not None or not young else XXH128
            tmp = self.new_temp()
            started = time.monotonic()
            try:
                out = os.open(tmp, TMP_FLAGS, mode if born_right else 0o600, dir_fd=self.dst_fd)
            except OSError as exc:
                raise dst_error(exc) from None
            try:
                digest = copy_data(fd, out, size, hasher, self.stop, self.options.sparse, before.st_blocks,
                                   self.throttle)
                attrs = self.meta.read(fd)  # before the unchanged check: a change to them moves ctime
                seconds = time.monotonic() - started
                if young and hasher is not None and digest is not None and not young_later:
                    digests.confirm(fd, before, digest, hasher, self.stop, seconds)
                else:
                    digests.check_unchanged(fd, before)
                self.seal(out, before, born_right, attrs)
            except BaseException:
                os.close(out)
                unlink_quietly(tmp, self.dst_fd)
                raise
            if young and young_later and digest is not None:
                try:
                    os.close(out)
                except OSError as exc:
                    unlink_quietly(tmp, self.dst_fd)
                    raise dst_error(exc) from None
                return Pending(relpath, name, tmp, before, digest, why, seconds, src_name or name)
            self.publish(out, tmp, name)
            return Result(relpath, COPIED, FILE, size, digest if self.hasher is not None else None, why)
        finally:
            os.close(fd)

    def seal(self, out: int, before: os.stat_result, born_right: bool, attrs: Optional[dict] = None) -> None:
        """Give the written temp file its source's owner (as root), mode, attributes and times (in the
        order content.metadata needs); fsync with --fsync."""
        mode, uid, gid = self.attrs(before)
        try:
            if self.chown and (uid, gid) != self.born_ids:
                os.fchown(out, uid, gid)
                born_right = False  # chown may clear mode bits: set them after
            if not born_right and self.options.dst_modes:
                os.fchmod(out, stat.S_IMODE(mode))
            if attrs is not None:
                self.meta.apply(out, attrs, fresh=True)
            os.utime(out, ns=(before.st_atime_ns, before.st_mtime_ns))
            if self.options.fsync:
                os.fsync(out)
        except OSError as exc:
            raise dst_error(exc) from None

    def publish(self, out: int, tmp: str, name: str) -> None:
        """Close the complete temp file and rename it to its final name (the only way a name appears)."""
        try:
            os.close(out)
        except OSError as exc:
            unlink_quietly(tmp, self.dst_fd)
            raise dst_error(exc) from None
        self.rename_into_place(tmp, name)

    def keep_backup(self, name: str) -> None:
        """--backup: keep what DST's ``name`` holds before it is replaced."""
        if self.backups is not None:
            try:
                self.backups.keep(self.dst_fd, self.options.dst, self.reldir, name)
            except OSError as exc:
                raise dst_error(exc) from None

    def rename_into_place(self, tmp: str, name: str) -> None:
        try:
            self.keep_backup(name)
            os.rename(tmp, name, src_dir_fd=self.dst_fd, dst_dir_fd=self.dst_fd)
        except OSError as exc:
            unlink_quietly(tmp, self.dst_fd)
            raise dst_error(exc) from None
