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
    batch, to run alone; ``(side, j, key, digest)`` of each file read when ``job.keys``;
    files read, bytes read, digests established.
    """
    reldir, names, known = batch
    hasher = digests.algo(job.algo)
    max_size = ALONE_BYTES if len(names) > 1 else -1
    src_root, dst_root = job.roots
    if known is None:
        a_side = _digest_side(src_root, reldir, names, hasher, max_size)
        b_side = _digest_side(dst_root, reldir, names, hasher, max_size)
    else:  # the cache knew one side of some pairs: read only the other
        a_side = [(k[0], k[2], None, None) for k in known]
        b_side = [(k[1], k[2], None, None) for k in known]
        for index, items, root in ((0, a_side, src_root), (1, b_side, dst_root)):
            where = [j for j, k in enumerate(known) if k[index] is None]
            if where:
                read = _digest_side(root, reldir, [names[j] for j in where], hasher, max_size)
                for j, outcome in zip(where, read, strict=True):
                    items[j] = outcome
    return compare_outcomes(a_side, b_side, job.keys)


def compare_outcomes(a_side: list, b_side: list, keys: bool) -> tuple:
    """SRC outcomes against DST outcomes, pair by pair (``(digest, size, key, error)`` each, as
    ``_digest_side`` makes them; key None: known, not read; a falsy key other than None: read, but
    elsewhere, so nothing to cache here). Returns what ``compare_batch`` returns."""
    diffs: list = []
    deferred: list = []
    rows: list = []
    hashed = nbytes = digested = 0
    for j, (a, b) in enumerate(zip(a_side, b_side, strict=True)):
        a_digest, a_size, a_key, a_error = a
        b_digest, b_size, b_key, b_error = b
        if a_error is None and b_error is None:
            digested += 2
            if a_key is not None:
                hashed += 1
                nbytes += a_size
            if b_key is not None:
                hashed += 1
                nbytes += b_size
            if keys:
                rows.extend((side, j, key, digest) for side, key, digest in ((0, a_key, a_digest),
                                                                             (1, b_key, b_digest)) if key)
            if a_digest != b_digest:
                diffs.append((j, DIFFER, f"sizes differ ({a_size} in SRC, {b_size} in DST)" if a_size != b_size
                              else "contents differ"))
            continue
        if (a_error is not None and a_error[0] == DEFER) or (b_error is not None and b_error[0] == DEFER):
            deferred.append(j)
            continue
        for index, (digest, size, key, error) in enumerate((a, b)):
            if error is None:
                digested += 1
                if key is not None:  # read here, not known
                    hashed += 1
                    nbytes += size
                    if keys and key:
                        rows.append((index, j, key, digest))
        error, side = (a_error, "SRC") if a_error is not None else (b_error, "DST")
        kind, message = error
        detail = "vanished during the check" if kind == GONE else message
        diffs.append((j, ERROR, f"in {side}: {detail}" if kind != DIR_ERROR else message))
    return tuple(diffs), tuple(deferred), tuple(rows), hashed, nbytes, digested


def _digest_tasks(roots: tuple, reldir: str, tasks, hasher, max_size: int) -> list:
    """``(digest, size, key, error)`` per ``(side, name)`` task (see ``hash_batch``), in task order."""
    sides: dict = {}
    for i, (side, name) in enumerate(tasks):
        sides.setdefault(side, ([], []))
        sides[side][0].append(i)
        sides[side][1].append(name)
    out: list = [None] * len(tasks)
    for side, (where, names) in sides.items():
        for i, outcome in zip(where, _digest_side(roots[side], reldir, names, hasher, max_size), strict=True):
            out[i] = outcome
    return out


def _digest_side(root: str, reldir: str, names: list, hasher, max_size: int) -> list:
    """The outcomes of ``names`` in root/reldir: young files read again after one pause for them all."""
    try:
        dfd = open_dir_beneath(root, reldir)
    except OSError as exc:
        return [(None, 0, None, (DIR_ERROR, f"cannot open its directory: {describe(exc)}"))] * len(names)
    stop = worker.stop_flag()
    try:
        results = digests.digest_names(dfd, names, hasher, stop, max_size)
        out: list = []
        append = out.append
        young: list = []  # (slot, Digest) read once, to read again after one pause
        for result in results:
            if type(result) is digests.Digest:
                st = result.stat
                if not result.confirmed:
                    young.append((len(out), result))
                append((result.digest, st.st_size, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                                    st.st_ctime_ns), None))
            else:
                append(_failure(result))
        if young:
            digests.settle(sum(first.seconds for _, first in young))
            for slot, first in young:
                name = names[slot]
                if not _still(dfd, name, first, hasher, stop):
                    out[slot] = _hash_one(dfd, name, hasher, stop, True, max_size)[0]
        return out
    finally:
        os.close(dfd)


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
    except digests.FAILURES as exc:
        return _failure(exc), None
    st = result.stat
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return (result.digest, st.st_size, key, None), result


def _failure(exc: BaseException) -> tuple:
    """The outcome of a file whose read raised ``exc`` (one of ``digests.FAILURES``)."""
    if isinstance(exc, digests.TooBig):
        return (None, exc.size, None, (DEFER, "too big for a shared batch"))
    if isinstance(exc, digests.NotRegular):
        return (None, 0, None, (NOT_FILE, f"is a {kind_name(exc.mode)}, not a regular file"))
    if isinstance(exc, digests.SourceChanged):
        return (None, 0, None, (FAILED, f"changed while being read (tried {digests.RETRIES + 1} times)"))
    if isinstance(exc, digests.Cancelled):
        return (None, 0, None, (FAILED, "interrupted"))
    if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return (None, 0, None, (GONE, describe(exc)))
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return (None, 0, None, (NOT_FILE, "is a symbolic link, not a regular file"))
    return (None, 0, None, (FAILED, describe(exc)))
