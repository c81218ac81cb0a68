"""``--partial``: a big file's copy survives an interruption and the next run resumes it.

The copy is written to a name derived from the file's (``fs.temps.partial_name``,
no pid, so no run treats it as a dead writer's leftover). The next run finds
it and keeps what it holds only where it proves to be the source's: each
chunk of the kept copy is compared with the source's (read once, feeding the
whole-file digest at the same time) and only differing or missing chunks are
written (``content.copydata.copy_range``). A big file copied in ranges by
several workers (``transfer.ranges``) resumes the same way, range by range.
An interrupted copy (Ctrl-C, a full disk, a kill) keeps its partial file. A
run without ``--partial`` removes partial files it finds (``transfer.run``),
as they would never be used.
"""

from __future__ import annotations

import os
import stat
import time

from ..content import digest as digests
from ..content.copydata import copy_range, dst_error
from ..content.digest import XXH128
from ..fs.temps import TMP_FLAGS, partial_name
from ..model.entries import FILE
from ..model.results import COPIED, Result

_RESUME_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def open_kept(dst_fd: int, tmp: str, size: int) -> tuple:
    """(fd, bytes kept) of the partial copy ``tmp`` in ``dst_fd``, created empty (O_EXCL) when there is
    none to resume (or what is there is no regular file, or longer than the source)."""
    try:
        out = os.open(tmp, _RESUME_FLAGS, dir_fd=dst_fd)
    except FileNotFoundError:
        out = -1
    except OSError as exc:
        raise dst_error(exc) from None
    if out >= 0:
        st = os.fstat(out)
        if stat.S_ISREG(st.st_mode) and st.st_size <= size:
            return out, st.st_size
        os.close(out)
        os.unlink(tmp, dir_fd=dst_fd)
    try:
        return os.open(tmp, (TMP_FLAGS & ~os.O_WRONLY) | os.O_RDWR, 0o600, dir_fd=dst_fd), 0
    except OSError as exc:
        raise dst_error(exc) from None


def copy_resuming(copier, relpath: str, name: str, fd: int, before: os.stat_result, why: str) -> Result:
    """Copy the open source ``fd`` to DST ``name`` through its partial file, resuming what it holds."""
    size = before.st_size
    tmp = partial_name(name)
    hasher = copier.hasher or (XXH128 if digests.is_young(before) else None)
    out, kept = open_kept(copier.dst_fd, tmp, size)
    started = time.monotonic()
    try:
        whole = hasher.new() if hasher is not None else None
        copy_range(fd, out, 0, size, copier.stop, kept, whole, copier.throttle)
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
