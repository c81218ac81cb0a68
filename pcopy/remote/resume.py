"""``--partial`` over the wire: a big file interrupted mid-transfer resumes where it stopped.

The receiver writes a big file into its kept copy (``fs.temps.partial_name``, no writer pid, so no
run takes it for a dead writer's leftover; ``transfer.partial.open_kept``, as locally) and keeps it
when the session ends mid-file. Before the next run sends the file, the mover asks the DST end how
many bytes each kept copy holds (``kept_sizes``); the sender reads the whole file once (the one read
loop) and sends only the bytes past that offset (``send``); the receiver hashes the kept prefix it holds, then
the rest as it arrives, so the whole-file digest it checks against the sender's proves the kept
prefix too. A prefix that was not the source's shows as a mismatch: the kept copy is dropped and the
file is sent again from the start (``mover.RESEND``).
"""

from __future__ import annotations

import os
import stat

from ..content import digest as digests
from ..content.copydata import dst_error
from ..fs.beneath import DirFd
from ..fs.temps import partial_name
from ..transfer.partial import open_kept

MIN_SIZE = digests.SMALL_FILE  # smaller files travel whole in one frame: nothing to resume


class Shrunk(OSError):
    """The kept copy holds fewer bytes than the sender was told: the file is sent again from 0."""


def kept_sizes(root: str, reldir: str, names: list) -> list:
    """On the DST end: the bytes each name's kept copy holds (0: none, or not a regular file)."""
    try:
        handle = DirFd(root, reldir)
    except OSError:
        return [0] * len(names)
    out = []
    with handle as fd:
        for name in names:
            try:
                st = os.stat(partial_name(name), dir_fd=fd, follow_symlinks=False)
                out.append(st.st_size if stat.S_ISREG(st.st_mode) else 0)
            except OSError:
                out.append(0)
    return out


def open_resumed(dst_fd: int, name: str, size: int, offset: int) -> tuple:
    """(kept copy's name, fd positioned at ``offset``, error, hasher fed with the kept prefix) for a big
    file arriving from ``offset`` (0: from the start; what the copy held is dropped)."""
    tmp = partial_name(name)
    hasher = digests.XXH128.new()
    try:
        out, kept = open_kept(dst_fd, tmp, size)
    except OSError as exc:
        return tmp, -1, exc, hasher
    try:
        if kept < offset:
            raise Shrunk(0, f"the kept partial copy holds {kept} bytes, not {offset}: sent again")
        os.ftruncate(out, offset)
        if offset:
            digests.read_through(out, offset, None, None, hasher.update)
        os.lseek(out, offset, os.SEEK_SET)
    except digests.SourceChanged:
        os.close(out)
        return tmp, -1, Shrunk(0, "the kept partial copy changed while it was read: sent again"), hasher
    except Shrunk as exc:
        os.close(out)
        return tmp, -1, exc, hasher
    except OSError as exc:
        os.close(out)
        return tmp, -1, dst_error(exc), hasher
    return tmp, out, None, hasher
