"""``pcopy verify SRC DST``: both trees listed at once, unchanged directories settled whole, the rest read.

    march: SRC walked here ───────────► SRC Side ─┐
           DST walked by its lister ──► DST Side ─┴─► equal, every file cached: counted, nothing more
                                                     equal, nothing cached (--no-cache): its files, batched
                                                     otherwise: records in name order (differences, pairs)
                                                       ▼
           BoundedPool.map_ordered ─► worker.compare_batch (reads both sides of each pair, compares them)
                                                       ▼
           done(unit), in order: differences, counts, cache.put of what was read

The parent is the single consumer: the report, the order of the output and
every cache write are its own. Without a cache nothing is stat'ed: names come
from the directory entries and sizes from the worker's fstat.
"""

from __future__ import annotations

import collections
import functools
import time
from typing import Callable, Optional

from ..content.cache import unpack
from ..errors import describe
from ..fs.march import March
from ..fs.scan import require_dir
from ..model.batching import BATCH_FILES, group
from ..model.entries import DIR
from ..runtime.progress import Counters
from .report import DIFFER, ERROR, EXTRA, MISSING, Difference, IntegrityReport
from .session import Session, open_cache, relpath
from .sides import DIRECTORY, Reading, Side, SideView, word
from .tree import guarded
from .worker import FAILED, CompareJob, compare_batch

ALGO = "xxh128"
_EMPTY = Side((), (), 0, 0, "")


class Unit:
    """Some records of one directory; ``names`` are the pairs a worker must read (``known``: what the cache had).

    ``records`` is None when every name is such a pair (in order), else a list
    in name order of Difference, True (the same) or j (the pair names[j]).
    A unit made of one pair deferred from another (``parent``, at ``slot``)
    reports through its parent; ``diffs`` and ``waiting`` hold a parent's
    outcome until its deferred pairs are back.
    """

    __slots__ = ("reldir", "records", "names", "known", "nbytes", "parent", "slot", "diffs", "waiting", "reading")

    def __init__(self, reldir: str, records: Optional[list], names: tuple, known: Optional[tuple],
                 nbytes: int = 0, parent: Optional[Unit] = None, slot: int = 0) -> None:
        self.reldir, self.records, self.names, self.known, self.nbytes = reldir, records, names, known, nbytes
        self.parent, self.slot = parent, slot
        self.diffs: dict = {}
        self.waiting = 0
        self.reading: Optional[Reading] = None  # the directory is read whole: store its listings after

    def work(self):
        return (self.reldir, self.names, self.known) if self.names else None


def verify_trees(src: str, dst: str, *, jobs: Optional[int] = None, backend: str = "process", cache=True,
                 counters: Optional[Counters] = None, on_difference: Optional[Callable] = None,
                 on_warning: Optional[Callable] = None, keep: bool = True) -> IntegrityReport:
    """Compare two trees by content (xxh128), symlink targets and entry kinds.

    A directory present on one side only is one ``missing``/``extra`` line
    (its path ends with ``/``); its contents are not listed.
    """
    started = time.monotonic()
    require_dir(src, "source")
    require_dir(dst, "destination")
    report = IntegrityReport(differences=[] if keep else None)
    session = Session(report, counters if counters is not None else Counters(), open_cache(cache, report, on_warning),
                      on_difference)
    flow = _Flow(session, src, dst)
    flow.march.start_lister()
    job = CompareJob((src, dst), ALGO, session.cache is not None)
    guarded(session, lambda check: session.run_units(flow.units(), functools.partial(compare_batch, job), flow.done,
                                                     jobs, backend, check, flow.more), started)
    return report


