"""The hash worker: digest the files of one directory, one outcome per file, never an exception.

It reads through ``content.digest`` like every other command (dir fd,
``O_NOFOLLOW`` opens, one read for small files, the change check and the
young-file second read).
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
    out = []
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
            out.append(_hash_one(dfd, name, hasher, stop))
    finally:
        for fd in fds.values():
            if isinstance(fd, int):
                os.close(fd)
    return out


def _hash_one(dfd: int, name: str, hasher, stop) -> tuple:
    try:
        result = digests.digest_at(dfd, name, hasher, stop)
    except digests.NotRegular as exc:
        return (None, 0, None, (NOT_FILE, f"is a {kind_name(exc.mode)}, not a regular file"))
    except digests.SourceChanged:
        return (None, 0, None, (FAILED, f"changed while being read (tried {digests.RETRIES + 1} times)"))
    except digests.Cancelled:
        return (None, 0, None, (FAILED, "interrupted"))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return (None, 0, None, (GONE, describe(exc)))
        if exc.errno == errno.ELOOP:
            return (None, 0, None, (NOT_FILE, "is a symbolic link, not a regular file"))
        return (None, 0, None, (FAILED, describe(exc)))
    st = result.stat
    return (result.digest, st.st_size, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns), None)
