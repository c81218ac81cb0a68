"""The hash and verify workers: digest the files of one directory, one outcome per file, never an exception.

They read through ``content.digest`` like every other command (dir fd,
``O_NOFOLLOW`` opens, one read for small files, the change check). Files
changed in the last seconds are read a second time after one pause for the
whole batch, and their digest counts only when both reads agree.
``compare_batch`` (verify) also compares each SRC/DST pair itself, so what
travels back to the parent is the differences, not a digest per file.
"""

from __future__ import annotations

import errno
import os
from typing import NamedTuple

from ..content import digest as digests
from ..errors import describe
from ..fs.beneath import open_dir_beneath
from ..model.batching import ALONE_BYTES
from ..model.entries import kind_name
from ..runtime import worker
from .report import DIFFER, ERROR

# Outcome kinds (the parent maps them to differences)
GONE = "gone"  # the file is not there (ENOENT/ENOTDIR on the file itself)
NOT_FILE = "notfile"  # a symlink, directory or special file where a file was expected
DIR_ERROR = "direrror"  # the directory could not be opened: every file of the batch has this
DEFER = "defer"  # too big to read inside a shared batch: run it alone (sizes were not known when batching)
FAILED = "error"


class HashJob(NamedTuple):
    roots: tuple  # side index → root directory


class CompareJob(NamedTuple):
    roots: tuple  # (SRC, DST)
    algo: str
    keys: bool  # hand back (key, digest) of what was read, for the hash cache


def hash_batch(job: HashJob, batch) -> list:
    """Hash ``batch = (reldir, algo, ((side, name), ...))``; one tuple per task.

    Each tuple is ``(digest, size, key, error)``: ``key`` is the
    (dev, ino, size, mtime_ns, ctime_ns) the digest belongs to; ``error`` is
    None or ``(kind, message)``.
    """
    reldir, algo, tasks = batch
    return _digest_tasks(job.roots, reldir, tasks, digests.algo(algo), -1)


def compare_batch(job: CompareJob, batch) -> tuple:
    """Compare ``batch = (reldir, names, known)`` SRC against DST by content.

    ``known`` is None or, per name, ``(SRC digest, DST digest, size)`` with
    None for a digest to read (the cache knew the other). Returns ``(diffs,
    deferred, rows, hashed, nbytes, digested)``: ``(j, kind, detail)`` for each
    name j that is not the same, in order; the j of big files met in a shared
    batch, to run alone; ``(key, digest)`` of each file read when ``job.keys``;
    files read, bytes read, digests established.
    """
    reldir, names, known = batch
    tasks = []
    for j, name in enumerate(names):
        if known is None or known[j][0] is None:
            tasks.append((0, name))
        if known is None or known[j][1] is None:
            tasks.append((1, name))
    outcomes = iter(_digest_tasks(job.roots, reldir, tasks, digests.algo(job.algo),
                                  ALONE_BYTES if len(names) > 1 else -1))
    diffs, deferred, rows = [], [], []
    hashed = nbytes = digested = 0
    for j in range(len(names)):
        kj = known[j] if known is not None else None
        a = next(outcomes) if kj is None or kj[0] is None else (kj[0], kj[2], None, None)
        b = next(outcomes) if kj is None or kj[1] is None else (kj[1], kj[2], None, None)
        (a_digest, a_size, _, a_error), (b_digest, b_size, _, b_error) = a, b
        if (a_error is not None and a_error[0] == DEFER) or (b_error is not None and b_error[0] == DEFER):
            deferred.append(j)
            continue
        for outcome in (a, b):
            if outcome[3] is None:
                digested += 1
                if outcome[2] is not None:  # read here, not known
                    hashed += 1
                    nbytes += outcome[1]
                    if job.keys:
                        rows.append((outcome[2], outcome[0]))
        error, side = (a_error, "SRC") if a_error is not None else (b_error, "DST")
        if error is not None:
            kind, message = error
            detail = "vanished during the check" if kind == GONE else message
            diffs.append((j, ERROR, f"in {side}: {detail}" if kind != DIR_ERROR else message))
        elif a_digest != b_digest:
            diffs.append((j, DIFFER, f"sizes differ ({a_size} in SRC, {b_size} in DST)" if a_size != b_size
                          else "contents differ"))
    return tuple(diffs), tuple(deferred), tuple(rows), hashed, nbytes, digested


def _digest_tasks(roots: tuple, reldir: str, tasks, hasher, max_size: int) -> list:
    """``(digest, size, key, error)`` per ``(side, name)`` task (see ``hash_batch``)."""
    stop = worker.stop_flag()
    fds: dict = {}
    out: list = []
    young: list = []  # (slot, dir fd, name, Digest) read once, to read again after one pause
    try:
        for side, name in tasks:
            dfd = fds.get(side)
            if dfd is None:
                try:
                    dfd = fds[side] = open_dir_beneath(roots[side], reldir)
                except OSError as exc:
                    dfd = fds[side] = exc
            if isinstance(dfd, OSError):
                out.append((None, 0, None, (DIR_ERROR, f"cannot open its directory: {describe(dfd)}")))
                continue
            outcome, first = _hash_one(dfd, name, hasher, stop, False, max_size)
            if first is not None and not first.confirmed:
                young.append((len(out), dfd, name, first))
            out.append(outcome)
        if young:
            digests.settle(sum(first.seconds for _, _, _, first in young))
            for slot, dfd, name, first in young:
                if not _still(dfd, name, first, hasher, stop):
                    out[slot] = _hash_one(dfd, name, hasher, stop, True, max_size)[0]
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


def _hash_one(dfd: int, name: str, hasher, stop, confirm_young: bool, max_size: int = -1) -> tuple:
    """``(outcome tuple, Digest or None)`` for one file."""
    try:
        fd = os.open(name, digests.READ_FLAGS, dir_fd=dfd)
        try:
            result = digests.digest_open_file(fd, hasher, stop, max_size, confirm_young)
        finally:
            os.close(fd)
    except digests.TooBig as exc:
        return (None, exc.size, None, (DEFER, "too big for a shared batch")), None
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