class _Flow:
    """The march turned into units, and their results into the report."""

    def __init__(self, session: Session, src: str, dst: str) -> None:
        self.session, self.report, self.src = session, session.report, src
        self.view = SideView(ALGO, session.cache)
        cached = session.cache is not None
        self.march = March(src, dst, need_stat=cached, dtype_only=not cached, view=self.view)
        self.follow: collections.deque = collections.deque()  # units made of deferred pairs, to run next
        self.held: collections.deque = collections.deque()  # finished units behind one still waiting, in order

    def units(self):
        session, march = self.session, self.march
        try:
            for pair in march.pairs():
                yield from self._drain()
                reldir = pair.reldir
                where = reldir or "."
                if pair.src.error is not None:
                    session.difference(ERROR, where, f"cannot read directory in SRC: {describe(pair.src.error)}")
                    continue
                if pair.dst_error is not None:
                    session.difference(ERROR, where, f"cannot read directory in DST: {describe(pair.dst_error)}")
                    march.prune.update(relpath(reldir, e.name) for e in pair.src.entries if e.kind == DIR)
                    continue
                unknown = set()  # names whose stat failed on a side: reported once, not compared
                for side, errors in (("SRC", pair.src.entry_errors), ("DST", pair.dst_entry_errors)):
                    for name, exc in errors:
                        unknown.add(name)
                        session.difference(ERROR, relpath(reldir, name), f"cannot stat in {side}: {describe(exc)}")
                yield from self._directory(reldir, self.view.make(self.src, pair.src), pair.dst or _EMPTY, unknown)
            yield from self._drain()
        finally:
            march.close()

    def _drain(self):
        while self.follow:
            yield self.follow.popleft()

    def more(self):
        """Deferred pairs queued after the march ended (their units were the last in flight)."""
        return self._drain() if self.follow else None

    def _trusted(self, side: Side) -> Side:
        """The DST Side's cache hits count only while our own cache is on (the lister may not know it failed)."""
        cache = self.session.cache
        if side.cache_error is not None and cache is not None:
            cache.failed(*side.cache_error)
        if side.hits and (cache is None or not cache.enabled):
            return side._replace(hits=0, digests="")
        return side

    def _directory(self, reldir: str, s: Side, d: Side, unknown: set):
        d = self._trusted(d)
        cache = self.session.cache
        if cache is not None:  # a side whose files all hit one by one: the next run finds it whole
            for side in (s, d):
                if side.fingerprint is not None and side.files and side.hits == side.files:
                    cache.put_listing(ALGO, side.fingerprint, side.digests)
        report = self.report
        if s.names == d.names and s.shape == d.shape and not (s.problems or d.problems or unknown):
            report.identical += len(s.names) - s.files - s.shape.count(DIRECTORY)  # symlinks, special files
            if not s.files:
                return
            if s.hits == d.hits == s.files and s.digests == d.digests:
                report.identical += s.files
                report.files += 2 * s.files
                report.cache_hits += 2 * s.files
                self.session.counters.discovered(2 * s.files, 0)
                self.session.counters.files_done += 2 * s.files
                return
            if not (s.hits or d.hits):
                files = [(name, shape) for name, shape in zip(s.names, s.shape, strict=True) if type(shape) is int]
                reading = Reading(s, d) if cache is not None and (s.fingerprint or d.fingerprint) else None
                yield from self._pairs(reldir, [name for name, _ in files], [size for _, size in files], reading)
                return
        records, names, known, hits = pair_records(reldir, s, d, self.march.prune, unknown)
        report.cache_hits += hits
        report.files += hits
        sizes = [k[2] for k in known]
        for chunk in group(range(len(records)), lambda i: _record_size(records[i], sizes)):
            part = [records[i] for i in chunk]
            picked = [r for r in part if type(r) is int]
            local = {j: n for n, j in enumerate(picked)}
            pairs = tuple(known[j] for j in picked)
            unit = Unit(reldir, [local[r] if type(r) is int else r for r in part], tuple(names[j] for j in picked),
                        pairs if any(x is not None or y is not None for x, y, _ in pairs) else None,
                        sum(max(sizes[j], 0) for j in picked))
            self.session.counters.discovered(2 * len(unit.names), 2 * unit.nbytes)
            yield unit

    def _pairs(self, reldir: str, names: list, sizes: list, reading: Optional[Reading] = None):
        """Units of pairs that only a read can settle (nothing known from the cache), batched by the one rule."""
        counters = self.session.counters
        if min(sizes) < 0:  # not stat'ed: by count (the worker hands big files back to run alone)
            for i in range(0, len(names), BATCH_FILES):
                few = tuple(names[i:i + BATCH_FILES])
                counters.discovered(2 * len(few), 0)
                yield Unit(reldir, None, few, None)
            return
        chunks = list(group(range(len(names)), lambda j: 2 * sizes[j]))
        if reading is not None:
            reading.units = len(chunks)
        for chunk in chunks:
            unit = Unit(reldir, None, tuple(names[j] for j in chunk), None, sum(sizes[j] for j in chunk))
            unit.reading = reading
            counters.discovered(2 * len(chunk), 2 * unit.nbytes)
            yield unit

    def done(self, unit: Unit, result, exc) -> None:
        """Account for a finished unit; report units in input order (one with deferred pairs waits for them)."""
        diffs, deferred = self._settle(unit, result, exc)
        reading, cache = unit.reading, self.session.cache
        if reading is not None:
            if exc is not None or deferred:
                reading.spoil()
            reading.units -= 1
            if not reading.units and cache is not None:
                reading.store(cache, ALGO)
        parent = unit.parent
        if parent is not None:
            if diffs:
                parent.diffs[unit.slot] = diffs[0]
            parent.waiting -= 1
        else:
            unit.diffs = diffs
            for j in deferred:  # big files met in a shared batch: each runs alone, next
                self.follow.append(Unit(unit.reldir, None, (unit.names[j],),
                                        None if unit.known is None else (unit.known[j],), 0, unit, j))
            unit.waiting = len(deferred)
            self.held.append(unit)
        while self.held and not self.held[0].waiting:
            self._report(self.held.popleft())

    def _settle(self, unit: Unit, result, exc) -> tuple:
        """``(diffs {j: (kind, detail)}, deferred js)``; the counts, the progress and the cache writes."""
        if not unit.names:
            return {}, ()
        counters = self.session.counters
        if exc is not None:
            counters.files_done += 2 * len(unit.names)
            return {j: (ERROR, f"in SRC: worker failed: {describe(exc)}") for j in range(len(unit.names))}, ()
        found, deferred, rows, hashed, nbytes, digested = result
        report = self.report
        report.hashed += hashed
        report.bytes_hashed += nbytes
        report.files += digested
        counters.bytes_done += nbytes
        counters.files_done += 2 * (len(unit.names) - len(deferred))
        cache = self.session.cache
        if cache is not None:
            reading, names = unit.reading, unit.names
            for side, j, key, digest in rows:
                cache.put(ALGO, key, digest)
                if reading is not None:
                    reading.add(side, names[j], key, digest)
        return {j: (kind, detail) for j, kind, detail in found}, deferred

    def _report(self, unit: Unit) -> None:
        session, report, diffs = self.session, self.report, unit.diffs
        if unit.records is None:
            for j in sorted(diffs):
                session.difference(diffs[j][0], relpath(unit.reldir, unit.names[j]), diffs[j][1])
            report.identical += len(unit.names) - len(diffs)
            return
        report_records(session, unit.records, diffs, unit.reldir, unit.names)


