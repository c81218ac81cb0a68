"""Copy the bytes of one open file into another, hashing what is read.

The bytes are read from offset 0 (``pread``), so a file can be read again for
the young-file check (``digest.confirm``) without seeking. Small files are
one read and one hash call; bigger ones go in ``CHUNK`` pieces; with no hash
the kernel copies (``copy_file_range``, then ``sendfile``) and falls back to
read/write with a private exception when neither can serve the pair, as
``shutil`` does. ``copy_range`` copies one part of a file to the same
offsets of another (the ranges of a big file that several workers copy, and
the --partial resume, which rewrites only what does not match the source).
OSErrors of the destination side carry ``pcopy_side = "destination"`` so
messages can say which side failed.
"""

from __future__ import annotations

import errno
import functools
import os
from typing import Optional

from .digest import CHUNK, Algo, Cancelled, SourceChanged, read_through

SPARSE_BLOCK = 64 << 10  # --sparse: zero blocks of this size become holes
_ZEROS = memoryview(bytes(SPARSE_BLOCK))


class _FastCopyUnavailable(Exception):
    """copy_file_range/sendfile cannot serve this pair of files."""


def dst_error(exc: OSError) -> OSError:
    exc.pcopy_side = "destination"  # type: ignore[attr-defined]
    return exc


def write_all(out: int, data) -> None:
    try:
        written = os.write(out, data) if data else 0
        if written != len(data):  # short write (e.g. the disk filling up): the rest, or the error
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(out, view):]
    except OSError as exc:
        raise dst_error(exc) from None


def looks_sparse(size: int, blocks: int) -> bool:
    """Fewer blocks than bytes (``st_blocks``): the file has holes worth keeping."""
    return 0 <= blocks and blocks * 512 < size and size >= SPARSE_BLOCK


def copy_data(fd: int, out: int, size: int, hasher: Optional[Algo], stop=None, sparse: bool = False,
              blocks: int = -1, throttle=None) -> Optional[str]:
    """Copy ``size`` bytes fd → out; the digest of what was read (None without a hasher).

    ``blocks`` (st_blocks of the source): a file with holes keeps them
    (SEEK_DATA/SEEK_HOLE, as ``cp --sparse=auto``); ``sparse`` also turns
    runs of zeros into holes. ``throttle(n)`` is called for every n bytes
    written (--bwlimit). SourceChanged when the file is not ``size`` long.
    """
    has_holes = looks_sparse(size, blocks)
    if (sparse and size >= SPARSE_BLOCK) or has_holes:
        sink = SparseWriter(out, throttle)
        digest = copy_holes(fd, size, hasher, stop, sink) if has_holes else read_through(fd, size, hasher, stop, sink)
        try:
            os.ftruncate(out, size)  # a trailing hole still counts in the size
        except OSError as exc:
            raise dst_error(exc) from None
        return digest
    if hasher is None:
        try:
            _kernel_copy(fd, out, size, stop, throttle)
            return None
        except _FastCopyUnavailable:
            pass
    write = functools.partial(write_all, out)
    if throttle is not None:
        def write(piece, _write=write):  # type: ignore[misc]
            _write(piece)
            throttle(len(piece))
    return read_through(fd, size, hasher, stop, write)


def copy_holes(fd: int, size: int, hasher: Optional[Algo], stop, sink) -> Optional[str]:
    """A file with holes: only its data segments are read and handed to ``sink.write``, each hole to
    ``sink.skip`` (a ``SparseWriter``, or the remote sender's frames); the digest covers every byte."""
    h = hasher.new() if hasher is not None else None
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    offset = 0
    while offset < size:
        try:
            data_at = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: only a hole is left
                raise
            data_at = size
        data_at = min(data_at, size)
        if data_at > offset:  # a hole
            sink.skip(data_at - offset)
            if h is not None:
                hash_zeros(h, data_at - offset)
            offset = data_at
            continue
        hole_at = min(os.lseek(fd, offset, os.SEEK_HOLE), size)
        while offset < hole_at:
            if stop is not None and stop.is_set():
                raise Cancelled
            n = os.preadv(fd, [view[:min(CHUNK, hole_at - offset)]], offset)
            if not n:
                raise SourceChanged  # shorter than its size
            if h is not None:
                h.update(view[:n])
            sink.write(view[:n])
            offset += n
    if os.pread(fd, 1, size):
        raise SourceChanged  # longer than its size
    return h.hexdigest() if h is not None else None


_ZERO_CHUNK = memoryview(bytes(CHUNK))


