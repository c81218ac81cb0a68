"""Shared machinery of hash and verify: units of work, the cache, the ordered pool run.

    parent: walk / march / manifest lines ─► Units (≤ one batch of one directory)
              │  cache.lookup (bulk, per unit): hits are filled in here
              ▼
            BoundedPool.map_ordered ─► worker.hash_batch (only units with misses;
              │                         no worker is started when everything hits)
              ▼
            finish(unit), in input order: output lines / differences, cache.put (batched)

The parent is the single consumer: it owns the cache, the report and the
order of the output. Workers only read and hash; a per-file failure is a result.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Iterable, Iterator, Optional

from ..content.cache import HashCache
from ..errors import describe
from ..runtime.pool import ABORT_GRACE, make_pool
from ..runtime.progress import Counters
from ..runtime.signals import SignalGuard
from .report import ERROR, Difference, IntegrityReport
from .worker import FAILED, HashJob, hash_batch


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
        self.todo: list = []

    def work(self):
        return (self.reldir, self.algo, tuple((s.side, s.name) for s in self.todo)) if self.todo else None


def key_of(entry) -> tuple:
    """The hash cache's key of a statted Entry."""
    return (entry.dev, entry.ino, entry.size, entry.mtime_ns, entry.ctime_ns)


def relpath(reldir: str, name: str) -> str:
    return name if not reldir else reldir + os.sep + name


def open_cache(cache, report: IntegrityReport, on_warning: Optional[Callable]) -> Optional[HashCache]:
    if cache is False or cache is None:
        return None

    def warn(message: str) -> None:
        report.warnings.append(message)
        if on_warning is not None:
            on_warning(message)
    return HashCache(None if cache is True else os.fspath(cache), warn)


class Session:
    """One hash or verify run: report, counters, cache, and the callbacks for differences."""

    def __init__(self, report: IntegrityReport, counters: Counters, cache: Optional[HashCache],
                 on_difference: Optional[Callable]) -> None:
        self.report = report
        self.counters = counters
        self.cache = cache if cache is not None and cache.enabled else None
        self.on_difference = on_difference
        self.guard: Optional[SignalGuard] = None  # the SignalGuard while the session runs

    def difference(self, kind: str, path: str, detail: str = "") -> None:
        diff = Difference(kind, path, detail)
        self.report.add(diff)
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
        """hash and verify -m: Slots filled by ``hash_batch``, then ``finish(unit)``."""
        def done(unit: Unit, results, exc) -> None:
            if unit.todo:
                self._apply(unit, results, exc)
            self._account(unit)
            finish(unit)
        self.run_units(units, functools.partial(hash_batch, job), done, jobs, backend, check)

    def run_units(self, units: Iterable, fn: Callable, done: Callable, jobs: Optional[int], backend: str,
                  check: Callable, more: Callable[[], Optional[Iterable]] = lambda: None) -> None:
        """Run ``fn(unit.work())`` in the pool for each unit (none when it is None); ``done(unit, result, exc)``
        in input order. ``more()``: units that ``done`` queued after the last was pulled (None: finished)."""
        pool = make_pool(backend, jobs, per_worker=2)
        stream: Optional[Iterable] = units
        try:
            while stream is not None:
                items = ((unit, unit.work()) for unit in stream)
                for unit, results, exc in pool.map_ordered(fn, items, check, window=pool.backend.jobs * 8):
                    done(unit, results, exc)
                stream = more()
            pool.close()
        except BaseException:
            pool.abort(ABORT_GRACE)
            raise
        finally:
            self.report.workers_started = pool.started
            self.counters.walk_done = True

    def _apply(self, unit: Unit, results, exc) -> None:
        if exc is not None:
            for slot in unit.todo:
                slot.error = (FAILED, f"worker failed: {describe(exc)}")
            return
        report = self.report
        for slot, (digest, size, key, error) in zip(unit.todo, results, strict=True):
            slot.error = error
            if error is not None:
                continue
            slot.digest, slot.size = digest, size
            report.hashed += 1
            report.bytes_hashed += size
            if self.cache is not None and key is not None and (slot.key is None or slot.key == key):
                self.cache.put(unit.algo, key, digest)

    def _account(self, unit: Unit) -> None:
        report, counters = self.report, self.counters
        done = [s for s in unit.slots if s.digest is not None]
        report.files += len(done)
        report.cache_hits += sum(1 for s in done if s.cached)
        counters.files_done += len(unit.slots)
        counters.bytes_done += sum(s.size for s in unit.todo if s.size > 0 and s.digest is not None)


__all__ = ["ERROR", "Session", "Slot", "Unit"]
