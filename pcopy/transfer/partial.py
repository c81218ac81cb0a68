"""``--partial``: a big file's copy survives an interruption and the next run resumes it.

The copy is written to a name derived from the file's (``fs.temps.partial_name``,
no pid, so no run treats it as a dead writer's leftover). The next run finds
it and first proves that what it holds is the source's prefix: the kept bytes
and the source's first bytes are hashed (xxh128) and must agree; the source
prefix is read once, feeding the whole-file digest at the same time. Then only
the rest is read and written. An interrupted copy (Ctrl-C, a full disk, a
kill) keeps its partial file. A run without ``--partial`` removes partial files
it finds (``transfer.run``), as they would never be used.
"""

from __future__ import annotations

import os
import stat
import time

from ..content import digest as digests
from ..content.copydata import dst_error, write_all
from ..content.digest import CHUNK, XXH128, Cancelled, SourceChanged
from ..fs.temps import TMP_FLAGS, partial_name
from ..model.entries import FILE
from ..model.results import COPIED, Result

_RESUME_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _open_kept(copier, tmp: str, size: int) -> tuple:
    """(fd, bytes kept) of the partial copy, created empty when there is none to resume."""
    try:
        out = os.open(tmp, _RESUME_FLAGS, dir_fd=copier.dst_fd)
    except FileNotFoundError:
        out = -1
    except OSError as exc:
        raise dst_error(exc) from None
    if out >= 0:
        st = os.fstat(out)
        if stat.S_ISREG(st.st_mode) and st.st_size <= size:
            return out, st.st_size
        os.close(out)
        os.unlink(tmp, dir_fd=copier.dst_fd)
    try:
        return os.open(tmp, (TMP_FLAGS & ~os.O_WRONLY) | os.O_RDWR, 0o600, dir_fd=copier.dst_fd), 0
    except OSError as exc:
        raise dst_error(exc) from None


def _verified_prefix(fd: int, out: int, kept: int, whole, stop) -> bool:
    """Read the source's first ``kept`` bytes once (feeding ``whole``) and the kept copy's; True if equal."""
    src_h, dst_h = XXH128.new(), XXH128.new()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    offset = 0
    while offset < kept:
        if stop is not None and stop.is_set():
            raise Cancelled
        n = os.preadv(fd, [view[:min(CHUNK, kept - offset)]], offset)
        if not n:
            raise SourceChanged
        src_h.update(view[:n])
        if whole is not None:
            whole.update(view[:n])
        m = os.preadv(out, [view[:n]], offset)
        dst_h.update(view[:m])
        offset += n
        if m != n:
            return False
    return src_h.digest() == dst_h.digest()


def copy_resuming(copier, relpath: str, name: str, fd: int, before: os.stat_result, why: str) -> Result:
    """Copy the open source ``fd`` to DST ``name`` through its partial file, resuming what it holds."""
    size = before.st_size
    tmp = partial_name(name)
    hasher = copier.hasher or (XXH128 if digests.is_young(before) else None)
    out, kept = _open_kept(copier, tmp, size)
    started = time.monotonic()
    try:
        whole = hasher.new() if hasher is not None else None
        if kept and not _verified_prefix(fd, out, kept, whole, copier.stop):
            kept = 0  # not this source's prefix: start over
            whole = hasher.new() if hasher is not None else None
        try:
            os.ftruncate(out, kept)
            os.lseek(out, kept, os.SEEK_SET)
        except OSError as exc:
            raise dst_error(exc) from None
        offset = kept
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            if copier.stopping():
                raise Cancelled
            n = os.preadv(fd, [buf], offset)
            if not n:
                break
            if whole is not None:
                whole.update(view[:n])
            write_all(out, view[:n])
            if copier.throttle is not None:
                copier.throttle(n)
            offset += n
        if offset != size:
            raise SourceChanged
        attrs = copier.meta.read(fd)  # before the unchanged check: a change to them moves ctime
        digest = whole.hexdigest() if whole is not None else None
        if digest is not None and hasher is not None:
            digests.confirm(fd, before, digest, hasher, copier.stop, time.monotonic() - started)
        else:
            digests.check_unchanged(fd, before)
        copier.seal(out, before, born_right=False, attrs=attrs)
    except BaseException:
        os.close(out)  # the partial copy stays for the next run
        raise
    copier.publish(out, tmp, name)
    return Result(relpath, COPIED, FILE, size, digest if copier.hasher is not None else None, why)