def hash_zeros(h, count: int) -> None:
    while count:
        n = min(count, CHUNK)
        h.update(_ZERO_CHUNK[:n])
        count -= n


class SparseWriter:
    """Writes with holes: ``skip`` leaves one (lseek), and as a sink (``--sparse``) blocks of zeros become holes."""

    def __init__(self, out: int, throttle=None) -> None:
        self.out = out
        self.throttle = throttle

    def skip(self, count: int) -> None:
        try:
            os.lseek(self.out, count, os.SEEK_CUR)
        except OSError as exc:
            raise dst_error(exc) from None

    def write(self, piece) -> None:
        write_all(self.out, piece)
        if self.throttle is not None:
            self.throttle(len(piece))

    def __call__(self, piece) -> None:
        view = memoryview(piece)
        for start in range(0, len(view), SPARSE_BLOCK):
            block = view[start:start + SPARSE_BLOCK]
            if block == _ZEROS[:len(block)]:
                self.skip(len(block))
            else:
                self.write(block)


def _kernel_copy(fd: int, out: int, size: int, stop, throttle=None) -> None:
    """copy_file_range, then sendfile; _FastCopyUnavailable if neither applies."""
    for name in ("copy_file_range", "sendfile"):
        call = getattr(os, name, None)
        if call is None:
            continue
        done = 0
        try:
            while True:
                if stop is not None and stop.is_set():
                    raise Cancelled
                if name == "sendfile":
                    n = call(out, fd, done, CHUNK * 8)
                else:
                    n = call(fd, out, CHUNK * 8, done)
                if not n:
                    break
                done += n
                if throttle is not None:
                    throttle(n)
            if done != size:
                raise SourceChanged
            return
        except OSError as exc:
            if done == 0 and exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                                           errno.ENOTSUP, errno.EBADF, errno.EPERM):
                continue
            raise dst_error(exc) from None
    raise _FastCopyUnavailable


_RANGE_UNSUPPORTED = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF,
                      errno.EPERM)


def copy_range(fd: int, out: int, start: int, end: int, stop=None, kept: int = 0, whole=None,
               throttle=None) -> int:
    """Copy bytes [start, end) of ``fd`` to the same offsets of ``out``; returns the bytes written.

    Below ``kept`` (what a kept --partial copy holds) each CHUNK is read on both sides and written only
    when it differs, so a resumed copy writes only what is missing or wrong. ``whole``: a hasher fed
    every source byte in order (the linear --partial copy); without one the kernel copies the rest
    (``copy_file_range``, else pread/pwrite). SourceChanged when the source ends before ``end``.
    """
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    theirs = bytearray(CHUNK)
    offset, written, position = start, 0, -1
    while offset < end:
        if stop is not None and stop.is_set():
            raise Cancelled
        want = min(CHUNK, end - offset)
        if offset >= kept and whole is None:
            written += _kernel_range(fd, out, offset, end, stop, throttle)
            return written
        n = os.preadv(fd, [view[:want]], offset)
        if n != want:
            raise SourceChanged  # shorter than its size
        if whole is not None:
            whole.update(view[:n])
        if offset < kept and os.preadv(out, [memoryview(theirs)[:n]], offset) == n and theirs[:n] == view[:n]:
            offset += n
            continue  # the kept copy already holds these bytes
        if position != offset:
            try:
                position = os.lseek(out, offset, os.SEEK_SET)
            except OSError as exc:
                raise dst_error(exc) from None
        write_all(out, view[:n])
        if throttle is not None:
            throttle(n)
        written += n
        offset += n
        position = offset
    return written


def _kernel_range(fd: int, out: int, offset: int, end: int, stop, throttle) -> int:
    """copy_file_range of [offset, end) to the same offsets, falling back to pread/pwrite."""
    call = getattr(os, "copy_file_range", None)
    start = offset
    if call is not None:
        try:
            while offset < end:
                if stop is not None and stop.is_set():
                    raise Cancelled
                n = call(fd, out, min(CHUNK * 8, end - offset), offset, offset)
                if not n:
                    raise SourceChanged  # shorter than its size
                offset += n
                if throttle is not None:
                    throttle(n)
            return end - start
        except OSError as exc:
            if offset > start or exc.errno not in _RANGE_UNSUPPORTED:
                raise dst_error(exc) from None
    return copy_range(fd, out, start, end, stop, 0, _NO_HASH, throttle)


class _NoHash:
    """A ``whole`` that hashes nothing: makes copy_range read and write instead of asking the kernel."""

    @staticmethod
    def update(data) -> None:
        pass


_NO_HASH = _NoHash()
