"""The worker: copy (and hash) the files of one batch, return a Result for each.

This is the one copy path. Copy, sync, watch and every pool backend call
``run_batch``; it never raises for a single file. For each file it:

1. opens the source relative to its directory's fd, with ``O_NOFOLLOW``;
2. writes the data into ``.pcopy-tmp-<run token>-<n>`` created with
   ``O_EXCL`` beside the final name, hashing (xxh128) as it goes;
3. checks with a second ``fstat`` that the source did not change meanwhile;
4. sets mode and ns times on the temporary file, then renames it into place.

So a final name only ever holds a complete file. All destination paths are
resolved component by component with ``O_NOFOLLOW`` from the DST root, so a
symlink planted in DST can never redirect a write outside it.
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import stat
import threading

import xxhash

from . import errors, transforms
from .hashing import new_hasher
from .model import (
    ATTRS,
    CANCELLED,
    CHECKSUM,
    COPIED,
    COPY,
    DEFERRED,
    FAILED,
    FILE,
    HASH,
    LINK,
    LINKDEST,
    LINKED,
    SKIPPED,
    SYMLINK,
    UNKNOWN,
    Batch,
    Options,
    Result,
    Results,
    relpath_join,
)
from .walk import open_dir_beneath

TMP_PREFIX = ".pcopy-tmp-"
SMALL_FILE = 1 << 20  # read in one call up to this size
STOP_CHECK_EVERY = 16  # files between two checks of the stop flag
CHUNK = 1 << 20
RETRIES_ON_CHANGE = 2
SPARSE_BLOCK = 64 << 10  # --sparse: zero blocks of this size become holes
_ZEROS = memoryview(bytes(SPARSE_BLOCK))

_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_state = threading.local()  # .stop: an Event set when the run is interrupted
_counter = itertools.count()


class _Cancelled(Exception):
    """The run is being interrupted: drop this file."""


class _SourceChanged(Exception):
    """The source's size or mtime changed while it was read."""


class _FastCopyUnavailable(Exception):
    """copy_file_range/sendfile cannot serve this pair of files."""


def worker_init(stop_event, in_subprocess: bool = True) -> None:
    """Pool initializer: remember the stop flag; let only the parent see Ctrl-C.

    A worker process also sets its umask to 0 so files can be created with
    their final mode (saving an fchmod per file); threads share the caller's
    umask and chmod instead.
    """
    if in_subprocess:
        # Ctrl-C and `kill -TERM -PGID` reach the whole group: only the parent may act on
        # them (it sets the stop event, then kills workers that do not stop in time).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.umask(0)
        _state.umask_zero = True
    _state.stop = stop_event


def make_dir_beneath(root: str, reldir: str, mode: int = 0o700) -> bool:
    """mkdir ``root/reldir`` (its parent must exist), never through a symlink.

    Returns True when the directory was created, False when it already existed.
    """
    parent, _, name = reldir.rpartition(os.sep)
    fd = open_dir_beneath(root, parent)
    try:
        os.mkdir(name, mode, dir_fd=fd)
        return True
    except FileExistsError:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise NotADirectoryError(errno.ENOTDIR, f"destination exists and is {kind}") from None
        return False
    finally:
        os.close(fd)


def copy_dir_metadata(src: str, dst: str, reldir: str, options: Options) -> None:
    """Give DST's directory the mode, times (and, as root, owner) of SRC's; fsync it with --fsync."""
    src_fd = open_dir_beneath(src, reldir, options.follow_symlinks)
    try:
        st = os.fstat(src_fd)
    finally:
        os.close(src_fd)
    fd = open_dir_beneath(dst, reldir)
    try:
        if options.owner:
            os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        if options.fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def is_stale_temp(name: str) -> bool:
    """A temp file of ours whose writer process is gone (``.pcopy-tmp-<token>-<pid>-<n>``)."""
    parts = name[len(TMP_PREFIX):].split("-")
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    try:  # a killed writer nobody reaped yet (pid 1 in many containers) is a zombie: dead too
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False  # the writer is alive: maybe a concurrent run


