"""The one function that reads and hashes an open file, with the change check.

Every command that reads file contents comes here: copy (through
``copydata``), ``sync -c``, link-dest and ``-H`` manifest digests, ``verify``,
``hash`` and transforms. A read is trusted only when the file held still:

* ``fstat`` before and after must agree on size, mtime and ctime (ctime
  catches a content change whose mtime was put back);
* a file changed less than ``YOUNG_NS`` ago may be in the middle of a write
  that does not move its timestamps (they advance in clock ticks, and a
  ``pwrite`` updates mtime before it copies its data), so it is read a second
  time, after a short pause (``settle``) that lets a writer caught in the
  middle of a write finish it, and both digests must agree. Callers that read
  many files (the copy and hash workers) pause once per batch, not per file;
* where the kernel can tell (a read lease: Linux, the file's owner or root,
  local file systems), a young file that some process has open for writing is
  not trusted at all: its writer may be stalled in the middle of a write for
  longer than any pause. The last attempt waits until the file has been
  quiet for ``YOUNG_NS`` (an idle writer holding it open is then no risk).

A file that keeps changing raises ``SourceChanged`` after ``RETRIES`` more
attempts; the caller reports it.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import time
from stat import S_ISREG
from typing import Callable, NamedTuple, Optional

import xxhash

SMALL_FILE = 1 << 20  # read (and hashed) in one call up to this size
CHUNK = 1 << 20
YOUNG_NS = 2_000_000_000  # files changed more recently than this are read twice
RETRIES = 2  # further attempts after a change was seen
SETTLE_MIN = 0.005  # seconds: the shortest pause before a young file's second read
SETTLE_MAX = 0.5

ALGORITHMS = ("xxh128", "sha256", "xxh64", "xxh32", "xxh3")


class SourceChanged(Exception):
    """The file changed while it was read."""


class Cancelled(Exception):
    """The run is being interrupted: drop this file."""


class NotRegular(Exception):
    """The name no longer holds a regular file (``mode`` tells what it holds)."""

    def __init__(self, mode: int) -> None:
        super().__init__(mode)
        self.mode = mode


class Algo(NamedTuple):
    """A hash algorithm: ``new()`` makes a hasher; ``once(data)`` hashes a whole buffer."""

    name: str
    new: Callable
    once: Callable[[bytes], str]


def algo(name: str) -> Algo:
    if name == "xxh128":
        return Algo(name, xxhash.xxh3_128, xxhash.xxh3_128_hexdigest)
    if name == "xxh64":
        return Algo(name, xxhash.xxh64, xxhash.xxh64_hexdigest)
    if name == "xxh32":
        return Algo(name, xxhash.xxh32, xxhash.xxh32_hexdigest)
    if name == "xxh3":
        return Algo(name, xxhash.xxh3_64, xxhash.xxh3_64_hexdigest)
    if name == "sha256":
        import hashlib

        return Algo(name, hashlib.sha256, lambda data: hashlib.sha256(data).hexdigest())
    raise ValueError(f"unknown hash algorithm: {name}")


XXH128 = algo("xxh128")


def is_young(st: os.stat_result, now_ns: Optional[int] = None) -> bool:
    now_ns = time.time_ns() if now_ns is None else now_ns
    return max(st.st_mtime_ns, st.st_ctime_ns) > now_ns - YOUNG_NS


def check_unchanged(fd: int, before: os.stat_result) -> os.stat_result:
    """The fstat after a read; SourceChanged when size, mtime or ctime moved."""
    after = os.fstat(fd)
    if (after.st_size != before.st_size or after.st_mtime_ns != before.st_mtime_ns
            or after.st_ctime_ns != before.st_ctime_ns):
        raise SourceChanged
    return after


def read_through(fd: int, size: int, hasher: Optional[Algo], stop=None,
                 sink: Optional[Callable] = None) -> Optional[str]:
    """Read the ``size`` bytes of ``fd`` from offset 0, hashing them and handing each piece to ``sink``.

    The one read loop: a small file is one read and one hash call, a bigger one
    ``CHUNK`` pieces. Returns the digest (None without a hasher); SourceChanged
    when the file turns out not to be ``size`` long.
    """
    if size <= SMALL_FILE:
        data = os.pread(fd, size + 1, 0)
        if len(data) != size:
            raise SourceChanged
        if sink is not None:
            sink(data)
        return hasher.once(data) if hasher is not None else None
    h = hasher.new() if hasher is not None else None
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    offset = 0
    while True:
        if stop is not None and stop.is_set():
            raise Cancelled
        n = os.preadv(fd, [buf], offset)
        if not n:
            break
        if h is not None:
            h.update(view[:n])
        if sink is not None:
            sink(view[:n])
        offset += n
    if offset != size:
        raise SourceChanged
    return h.hexdigest() if h is not None else None


def hash_fd(fd: int, size: int, hasher: Algo, stop=None) -> str:
    """Digest of the first ``size`` bytes of ``fd`` (read from offset 0)."""
    return read_through(fd, size, hasher, stop) or ""


def settle(read_seconds: float = 0.0) -> None:
    """The pause before young files are read again: long enough for a writer preempted in the middle
    of a write (or writing at the speed we read) to get through it."""
    time.sleep(min(SETTLE_MAX, max(SETTLE_MIN, 2 * read_seconds)))


def open_for_writing(fd: int) -> Optional[bool]:
    """Whether any process has the file open for writing: True, False, or None when the kernel cannot say.

    A read lease can only be taken when nobody has the file open for writing;
    it is released at once. The kernel signals a lease holder with SIGIO when
    someone opens the file meanwhile, so this is only tried where SIGIO is
    ignored (worker processes and the CLI ignore it).
    """
    try:
        import fcntl

        if signal.getsignal(signal.SIGIO) is not signal.SIG_IGN:
            return None
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return True if exc.errno == errno.EAGAIN else None
    except (ImportError, AttributeError, ValueError):
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    except OSError:
        pass
    return False


def wait_until_quiet(st: os.stat_result) -> None:
    """Sleep until a file last changed at ``st`` stops being young (at most YOUNG_NS)."""
    remaining = max(st.st_mtime_ns, st.st_ctime_ns) + YOUNG_NS - time.time_ns()
    if remaining > 0:
        time.sleep(min(remaining, YOUNG_NS) / 1e9 + 0.01)


def confirm(fd: int, before: os.stat_result, digest: str, hasher: Algo, stop=None, read_seconds: float = 0.0) -> None:
    """After a read that gave ``digest``: the change check, and for a young file a second read after a pause."""
    check_unchanged(fd, before)
    if is_young(before):
        settle(read_seconds)
        if not same_version(fd, before, digest, hasher, stop):
            raise SourceChanged


def same_version(fd: int, before: os.stat_result, digest: str, hasher: Algo, stop=None) -> bool:
    """Whether the open file is still the one read as ``before`` with ``digest`` (the second read)."""
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns, now.st_ctime_ns) != (
            before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns):
        return False
    if is_young(before) and open_for_writing(fd):
        return False
    try:
        if hash_fd(fd, before.st_size, hasher, stop) != digest:
            return False
        check_unchanged(fd, before)
    except SourceChanged:
        return False
    return True


class Digest(NamedTuple):
    digest: str
    stat: os.stat_result  # the fstat the digest belongs to (the hash cache's key)
    seconds: float = 0.0  # how long the read took
    confirmed: bool = True  # False: a young file read once; the caller must read it again after settle()


def digest_open_file(fd: int, hasher: Algo, stop=None, max_size: int = -1, confirm_young: bool = True) -> Digest:
    """Digest an open file that must hold still (see the module docstring).

    Raises NotRegular, SourceChanged (after RETRIES more attempts), Cancelled
    or OSError. ``max_size`` ≥ 0: raise ``TooBig(size)`` instead of reading more.
    ``confirm_young=False``: a young file is read once and returned unconfirmed
    (the caller pauses once for many files, then calls ``same_version``).
    """
    for attempt in range(RETRIES + 1):
        before = os.fstat(fd)
        if not S_ISREG(before.st_mode):
            raise NotRegular(before.st_mode)
        size = before.st_size
        if 0 <= max_size < size:
            raise TooBig(size)
        if attempt == RETRIES:
            wait_until_quiet(before)
            before = os.fstat(fd)
            size = before.st_size
        try:
            if not is_young(before):  # the common case in few calls: read and hash, the change check
                digest = read_through(fd, size, hasher, stop) or ""
                check_unchanged(fd, before)
                return Digest(digest, before)
            started = time.monotonic()
            digest = hash_fd(fd, size, hasher, stop)
            seconds = time.monotonic() - started
            if not confirm_young:
                check_unchanged(fd, before)
                return Digest(digest, before, seconds, False)
            confirm(fd, before, digest, hasher, stop, seconds)
        except SourceChanged:
            continue
        return Digest(digest, before, seconds)
    raise SourceChanged


class TooBig(Exception):
    """A file bigger than the caller wants to read here (it is handed back to run alone)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO cannot hang us