def _record_size(record, sizes: list) -> int:
    return 2 * sizes[record] if type(record) is int else 0


def pair_records(reldir: str, s: Side, d: Side, prune: set, unknown: set) -> tuple:
    """``(records, names, known, cache hits used)``: name by name, as in ``Unit`` (see ``_Flow._directory``).

    ``prune`` gets every name that is a directory on one side only (the march, whichever tree it walks,
    must not enter it); remote verify (``remote.verify``) shares these rules.
    """
    src_digests = unpack(s.digests) if s.hits else {}
    dst_digests = unpack(d.digests) if d.hits else {}
    src_at = {name: i for i, name in enumerate(s.names)}
    dst_at = {name: i for i, name in enumerate(d.names)}
    problems = dict(d.problems)
    problems.update(s.problems)
    records: list = []
    names: list = []
    known: list = []
    hits = 0
    for name in sorted((src_at.keys() | dst_at.keys()) - unknown):
        i, j = src_at.get(name), dst_at.get(name)
        a = s.shape[i] if i is not None else None
        b = d.shape[j] if j is not None else None
        path = relpath(reldir, name)
        if (a == DIRECTORY) != (b == DIRECTORY):
            prune.add(path)
        if i is None or j is None:
            kind, shape, where = (MISSING, a, "not in DST") if j is None else (EXTRA, b, "not in SRC")
            records.append(Difference(kind, path + ("/" if shape == DIRECTORY else ""), where))
        elif word(a) != word(b):
            records.append(Difference(DIFFER, path, f"{word(a)} in SRC, {word(b)} in DST"))
        elif type(a) is int and type(b) is int:
            if a >= 0 and b >= 0 and a != b:
                records.append(Difference(DIFFER, path, f"sizes differ ({a} in SRC, {b} in DST)"))
                continue
            x, y = src_digests.get(i), dst_digests.get(j)
            hits += (x is not None) + (y is not None)
            if x is not None and y is not None:
                records.append(True if x == y else Difference(DIFFER, path, "contents differ"))
            else:
                records.append(len(names))
                names.append(name)
                known.append((x, y, a))
        elif a == DIRECTORY:
            continue
        elif name in problems:
            records.append(Difference(ERROR, path, problems[name]))
        else:  # symlinks (targets in the shape) and special files (their kind)
            records.append(True if a == b else Difference(DIFFER, path, "symlink targets differ"))
    return records, names, known, hits


__all__ = ["FAILED", "pair_records", "verify_trees"]


def report_records(session, records, diffs: dict, reldir: str, names) -> None:
    """A directory's outcomes in march order: True (identical), a Difference found by the march, or
    the index of a hashed file, a difference when ``diffs`` ({index: (kind, detail)}) holds it."""
    report = session.report
    for record in records:
        if record is True:
            report.identical += 1
        elif type(record) is Difference:
            session.difference(*record)
        elif record in diffs:
            session.difference(diffs[record][0], relpath(reldir, names[record]), diffs[record][1])
        else:
            report.identical += 1