def run_batch(options: Options, batch: Batch) -> list:
    """Run every task of a batch; one Result per task, never an exception."""
    try:
        src_fd = open_dir_beneath(options.src, batch.reldir, options.follow_symlinks)
    except OSError as exc:
        return _fail_all(batch, f"source directory: {errors.describe(exc)}")
    try:
        dst_fd = open_dir_beneath(options.dst, batch.reldir)
    except OSError as exc:
        os.close(src_fd)
        return _fail_all(batch, f"destination directory: {errors.describe(exc)}")
    try:
        results = Results(_BatchCopier(options, src_fd, dst_fd).run(batch))
        if options.fsync:
            os.fsync(dst_fd)  # the renames of this batch reach the disk too
        return results
    except OSError as exc:
        return _fail_all(batch, f"destination directory: fsync: {errors.describe(exc)}")
    finally:
        os.close(src_fd)
        os.close(dst_fd)


def _fail_all(batch: Batch, message: str) -> list:
    kinds = {LINK: SYMLINK}
    return [Result(relpath_join(batch.reldir, t.name), FAILED, kinds.get(t.action, FILE), 0, None, message)
            for t in batch.tasks]


def _dst_error(exc: OSError) -> OSError:
    exc.pcopy_side = "destination"
    return exc


class _BatchCopier:
    """Per-batch state, so the per-file path does no repeated lookups (it is the hot loop)."""

    def __init__(self, options: Options, src_fd: int, dst_fd: int) -> None:
        self.options = options
        self.src_fd = src_fd
        self.dst_fd = dst_fd
        self.factory = new_hasher(options.hash)
        # small files: one read, one call that hashes the whole buffer (no hasher object)
        self.one_shot = xxhash.xxh3_128_hexdigest if options.hash == "xxh128" and not options.sparse else None
        self.stop = getattr(_state, "stop", None)
        self.exact_create = getattr(_state, "umask_zero", False)
        # O_NONBLOCK: a file swapped for a FIFO after the walk must not hang the open (no effect on files)
        self.src_flags = (os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
                          | (0 if options.follow_symlinks else os.O_NOFOLLOW))
        self.tmp_prefix = f"{TMP_PREFIX}{options.token}-{os.getpid()}-"
        self.reldir = ""
        # Ownership (root only): files are born ours; chown only when the source's differ.
        self.chown = options.owner
        self.born_ids = (os.geteuid(), os.getegid())
        if self.chown and os.fstat(dst_fd).st_mode & stat.S_ISGID:
            self.born_ids = None  # a setgid directory decides the group: always chown
        self.transform = transforms.for_options(options)

    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def run(self, batch: Batch) -> list:
        results = []
        reldir = self.reldir = batch.reldir
        prefix = reldir + os.sep if reldir else ""
        shared = len(batch.tasks) > 1
        stopped = False
        for i, task in enumerate(batch.tasks):
            if not i % STOP_CHECK_EVERY:  # an Event check costs a lock: small files check in groups
                stopped = stopped or self.stopping()
            if stopped:
                results.append(Result(prefix + task.name, CANCELLED, FILE, 0, None, "interrupted"))
            else:
                results.append(self.run_task(prefix + task.name, task, shared and task.size == UNKNOWN))
        return results

    def run_task(self, relpath: str, task, may_defer: bool = False) -> Result:
        kind = SYMLINK if task.action == LINK else FILE
        try:
            if task.action == COPY:
                return self.copy_file_retrying(relpath, task, may_defer)
            if task.action == HASH:
                return self.hash_existing(relpath, task.name)
            if task.action == CHECKSUM:
                return self.copy_if_content_differs(relpath, task)
            if task.action == LINKDEST:
                return self.link_from(relpath, task)
            if task.action == ATTRS:
                return self.fix_mode(relpath, task)
            return self.copy_symlink(relpath, task.name, task.why)
        except _Cancelled:
            return Result(relpath, CANCELLED, kind, 0, None, "interrupted")
        except OSError as exc:
            side = getattr(exc, "pcopy_side", "source")
            if side == "source" and isinstance(exc, FileNotFoundError):
                return Result(relpath, SKIPPED, kind, 0, None, "vanished before it could be copied")
            return Result(relpath, FAILED, kind, 0, None, f"{side}: {errors.describe(exc)}")

    def copy_file_retrying(self, relpath: str, task, may_defer: bool = False) -> Result:
        for _ in range(RETRIES_ON_CHANGE + 1):
            try:
                return self.copy_file(relpath, task.name, may_defer, task.why)
            except _SourceChanged:
                continue
        return Result(relpath, FAILED, FILE, 0, None, "source changed while being copied (tried 3 times)")

    def copy_file(self, relpath: str, name: str, may_defer: bool = False, why: str = "") -> Result:
        fd = os.open(name, self.src_flags, dir_fd=self.src_fd)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return Result(relpath, SKIPPED, FILE, 0, None, "no longer a regular file")
            if may_defer and before.st_size > self.options.batch_bytes:
                # Unstatted batch holds a big file: hand it back to run alone on any free worker.
                return Result(relpath, DEFERRED, FILE, before.st_size)
            if self.transform is not None and self.transform.applies(name):
                return self.transform_file(relpath, name, fd, before)
            mode = stat.S_IMODE(before.st_mode)
            # With umask 0 (process workers) the file is born with its final mode: no fchmod.
            born_right = self.exact_create and not mode & 0o7000
            tmp = self.tmp_prefix + str(next(_counter))
            try:
                out = os.open(tmp, _TMP_FLAGS, mode if born_right else 0o600, dir_fd=self.dst_fd)
            except OSError as exc:
                raise _dst_error(exc) from None
            try:
                size = before.st_size
                if size <= SMALL_FILE and self.one_shot is not None:  # the common case, kept tight
                    data = os.read(fd, size) if size else b""
                    if len(data) != size:
                        raise _SourceChanged
                    digest = self.one_shot(data)
                    _write_all(out, data)
                else:
                    digest = _copy_data(fd, out, size, self.factory, self.stop, self.options.sparse)
                _check_unchanged(fd, before)
                self.seal(out, before, born_right)
            except BaseException:
                os.close(out)
                _unlink_quietly(tmp, self.dst_fd)
                raise
            self.publish(out, tmp, name)
            return Result(relpath, COPIED, FILE, before.st_size, digest, why or None)
        finally:
            os.close(fd)

    def seal(self, out: int, before: os.stat_result, born_right: bool) -> None:
        """Give the written temp file its source's owner (as root), mode and times; fsync with --fsync."""
        try:
            if self.chown and (before.st_uid, before.st_gid) != self.born_ids:
                os.fchown(out, before.st_uid, before.st_gid)
                born_right = False  # chown may clear mode bits: set them after
            if not born_right:
                os.fchmod(out, stat.S_IMODE(before.st_mode))
            os.utime(out, ns=(before.st_atime_ns, before.st_mtime_ns))
            if self.options.fsync:
                os.fsync(out)
        except OSError as exc:
            raise _dst_error(exc) from None

    def publish(self, out: int, tmp: str, name: str) -> None:
        """Close the complete temp file and rename it to its final name (the only way a name appears)."""
        os.close(out)
        try:
            os.rename(tmp, name, src_dir_fd=self.dst_fd, dst_dir_fd=self.dst_fd)
        except OSError as exc:
            _unlink_quietly(tmp, self.dst_fd)
            raise _dst_error(exc) from None

    def copy_if_content_differs(self, relpath: str, task) -> Result:
        """--checksum with equal sizes: compare xxh128 of both sides; copy only if they differ."""
        src_digest = _digest_at(self.src_fd, task.name, self.src_flags, self.stop)
        try:
            dst_digest = _digest_at(self.dst_fd, task.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, self.stop)
        except OSError as exc:
            raise _dst_error(exc) from None
        if src_digest != dst_digest:
            if self.options.dry_run:
                return Result(relpath, COPIED, FILE, task.size, None, task.why)
            return self.copy_file_retrying(relpath, task)
        st = os.stat(task.name, dir_fd=self.src_fd, follow_symlinks=self.options.follow_symlinks)
        if not self.options.dry_run:
            try:
                os.chmod(task.name, stat.S_IMODE(st.st_mode), dir_fd=self.dst_fd, follow_symlinks=False)
                os.utime(task.name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=self.dst_fd, follow_symlinks=False)
            except OSError as exc:
                raise _dst_error(exc) from None
        return Result(relpath, SKIPPED, FILE, st.st_size, src_digest, "same content")

    def fix_mode(self, relpath: str, task) -> Result:
        """Same content, other permissions: chmod the DST file in place (rsync's ``.f...p.....``)."""
        st = os.stat(task.name, dir_fd=self.src_fd, follow_symlinks=self.options.follow_symlinks)
        try:
            os.chmod(task.name, stat.S_IMODE(st.st_mode), dir_fd=self.dst_fd, follow_symlinks=False)
            digest = None
            if self.factory is not None and self.options.manifest:
                digest = _digest_at(self.dst_fd, task.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, self.stop)
        except OSError as exc:
            raise _dst_error(exc) from None
        return Result(relpath, SKIPPED, FILE, st.st_size, digest, task.why)

    def link_from(self, relpath: str, task) -> Result:
        """--link-dest: hard-link the identical file of an earlier snapshot instead of copying."""
        try:
            old_fd = open_dir_beneath(task.source, self.reldir)
        except OSError:
            return self.copy_file_retrying(relpath, task)  # the old snapshot moved: just copy
        try:
            link_beneath_fds(old_fd, task.name, self.dst_fd, task.name, self.tmp_prefix + str(next(_counter)))
        except FileNotFoundError:
            return self.copy_file_retrying(relpath, task)
        finally:
            os.close(old_fd)
        digest = None
        if self.factory is not None and self.options.manifest:
            digest = _digest_at(self.dst_fd, task.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, self.stop)
        return Result(relpath, LINKED, FILE, task.size, digest, f"{task.why} => {task.source}")

    def copy_symlink(self, relpath: str, name: str, why: str = "") -> Result:
        src_fd, dst_fd = self.src_fd, self.dst_fd
        target = os.readlink(name, dir_fd=src_fd)
        st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        tmp = self.tmp_prefix + str(next(_counter))
        try:
            os.symlink(target, tmp, dir_fd=dst_fd)
        except OSError as exc:
            raise _dst_error(exc) from None
        try:
            if self.chown and (st.st_uid, st.st_gid) != self.born_ids:
                os.chown(tmp, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_fd, follow_symlinks=False)
            os.rename(tmp, name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd)
        except OSError as exc:
            _unlink_quietly(tmp, dst_fd)
            raise _dst_error(exc) from None
        return Result(relpath, COPIED, SYMLINK, len(os.fsencode(target)), None, why or None)

    def hash_existing(self, relpath: str, name: str) -> Result:
        """Hash a file that is already up to date at DST, for the manifest."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dst_fd)
        except OSError as exc:
            raise _dst_error(exc) from None
        try:
            hasher = self.factory()
            while True:
                if self.stopping():
                    raise _Cancelled
                data = os.read(fd, CHUNK)
                if not data:
                    break
                hasher.update(data)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        return Result(relpath, SKIPPED, FILE, size, hasher.hexdigest(), "unchanged")

    # ----------------------------------------------------------------- transforms (pcopy.transforms)

    def check_stop(self) -> None:
        if self.stopping():
            raise _Cancelled

    def transform_file(self, relpath: str, name: str, fd: int, before: os.stat_result) -> Result:
        """Write ``name`` through the run's transform: temp file, stream, metadata, rename.

        The output gets the source's mode and times and, in the xattr
        ``transforms.SRC_SIZE_XATTR``, the source's size, so a later run can
        tell it is up to date. Its Result carries the *output's* relpath and
        the digest of the bytes written; a transform that raises fails this
        file only (its temp file removed).
        """
        transform = self.transform
        reldir = relpath[: -len(name) - 1] if relpath != name else ""
        try:
            predicted = transforms.checked_name(transform.output_name(name), name, reldir)
        except Exception as exc:
            return Result(relpath, FAILED, FILE, 0, None,
                          f"transform {transform.name}: output name: {errors.describe(exc)}")
        if not self.options.force:
            fresh = self.transformed_output_if_fresh(relpath_join(reldir, predicted), predicted, before)
            if fresh is not None:
                return fresh
        tmp = self.tmp_prefix + str(next(_counter))
        try:
            out = os.open(tmp, _TMP_FLAGS, 0o600, dir_fd=self.dst_fd)
        except OSError as exc:
            raise _dst_error(exc) from None
        try:
            hasher = self.factory() if self.factory is not None else None
            try:
                returned, _ = transforms.stream(transform, fd, out, relpath, hasher, self.check_stop)
                final = transforms.checked_name(returned, predicted, reldir)
            except transforms.TransformError as exc:
                os.close(out)
                _unlink_quietly(tmp, self.dst_fd)
                return Result(relpath, FAILED, FILE, 0, None, f"transform {transform.name}: {exc}")
            _check_unchanged(fd, before)
            try:
                _record_source_size(out, before.st_size)  # before the mode: a 0o444 mode would forbid it
            except OSError as exc:
                raise _dst_error(exc) from None
            self.seal(out, before, born_right=False)
        except BaseException:
            os.close(out)
            _unlink_quietly(tmp, self.dst_fd)
            raise
        self.publish(out, tmp, final)
        digest = hasher.hexdigest() if hasher is not None else None
        return Result(relpath_join(reldir, final), COPIED, FILE, before.st_size, digest)

    def transformed_output_if_fresh(self, out_relpath: str, out_name: str, before: os.stat_result):
        """A SKIPPED Result when ``out_name`` in DST is this source's output already, else None.

        Up to date: a regular file with the source's mtime (to the ns) whose
        xattr holds the source's size; where xattrs are unsupported, mtime alone.
        """
        try:
            out = os.open(out_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=self.dst_fd)
        except OSError:
            return None
        try:
            st = os.fstat(out)
            if not stat.S_ISREG(st.st_mode) or st.st_mtime_ns != before.st_mtime_ns:
                return None
            try:
                recorded = os.getxattr(out, transforms.SRC_SIZE_XATTR)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                    return None  # no record (or unreadable): transform again
            else:
                if recorded != str(before.st_size).encode():
                    return None
            digest = None
            if self.options.manifest and self.factory is not None:
                hasher = self.factory()
                while True:
                    self.check_stop()
                    data = os.read(out, CHUNK)
                    if not data:
                        break
                    hasher.update(data)
                digest = hasher.hexdigest()
        finally:
            os.close(out)
        return Result(out_relpath, SKIPPED, FILE, before.st_size, digest, "unchanged")


def _record_source_size(fd: int, size: int) -> None:
    """Store the source's size on a transform's output; silently skipped without xattr support."""
    try:
        os.setxattr(fd, transforms.SRC_SIZE_XATTR, str(size).encode())
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            raise


def _check_unchanged(fd: int, before: os.stat_result) -> None:
    """Raise _SourceChanged when the open source changed while it was read (ctime: even an mtime put back)."""
    after = os.fstat(fd)
    if (after.st_size != before.st_size or after.st_mtime_ns != before.st_mtime_ns
            or after.st_ctime_ns != before.st_ctime_ns):
        raise _SourceChanged


def _copy_data(fd: int, out: int, size: int, factory, stop, sparse: bool = False):
    """Copy fd → out; return the xxh128 hex digest, or None when hashing is off."""
    if sparse and size >= SPARSE_BLOCK:
        return _copy_sparse(fd, out, size, factory, stop)
    if factory is None:
        try:
            _kernel_copy(fd, out, size, stop)
            return None
        except _FastCopyUnavailable:
            pass
    hasher = factory() if factory is not None else None
    if size <= SMALL_FILE:
        data = os.read(fd, size) if size else b""
        if len(data) != size:
            raise _SourceChanged
        if hasher is not None:
            hasher.update(data)
        _write_all(out, data)
    else:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        total = 0
        while True:
            if stop is not None and stop.is_set():
                raise _Cancelled
            n = os.readv(fd, [buf])
            if not n:
                break
            total += n
            if hasher is not None:
                hasher.update(view[:n])
            _write_all(out, view[:n])
        if total != size:
            raise _SourceChanged
    return hasher.hexdigest() if hasher is not None else None


def _copy_sparse(fd: int, out: int, size: int, factory, stop):
    """--sparse: blocks of zeros become holes (lseek instead of write); the digest covers every byte."""
    hasher = factory() if factory is not None else None
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    while True:
        if stop is not None and stop.is_set():
            raise _Cancelled
        n = os.readv(fd, [buf])
        if not n:
            break
        total += n
        if hasher is not None:
            hasher.update(view[:n])
        for start in range(0, n, SPARSE_BLOCK):
            block = view[start:min(n, start + SPARSE_BLOCK)]
            if block == _ZEROS[:len(block)]:
                try:
                    os.lseek(out, len(block), os.SEEK_CUR)
                except OSError as exc:
                    raise _dst_error(exc) from None
            else:
                _write_all(out, block)
    if total != size:
        raise _SourceChanged
    try:
        os.ftruncate(out, total)  # a trailing hole still counts in the size
    except OSError as exc:
        raise _dst_error(exc) from None
    return hasher.hexdigest() if hasher is not None else None


def _write_all(out: int, data) -> None:
    try:
        written = os.write(out, data) if data else 0
        if written != len(data):  # short write (e.g. the disk filling up): the rest, or the error
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(out, view):]
    except OSError as exc:
        raise _dst_error(exc) from None


def _kernel_copy(fd: int, out: int, size: int, stop) -> None:
    """copy_file_range, then sendfile; _FastCopyUnavailable if neither applies."""
    for call in (getattr(os, "copy_file_range", None), getattr(os, "sendfile", None)):
        if call is None:
            continue
        done = 0
        try:
            while True:
                if stop is not None and stop.is_set():
                    raise _Cancelled
                if call is os.sendfile:
                    n = call(out, fd, done, CHUNK * 8)
                else:
                    n = call(fd, out, CHUNK * 8)
                if not n:
                    break
                done += n
            if done != size:
                raise _SourceChanged
            return
        except OSError as exc:
            if done == 0 and exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                                           errno.ENOTSUP, errno.EBADF, errno.EPERM):
                continue
            raise _dst_error(exc) from None
    raise _FastCopyUnavailable


def _digest_at(dir_fd: int, name: str, flags: int, stop) -> str:
    fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        hasher = xxhash.xxh3_128()
        while True:
            if stop is not None and stop.is_set():
                raise _Cancelled
            data = os.read(fd, CHUNK)
            if not data:
                return hasher.hexdigest()
            hasher.update(data)
    finally:
        os.close(fd)


def link_beneath_fds(from_fd: int, from_name: str, to_fd: int, to_name: str, tmp: str) -> None:
    """Hard-link from_fd/from_name as to_fd/to_name, atomically replacing what is there."""
    os.link(from_name, tmp, src_dir_fd=from_fd, dst_dir_fd=to_fd, follow_symlinks=False)
    try:
        os.rename(tmp, to_name, src_dir_fd=to_fd, dst_dir_fd=to_fd)
    except OSError as exc:
        _unlink_quietly(tmp, to_fd)
        raise _dst_error(exc) from None


def make_hardlink(options: Options, task, reldir: str) -> Result:
    """-H: give DST reldir/name the inode of DST task.source (the first name), unless it already has it."""
    relpath = relpath_join(reldir, task.name)
    parent, _, first = task.source.rpartition(os.sep)
    try:
        from_fd = open_dir_beneath(options.dst, parent)
        try:
            to_fd = open_dir_beneath(options.dst, reldir)
            try:
                want = os.stat(first, dir_fd=from_fd, follow_symlinks=False)
                try:
                    have = os.stat(task.name, dir_fd=to_fd, follow_symlinks=False)
                    if (have.st_dev, have.st_ino) == (want.st_dev, want.st_ino):
                        return Result(relpath, SKIPPED, FILE, 0, None, "hard link already in place")
                except FileNotFoundError:
                    pass
                link_beneath_fds(from_fd, first, to_fd, task.name, temp_name(options.token))
                digest = None
                if options.manifest and options.hash != "none":
                    digest = _digest_at(to_fd, task.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, None)
            finally:
                os.close(to_fd)
        finally:
            os.close(from_fd)
    except OSError as exc:
        return Result(relpath, FAILED, FILE, 0, None, f"hard link to {task.source}: {errors.describe(exc)}")
    return Result(relpath, LINKED, FILE, 0, digest, f"{task.why} => {task.source}")


def temp_name(token: str) -> str:
    return f"{TMP_PREFIX}{token}-{os.getpid()}-{next(_counter)}"


def remove_beneath(root: str, relpath: str, is_dir: bool) -> None:
    """Delete one entry of DST (a directory must be empty), never through a symlink."""
    parent, _, name = relpath.rpartition(os.sep)
    fd = open_dir_beneath(root, parent)
    try:
        if is_dir:
            os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def remove_tree_beneath(root: str, relpath: str) -> None:
    """Delete a DST entry of any kind, a directory with all it holds (symlinks are not followed)."""
    parent, _, name = relpath.rpartition(os.sep)
    fd = open_dir_beneath(root, parent)
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            import shutil  # rarely needed: keep it out of start-up

            shutil.rmtree(name, dir_fd=fd)  # fd-based: immune to symlink races on Linux
        else:
            os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def remove_temp_files(root: str, reldirs, token: str) -> int:
    """Remove this run's temporary files from the given DST directories."""
    removed = 0
    prefix = f"{TMP_PREFIX}{token}-"
    for reldir in reldirs:
        try:
            fd = open_dir_beneath(root, reldir)
        except OSError:
            continue
        try:
            for name in os.listdir(fd):
                if name.startswith(prefix):
                    _unlink_quietly(name, fd)
                    removed += 1
        finally:
            os.close(fd)
    return removed
