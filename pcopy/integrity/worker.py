"""The hash worker: digest the files of one directory, one outcome per file, never an exception.

It reads through ``content.digest`` like every other command (dir fd,
``O_NOFOLLOW`` opens, one read for small files, the change check). Files
changed in the last seconds are read a second time after one pause for the
whole batch, and their digest counts only when both reads agree.
"""

from __future__ import annotations

import errno
import os
from typing import NamedTuple

from ..content import digest as digests
from ..errors import describe
from ..fs.beneath import open_dir_beneath
from ..model.entries import kind_name
from ..runtime import worker

# Outcome kinds (the parent maps them to differences)
GONE = "gone"  # the file is not there (ENOENT/ENOTDIR on the file itself)
NOT_FILE = "notfile"  # a symlink, directory or special file where a file was expected
DIR_ERROR = "direrror"  # the directory could not be opened: every file of the batch has this
FAILED = "error"


class HashJob(NamedTuple):
    roots: tuple  # side index → root directory


def hash_batch(job: HashJob, batch) -> list:
    """Hash ``batch = (reldir, algo, ((side, name), ...))``; one tuple per task.

    Each tuple is ``(digest, size, key, error)``: ``key`` is the
    (dev, ino, size, mtime_ns, ctime_ns) the digest belongs to; ``error`` is
    None or ``(kind, message)``.
    """
    reldir, algo, tasks = batch
    hasher = digests.algo(algo)
    stop = worker.stop_flag()
    fds: dict = {}
    out: list = []
    young: list = []  # (slot, dir fd, name, Digest) read once, to read again after one pause
    try:
        for side, name in tasks:
            dfd = fds.get(side)
            if dfd is None:
                try:
                    dfd = fds[side] = open_dir_beneath(job.roots[side], reldir)
                except OSError as exc:
                    dfd = fds[side] = exc
            if isinstance(dfd, OSError):
                out.append((None, 0, None, (DIR_ERROR, f"cannot open its directory: {describe(dfd)}")))
                continue
            outcome, first = _hash_one(dfd, name, hasher, stop, confirm_young=False)
            if first is not None and not first.confirmed:
                young.append((len(out), dfd, name, first))
            out.append(outcome)
        if young:
            digests.settle(sum(first.seconds for _, _, _, first in young))
            for slot, dfd, name, first in young:
                if not _still(dfd, name, first, hasher, stop):
                    out[slot] = _hash_one(dfd, name, hasher, stop, confirm_young=True)[0]
    finally:
        for fd in fds.values():
            if isinstance(fd, int):
                os.close(fd)
    return out


def _still(dfd: int, name: str, first, hasher, stop) -> bool:
    """A young file's second read (after the batch's pause): the same inode, stat and digest."""
    try:
        fd = os.open(name, digests.READ_FLAGS, dir_fd=dfd)
    except OSError:
        return False
    try:
        return digests.same_version(fd, first.stat, first.digest, hasher, stop)
    except OSError:
        return False
    finally:
        os.close(fd)


def _hash_one(dfd: int, name: str, hasher, stop, confirm_young: bool) -> tuple:
    """``(outcome tuple, Digest or None)`` for one file."""
    try:
        fd = os.open(name, digests.READ_FLAGS, dir_fd=dfd)
        try:
            result = digests.digest_open_file(fd, hasher, stop, confirm_young=confirm_young)
        finally:
            os.close(fd)
    except digests.NotRegular as exc:
        return (None, 0, None, (NOT_FILE, f"is a {kind_name(exc.mode)}, not a regular file")), None
    except digests.SourceChanged:
        return (None, 0, None, (FAILED, f"changed while being read (tried {digests.RETRIES + 1} times)")), None
    except digests.Cancelled:
        return (None, 0, None, (FAILED, "interrupted")), None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return (None, 0, None, (GONE, describe(exc))), None
        if exc.errno == errno.ELOOP:
            return (None, 0, None, (NOT_FILE, "is a symbolic link, not a regular file")), None
        return (None, 0, None, (FAILED, describe(exc))), None
    st = result.stat
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return (result.digest, st.st_size, key, None), result
