"""Integrity: hash a tree, verify two trees by content, check a tree against a manifest.

    parent: sorted walk (or manifest lines) ─► units of ≤ 256 files per directory
              │  cache.lookup (bulk, per unit): hits are filled in here
              ▼
            BoundedPool.map_ordered ─► hash_batch (worker: dir fd, O_NOFOLLOW opens,
              │  (only units with misses;     one pread for small files, xxh128/sha256)
              │   no worker is started           │ digest + the fstat key it belongs to
              │   when everything hits)          ▼
            finish(unit), in input order: output lines / differences, cache.put (batched)

The parent is the single consumer: it owns the cache, the report and the order
of the output. Workers only read and hash; a per-file failure is a result.

Sorted output: the walk visits each directory's entries in byte order of
their name, a directory's name counting as ``name/``. That yields every path
in plain byte order of the whole relative path (``LC_ALL=C sort``, e.g.
``a.b`` < ``a/x`` < ``a0``) while holding only one directory listing per level.
``map_ordered`` keeps results in that order with a bounded window.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import stat
import time
from stat import S_ISREG
from typing import Callable, Iterator, NamedTuple, Optional

from . import fsops, hashing
from .cache import HashCache
from .engine import SignalGuard, default_jobs
from .errors import EXIT_DIFFERENCES, EXIT_OK, EXIT_PARTIAL, PcopyError, describe
from .model import DIR, FILE, SPECIAL, SYMLINK
from .pool import BoundedPool, make_backend
from .progress import Counters
from .walk import kind_name, kind_of

BATCH_FILES = 256
BATCH_BYTES = 16 << 20
SMALL_FILE = 1 << 20  # hashed from a single pread
CHUNK = 1 << 20
DEFER_BYTES = 4 << 20  # inside a multi-file batch of unknown sizes, bigger files run alone
ABORT_GRACE = 1.5

# Difference kinds
DIFFER = "differ"
MISSING = "missing"  # in SRC (or the manifest) but not in DST (or ROOT)
EXTRA = "extra"  # in DST but not in SRC
ERROR = "error"  # could not be checked


class Difference(NamedTuple):
    kind: str
    path: str
    detail: str = ""


@dataclasses.dataclass
class IntegrityReport:
    """What ``hash`` or ``verify`` found; ``exit_code`` follows the shared contract."""

    files: int = 0  # files with an established digest (read, or taken from the cache)
    hashed: int = 0  # files actually read by a worker
    bytes_hashed: int = 0
    cache_hits: int = 0
    identical: int = 0
    differ: int = 0
    missing: int = 0
    extra: int = 0
    errors: int = 0
    seconds: float = 0.0
    workers_started: bool = False
    warnings: list = dataclasses.field(default_factory=list)
    differences: Optional[list] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.differ or self.missing or self.extra or self.errors)

    @property
    def exit_code(self) -> int:
        if self.differ or self.missing or self.extra:
            return EXIT_DIFFERENCES
        return EXIT_PARTIAL if self.errors else EXIT_OK

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in ("files", "hashed", "bytes_hashed", "cache_hits", "identical",
                                               "differ", "missing", "extra", "errors", "warnings")}
        data["seconds"] = round(self.seconds, 6)
        if self.differences is not None:
            data["differences"] = [d._asdict() for d in self.differences]
        return data


# --------------------------------------------------------------------------- worker


class HashJob(NamedTuple):
    roots: tuple  # side index → root directory


_stop = None


def worker_init(stop_event, in_subprocess: bool = True) -> None:
    global _stop
    fsops.worker_init(stop_event, in_subprocess)
    _stop = stop_event


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def hash_batch(job: HashJob, batch) -> list:
    """Hash ``batch = (reldir, algo, ((side, name), ...))``; one tuple per task, never raises.

    Each tuple is ``(digest, size, key, error)``: ``key`` is the
    (dev, ino, size, mtime_ns, ctime_ns) the digest belongs to; ``error`` is
    None or ``(kind, message)`` with kind missing / notfile / error / deferred.
    """
    reldir, algo, tasks = batch
    factory = hashing.digest_factory(algo)
    if algo == "xxh128":
        one_shot = hashing.xxhash.xxh3_128_hexdigest
    else:
        def one_shot(data):
            return factory(data).hexdigest()
    may_defer = len(tasks) > 1
    fds: dict = {}
    out = []
    try:
        for side, name in tasks:
            dfd = fds.get(side)
            if dfd is None:
                try:
                    dfd = fds[side] = fsops.open_dir_beneath(job.roots[side], reldir)
                except OSError as exc:
                    dfd = fds[side] = exc
            if isinstance(dfd, OSError):
                out.append((None, 0, None, _error(dfd)))
                continue
            try:
                out.append(_hash_file(dfd, name, one_shot, factory, may_defer))
            except OSError as exc:
                out.append((None, 0, None, _error(exc)))
    finally:
        for fd in fds.values():
            if isinstance(fd, int):
                os.close(fd)
    return out


def _error(exc: OSError) -> tuple:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return (MISSING, describe(exc))
    if exc.errno == errno.ELOOP:
        return ("notfile", "is a symbolic link, not a regular file")
    return (ERROR, describe(exc))


def _hash_file(dfd: int, name: str, one_shot, factory, may_defer: bool) -> tuple:
    fd = os.open(name, _OPEN_FLAGS, dir_fd=dfd)
    try:
        for _ in range(3):
            before = os.fstat(fd)
            if not S_ISREG(before.st_mode):
                return (None, 0, None, ("notfile", f"is a {kind_name(before.st_mode)}, not a regular file"))
            size = before.st_size
            if may_defer and size > DEFER_BYTES:
                return (None, size, None, ("deferred", ""))
            if size <= SMALL_FILE:
                data = os.pread(fd, size + 1, 0)
                if len(data) != size:
                    continue
                digest = one_shot(data)
            else:
                hasher = factory()
                buf = bytearray(CHUNK)
                view = memoryview(buf)
                offset = 0
                while True:
                    if _stop is not None and _stop.is_set():
                        return (None, 0, None, (ERROR, "interrupted"))
                    n = os.preadv(fd, [buf], offset)
                    if not n:
                        break
                    hasher.update(view[:n])
                    offset += n
                if offset != size:
                    continue
                digest = hasher.hexdigest()
            after = os.fstat(fd)
            if (after.st_size == size and after.st_mtime_ns == before.st_mtime_ns
                    and after.st_ctime_ns == before.st_ctime_ns):
                return (digest, size, (after.st_dev, after.st_ino, size, after.st_mtime_ns, after.st_ctime_ns), None)
        return (None, 0, None, (ERROR, "file changed while being read (tried 3 times)"))
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- parent: walking


class Row(NamedTuple):
    name: str
    kind: str
    size: int  # -1 when not statted
    key: Optional[tuple]  # cache key of a regular file, when statted
    extra: object = None  # symlink target, or the file type of a special file


def scan(root: str, reldir: str, want_stat: bool) -> dict:
    """{name: Row} of one directory, opened beneath root without following symlinks."""
    fd = fsops.open_dir_beneath(root, reldir)
    rows = {}
    try:
        with os.scandir(fd) as it:
            for de in it:
                name = de.name
                try:
                    if want_stat:
                        st = de.stat(follow_symlinks=False)
                        mode = st.st_mode
                        if S_ISREG(mode):
                            rows[name] = Row(name, FILE, st.st_size,
                                             (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
                            continue
                        kind = kind_of(mode)
                    elif de.is_file(follow_symlinks=False):
                        rows[name] = Row(name, FILE, -1, None)
                        continue
                    elif de.is_dir(follow_symlinks=False):
                        kind = DIR
                    else:
                        mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                        kind = kind_of(mode)
                    if kind == SYMLINK:
                        rows[name] = Row(name, kind, -1, None, os.readlink(name, dir_fd=fd))
                    elif kind == SPECIAL:
                        rows[name] = Row(name, kind, -1, None, kind_name(mode))
                    else:
                        rows[name] = Row(name, kind, -1, None)
                except FileNotFoundError:
                    continue  # vanished between readdir and stat
    finally:
        os.close(fd)
    return rows


def _sort_key(name: str, row: Row) -> bytes:
    encoded = os.fsencode(name)
    return encoded + b"/" if row.kind == DIR else encoded


def walk_sorted(roots: tuple, want_stat: bool, skip: frozenset = frozenset()) -> Iterator[tuple]:
    """Walk one or more trees in lockstep, in byte order of the relative path.

    Yields ``("run", reldir, [(name, rows), ...])`` for consecutive non-descended
    names of a directory (``rows[i]`` is side i's Row or None), and
    ``("error", reldir, side, exc)`` for a directory that cannot be read. A name
    is descended into only when it is a directory on every side.
    """

    def level(reldir):
        listings = []
        for side, root in enumerate(roots):
            try:
                listings.append(scan(root, reldir, want_stat))
            except OSError as exc:
                return None, (side, exc)
        names = set(listings[0]).union(*listings[1:]) if len(listings) > 1 else listings[0]
        merged = []
        for name in names:
            rows = tuple(listing.get(name) for listing in listings)
            first = next(r for r in rows if r is not None)
            relpath = name if not reldir else reldir + "/" + name
            if relpath not in skip:
                merged.append((_sort_key(name, first), name, rows))
        merged.sort()
        return merged, None

    top, err = level("")
    if err is not None:
        yield ("error", "", err[0], err[1])
        return
    stack = [("", iter(top))]
    while stack:
        reldir, it = stack[-1]
        run = []
        descended = False
        for _, name, rows in it:
            if all(r is not None and r.kind == DIR for r in rows):
                if run:
                    yield ("run", reldir, run)
                    run = []
                sub = name if not reldir else reldir + "/" + name
                entries, err = level(sub)
                if err is not None:
                    yield ("error", sub, err[0], err[1])
                    continue
                stack.append((sub, iter(entries)))
                descended = True
                break
            run.append((name, rows))
        if run:
            yield ("run", reldir, run)
        if not descended:
            stack.pop()


# --------------------------------------------------------------------------- parent: units


class Slot:
    """One digest to establish: side and name in the unit's directory, then the outcome."""

    __slots__ = ("side", "name", "key", "digest", "size", "error", "cached")

    def __init__(self, side: int, name: str, key: Optional[tuple], size: int = -1) -> None:
        self.side, self.name, self.key, self.size = side, name, key, size
        self.digest = None
        self.error = None
        self.cached = False


class Unit:
    """A group of records of one directory; ``work`` is what a worker must hash (or None)."""

    __slots__ = ("reldir", "algo", "records", "slots", "todo")

    def __init__(self, reldir: str, algo: str, records: list, slots: list) -> None:
        self.reldir, self.algo, self.records, self.slots = reldir, algo, records, slots
        self.todo = []

    def work(self):
        return (self.reldir, self.algo, tuple((s.side, s.name) for s in self.todo)) if self.todo else None


def _chunks(items: list, size_of: Callable) -> Iterator[list]:
    """Split a run: ≤ BATCH_FILES items and BATCH_BYTES per chunk; a big file goes alone."""
    group, nbytes = [], 0
    for item in items:
        size = max(size_of(item), 0)
        if group and (len(group) >= BATCH_FILES or nbytes + size > BATCH_BYTES or size > DEFER_BYTES):
            yield group
            group, nbytes = [], 0
        group.append(item)
        nbytes += size
        if size > DEFER_BYTES:
            yield group
            group, nbytes = [], 0
    if group:
        yield group


class Session:
    """Shared machinery of hash and verify: cache, counters, report, the ordered pool run."""

    def __init__(self, report: IntegrityReport, counters: Counters, cache: Optional[HashCache],
                 on_difference: Optional[Callable]) -> None:
        self.report = report
        self.counters = counters
        self.cache = cache
        self.on_difference = on_difference

    def difference(self, kind: str, path: str, detail: str = "") -> None:
        report = self.report
        setattr(report, "errors" if kind == ERROR else kind, getattr(report, "errors" if kind == ERROR else kind) + 1)
        diff = Difference(kind, path, detail)
        if report.differences is not None:
            report.differences.append(diff)
        if self.on_difference is not None:
            self.on_difference(diff)

    def prepare(self, unit: Unit) -> Unit:
        """Fill slots from the cache; the rest become the unit's work."""
        slots = unit.slots
        keyed = [s for s in slots if s.key is not None]
        found = self.cache.lookup(unit.algo, [s.key for s in keyed]) if self.cache is not None and keyed else {}
        for slot in slots:
            digest = found.get(slot.key) if found else None
            if digest is not None:
                slot.digest = digest
                slot.cached = True
            else:
                unit.todo.append(slot)
        self.counters.discovered(len(slots), sum(s.size for s in unit.todo if s.size > 0))
        return unit

    def run(self, units: Iterator[Unit], job: HashJob, finish: Callable, jobs: Optional[int], backend: str,
            check: Callable) -> None:
        jobs = jobs or default_jobs()
        lazy = _LazyBackend(backend, jobs)
        pool = BoundedPool(lazy, max_in_flight=jobs * 2)
        fn = functools.partial(hash_batch, job)
        items = ((unit, unit.work()) for unit in units)
        try:
            for unit, results, exc in pool.map_ordered(fn, items, check, window=jobs * 8):
                if unit.todo:
                    self._apply(unit, results, exc, lazy, fn, check)
                self._account(unit)
                finish(unit)
            pool.close()
        except BaseException:
            pool.abort(ABORT_GRACE)
            raise
        finally:
            self.report.workers_started = lazy.real is not None
            self.counters.walk_done = True

    def _apply(self, unit: Unit, results, exc, lazy, fn, check) -> None:
        if exc is not None:
            for slot in unit.todo:
                slot.error = (ERROR, f"worker failed: {describe(exc)}")
            return
        deferred = []
        for slot, (digest, size, key, error) in zip(unit.todo, results, strict=True):
            if error is not None and error[0] == "deferred":
                deferred.append(slot)
                continue
            self._settle(unit.algo, slot, digest, size, key, error)
        if deferred:  # big files found inside a batch: hash them one per worker, in parallel
            futures = {lazy.submit(fn, (unit.reldir, unit.algo, ((s.side, s.name),))): s for s in deferred}
            pending = set(futures)
            while pending:
                check()
                for future in lazy.wait(list(pending), 0.1):
                    pending.discard(future)
                    slot = futures[future]
                    if future.exception() is not None:
                        slot.error = (ERROR, f"worker failed: {describe(future.exception())}")
                    else:
                        self._settle(unit.algo, slot, *future.result()[0])

    def _settle(self, algo, slot: Slot, digest, size, key, error) -> None:
        slot.error = error
        if error is not None:
            return
        slot.digest, slot.size = digest, size
        report = self.report
        report.hashed += 1
        report.bytes_hashed += size
        if self.cache is not None and key is not None and (slot.key is None or slot.key == key):
            self.cache.put(algo, key, digest)

    def _account(self, unit: Unit) -> None:
        report, counters = self.report, self.counters
        done = [s for s in unit.slots if s.digest is not None]
        report.files += len(done)
        report.cache_hits += sum(1 for s in done if s.cached)
        counters.files_done += len(unit.slots)
        counters.bytes_done += sum(s.size for s in unit.todo if s.size > 0 and s.digest is not None)


class _LazyBackend:
    """Creates the real pool backend on the first submit: a run that is all cache hits starts no worker."""

    def __init__(self, name: str, jobs: int) -> None:
        self.name, self.jobs = name, jobs
        self.real = None
        self._idle_stop = __import__("threading").Event()

    @property
    def stop_event(self):
        return self.real.stop_event if self.real is not None else self._idle_stop

    def submit(self, fn, *args):
        if self.real is None:
            self.real = make_backend(self.name, self.jobs, worker_init)
        return self.real.submit(fn, *args)

    def wait(self, futures, timeout):
        return self.real.wait(futures, timeout) if self.real is not None and futures else set()

    def shutdown(self, kill: bool = False) -> None:
        if self.real is not None:
            self.real.shutdown(kill)


def _check_dir(path: str, what: str) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PcopyError(f"{path}: cannot read {what}: {describe(exc)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise PcopyError(f"{path}: {what} is not a directory")


def _open_cache(cache, report: IntegrityReport, on_warning: Optional[Callable]) -> Optional[HashCache]:
    if cache is False or cache is None:
        return None

    def warn(message: str) -> None:
        report.warnings.append(message)
        if on_warning is not None:
            on_warning(message)
    return HashCache(None if cache is True else os.fspath(cache), warn)


def _relpath(reldir: str, name: str) -> str:
    return name if not reldir else reldir + "/" + name


# --------------------------------------------------------------------------- hash ROOT


def hash_tree(root: str, write: Callable[[bytes], None], *, algo: str = "xxh128", jobs: Optional[int] = None,
              backend: str = "process", cache=True, counters: Optional[Counters] = None,
              on_difference: Optional[Callable] = None, on_warning: Optional[Callable] = None,
              skip: frozenset = frozenset(), keep: bool = True) -> IntegrityReport:
    """Hash every regular file below ``root``; ``write`` gets manifest lines in sorted path order.

    Symlinks and special files are not followed or listed. Unreadable files
    and directories are reported as ``error`` differences.
    """
    started = time.monotonic()
    _check_dir(root, "root")
    report = IntegrityReport(differences=[] if keep else None)
    counters = counters if counters is not None else Counters()
    hash_cache = _open_cache(cache, report, on_warning)
    session = Session(report, counters, hash_cache, on_difference)
    want_stat = hash_cache is not None and hash_cache.enabled

    def units():
        for event in walk_sorted((root,), want_stat, skip):
            if event[0] == "error":
                session.difference(ERROR, event[1] or ".", f"cannot read directory: {describe(event[3])}")
                continue
            _, reldir, run = event
            files = [rows[0] for _, rows in run if rows[0].kind == FILE]
            for group in _chunks(files, lambda row: row.size):
                slots = [Slot(0, row.name, row.key, row.size) for row in group]
                yield session.prepare(Unit(reldir, algo, slots, slots))

    def finish(unit: Unit) -> None:
        lines = []
        for slot in unit.slots:
            relpath = _relpath(unit.reldir, slot.name)
            if slot.digest is not None:
                lines.append(hashing.manifest_line(slot.digest, relpath))
            elif slot.error[0] != MISSING:  # vanished files are simply not listed
                session.difference(ERROR, relpath, slot.error[1])
        if lines:
            write(b"".join(lines))

    with SignalGuard() as guard:
        counters.start()
        try:
            session.run(units(), HashJob((root,)), finish, jobs, backend, guard.check)
        finally:
            counters.close()
            if hash_cache is not None:
                hash_cache.close()
    report.seconds = time.monotonic() - started
    return report


# --------------------------------------------------------------------------- verify SRC DST


def verify_trees(src: str, dst: str, *, jobs: Optional[int] = None, backend: str = "process", cache=True,
                 counters: Optional[Counters] = None, on_difference: Optional[Callable] = None,
                 on_warning: Optional[Callable] = None, keep: bool = True) -> IntegrityReport:
    """Compare two trees by content (xxh128), symlink targets and entry kinds.

    A directory present on one side only is one ``missing``/``extra`` line
    (its path ends with ``/``); its contents are not listed.
    """
    started = time.monotonic()
    _check_dir(src, "source")
    _check_dir(dst, "destination")
    report = IntegrityReport(differences=[] if keep else None)
    counters = counters if counters is not None else Counters()
    hash_cache = _open_cache(cache, report, on_warning)
    session = Session(report, counters, hash_cache, on_difference)
    want_stat = hash_cache is not None and hash_cache.enabled
    algo = "xxh128"
    sides = ("SRC", "DST")

    def units():
        for event in walk_sorted((src, dst), want_stat):
            if event[0] == "error":
                _, reldir, side, exc = event
                session.difference(ERROR, reldir or ".", f"cannot read directory in {sides[side]}: {describe(exc)}")
                continue
            _, reldir, run = event
            records = []  # in path order: a decided Difference, True (same), or a pair of Slots
            for name, (a, b) in run:
                relpath = _relpath(reldir, name)
                if b is None:
                    records.append(Difference(MISSING, relpath + ("/" if a.kind == DIR else ""), "not in DST"))
                elif a is None:
                    records.append(Difference(EXTRA, relpath + ("/" if b.kind == DIR else ""), "not in SRC"))
                elif a.kind != b.kind:
                    records.append(Difference(DIFFER, relpath, f"{_kind(a)} in SRC, {_kind(b)} in DST"))
                elif a.kind == FILE:
                    if a.size >= 0 and b.size >= 0 and a.size != b.size:
                        records.append(Difference(DIFFER, relpath, f"sizes differ ({a.size} in SRC, {b.size} in DST)"))
                    else:
                        records.append((Slot(0, a.name, a.key, a.size), Slot(1, b.name, b.key, b.size)))
                elif a.extra != b.extra:
                    records.append(Difference(DIFFER, relpath, "symlink targets differ" if a.kind == SYMLINK
                                              else f"{a.extra} in SRC, {b.extra} in DST"))
                else:
                    records.append(True)
            for group in _chunks(records, _pair_size):
                slots = [slot for rec in group if type(rec) is tuple for slot in rec]
                yield session.prepare(Unit(reldir, algo, group, slots))

    def finish(unit: Unit) -> None:
        for record in unit.records:
            if record is True:
                report.identical += 1
                continue
            if type(record) is Difference:
                session.difference(*record)
                continue
            a, b = record
            relpath = _relpath(unit.reldir, a.name)
            if a.error is not None or b.error is not None:
                slot, side = (a, "SRC") if a.error is not None else (b, "DST")
                session.difference(ERROR, relpath, f"in {side}: {slot.error[1]}")
            elif a.digest == b.digest:
                report.identical += 1
            elif a.size != b.size:
                session.difference(DIFFER, relpath, f"sizes differ ({a.size} in SRC, {b.size} in DST)")
            else:
                session.difference(DIFFER, relpath, "contents differ")

    with SignalGuard() as guard:
        counters.start()
        try:
            session.run(units(), HashJob((src, dst)), finish, jobs, backend, guard.check)
        finally:
            counters.close()
            if hash_cache is not None:
                hash_cache.close()
    report.seconds = time.monotonic() - started
    return report


def _pair_size(record) -> int:
    return record[0].size + record[1].size if type(record) is tuple else 0


def _kind(row: Row) -> str:
    return {FILE: "file", DIR: "directory", SYMLINK: "symlink"}.get(row.kind, row.extra or "special file")


# --------------------------------------------------------------------------- verify --manifest FILE ROOT


def verify_manifest(stream, root: str, *, manifest_name: str = "manifest", jobs: Optional[int] = None,
                    backend: str = "process", cache=True, counters: Optional[Counters] = None,
                    on_difference: Optional[Callable] = None, on_warning: Optional[Callable] = None,
                    keep: bool = True) -> IntegrityReport:
    """Check ``root`` against manifest lines read from the binary ``stream``.

    Lines are checked in manifest order; paths never leave ``root`` and
    symlinks are not followed. Files in ``root`` that the manifest does not
    list are not reported (as with ``xxhsum -c``). A line that cannot be
    parsed is an ``error``; a manifest without any valid line is fatal.
    """
    started = time.monotonic()
    _check_dir(root, "root")
    report = IntegrityReport(differences=[] if keep else None)
    counters = counters if counters is not None else Counters()
    hash_cache = _open_cache(cache, report, on_warning)
    session = Session(report, counters, hash_cache, on_difference)
    want_stat = hash_cache is not None and hash_cache.enabled
    valid = [0]

    def units():
        group, group_dir, group_algo = [], None, None
        for entry in hashing.read_manifest(stream):
            if entry.error is not None:
                session.difference(ERROR, f"{manifest_name}:{entry.lineno}", entry.error)
                continue
            valid[0] += 1
            reldir, _, name = entry.relpath.rpartition("/")
            if group and (reldir != group_dir or entry.algo != group_algo or len(group) >= BATCH_FILES):
                yield from _manifest_units(session, root, group_dir, group_algo, group, want_stat)
                group = []
            group_dir, group_algo = reldir, entry.algo
            group.append((name, entry))
        if group:
            yield from _manifest_units(session, root, group_dir, group_algo, group, want_stat)

    def finish(unit: Unit) -> None:
        for slot, entry in unit.records:
            if type(slot) is Difference:  # decided while statting
                session.difference(*slot)
                continue
            if slot.error is not None:
                kind, message = slot.error
                if kind == MISSING:
                    session.difference(MISSING, entry.relpath, "not found")
                elif kind == "notfile":
                    session.difference(DIFFER, entry.relpath, message)
                else:
                    session.difference(ERROR, entry.relpath, message)
            elif slot.digest == entry.digest:
                report.identical += 1
            else:
                session.difference(DIFFER, entry.relpath, "contents differ")

    with SignalGuard() as guard:
        counters.start()
        try:
            session.run(units(), HashJob((root,)), finish, jobs, backend, guard.check)
        finally:
            counters.close()
            if hash_cache is not None:
                hash_cache.close()
    if not valid[0]:
        raise PcopyError(f"{manifest_name}: no properly formatted checksum lines found")
    report.seconds = time.monotonic() - started
    return report


def _manifest_units(session: Session, root: str, reldir: str, algo: str, group: list, want_stat: bool):
    """Units for manifest entries of one directory; statted (for the cache) when it is on."""
    stats: dict = {}
    if want_stat:
        try:
            fd = fsops.open_dir_beneath(root, reldir)
        except OSError as exc:
            fd = None
            dir_error = _error(exc)
        if fd is not None:
            try:
                for name, _ in group:
                    try:
                        stats[name] = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except OSError as exc:
                        stats[name] = _error(exc)
            finally:
                os.close(fd)
        else:
            stats = {name: dir_error for name, _ in group}
    records = []
    for name, entry in group:
        st = stats.get(name)
        if type(st) is tuple:  # an error found while statting
            kind, message = st
            if kind == MISSING:
                records.append((Difference(MISSING, entry.relpath, "not found"), entry))
            else:
                records.append((Difference(DIFFER if kind == "notfile" else ERROR, entry.relpath, message), entry))
            continue
        if st is not None and not S_ISREG(st.st_mode):
            records.append((Difference(DIFFER, entry.relpath, f"is a {kind_name(st.st_mode)}, not a regular file"),
                            entry))
            continue
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) if st is not None else None
        slot = Slot(0, name, key, st.st_size if st is not None else -1)
        records.append((slot, entry))
    for chunk in _chunks(records, lambda rec: rec[0].size if type(rec[0]) is Slot else 0):
        chunk_slots = [slot for slot, _ in chunk if type(slot) is Slot]
        yield session.prepare(Unit(reldir, algo, chunk, chunk_slots))