_digest = functools.partial(tuple.__new__, Digest)  # without NamedTuple's Python-level __new__ (once per file)
FAILURES = (OSError, SourceChanged, NotRegular, TooBig, Cancelled)  # what digest_at raises for one file


def digest_names(dir_fd: int, names, hasher: Algo, stop=None, max_size: int = -1) -> list:
    """``digest_at`` for many names of one directory, young files read once (``confirm_young=False``).

    One item per name: a Digest, or the exception that stopped it (as
    ``digest_at`` raises it). The common case, a regular file of at most
    ``SMALL_FILE`` bytes that was already old when the call began, is read
    and checked here with the same primitives but without the per-file calls
    around them, which cost as much as the read itself; anything else, and
    a first read that saw a change, goes through ``digest_open_file``.
    """
    out: list = []
    append = out.append
    old = time.time_ns() - YOUNG_NS  # a file older than this at the start is older still now
    limit = SMALL_FILE if max_size < 0 else min(SMALL_FILE, max_size)
    for name in names:
        try:
            fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            append(exc)
            continue
        try:
            before = os.fstat(fd)
            if (before.st_size <= limit and before.st_mtime_ns <= old and before.st_ctime_ns <= old
                    and S_ISREG(before.st_mode)):
                try:
                    digest = read_through(fd, before.st_size, hasher)
                    check_unchanged(fd, before)
                    append(_digest((digest, before, 0.0, True)))
                    continue
                except SourceChanged:
                    pass
            append(digest_open_file(fd, hasher, stop, max_size, False))
        except FAILURES as exc:
            append(exc)
        finally:
            os.close(fd)
    return out


def digest_at(dir_fd: int, name: str, hasher: Algo, stop=None, flags: int = READ_FLAGS) -> Digest:
    """Open ``name`` relative to ``dir_fd`` (not following a symlink) and digest it."""
    fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        return digest_open_file(fd, hasher, stop)
    finally:
        os.close(fd)
