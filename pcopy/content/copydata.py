"""Copy the bytes of one open file into another, hashing what is read.

The bytes are read from offset 0 (``pread``), so a file can be read again for
the young-file check (``digest.confirm``) without seeking. Small files are
one read and one hash call; bigger ones go in ``CHUNK`` pieces; with no hash
the kernel copies (``copy_file_range``, then ``sendfile``) and falls back to
read/write with a private exception when neither can serve the pair, as
``shutil`` does. OSErrors of the destination side carry
``pcopy_side = "destination"`` so messages can say which side failed.
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


def copy_data(fd: int, out: int, size: int, hasher: Optional[Algo], stop=None, sparse: bool = False) -> Optional[str]:
    """Copy ``size`` bytes fd → out; the digest of what was read (None without a hasher).

    SourceChanged when the file turns out not to be ``size`` long.
    """
    if sparse and size >= SPARSE_BLOCK:
        digest = read_through(fd, size, hasher, stop, _SparseWriter(out))
        try:
            os.ftruncate(out, size)  # a trailing hole still counts in the size
        except OSError as exc:
            raise dst_error(exc) from None
        return digest
    if hasher is None:
        try:
            _kernel_copy(fd, out, size, stop)
            return None
        except _FastCopyUnavailable:
            pass
    return read_through(fd, size, hasher, stop, functools.partial(write_all, out))


class _SparseWriter:
    """--sparse: blocks of zeros become holes (lseek instead of write)."""

    def __init__(self, out: int) -> None:
        self.out = out

    def __call__(self, piece) -> None:
        view = memoryview(piece)
        for start in range(0, len(view), SPARSE_BLOCK):
            block = view[start:start + SPARSE_BLOCK]
            if block == _ZEROS[:len(block)]:
                try:
                    os.lseek(self.out, len(block), os.SEEK_CUR)
                except OSError as exc:
                    raise dst_error(exc) from None
            else:
                write_all(self.out, block)


def _kernel_copy(fd: int, out: int, size: int, stop) -> None:
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
            if done != size:
                raise SourceChanged
            return
        except OSError as exc:
            if done == 0 and exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                                           errno.ENOTSUP, errno.EBADF, errno.EPERM):
                continue
            raise dst_error(exc) from None
    raise _FastCopyUnavailable
