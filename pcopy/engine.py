"""The only module that knows the whole flow of a copy.

    walk(SRC) ─► plan_directory ─► batches ─► BoundedPool ─► fsops.run_batch (worker)
       │            │ results decided                              │ one Result
       │            │ without I/O (skips,                          │ per task
       │            ▼ conflicts)                                   ▼
       │        Consumer ◄─────────────────────────────────────────┘
       │          ├─► Report (counts, failures)   ├─► manifest lines (streamed)
       │          └─► progress counters           └─► on_result callback (-v)
       ▼
    mkdir in DST as directories are found (parents first); their modes and
    times are set at the very end, deepest first, after their contents.

Data flows one way. The walker runs in this process and is pulled only when
the pool has a free slot, so at most ``max_in_flight`` batches exist beyond
the directory being planned: memory is flat for any tree size.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import secrets
import signal
import stat
import threading
import time
from typing import Callable, Optional

from . import fsops, walk
from .errors import Interrupted, PcopyError, describe
from .hashing import ManifestWriter
from .model import (
    COPIED,
    COPY,
    DEFERRED,
    DIR,
    FAILED,
    FILE,
    SKIPPED,
    Batch,
    Options,
    Report,
    Result,
    Task,
    relpath_join,
)
from .plan import batches, plan_directory
from .pool import BoundedPool, make_backend
from .progress import Counters

ABORT_GRACE = 1.5  # seconds in-flight work may take to stop after Ctrl-C


class Consumer:
    """The single place results go: report, progress, manifest, callback."""

    def __init__(self, report: Report, counters: Counters, manifest: Optional[ManifestWriter],
                 on_result: Optional[Callable]) -> None:
        self.report = report
        self.counters = counters
        self.manifest = manifest
        self.on_result = on_result

    def add(self, result: Result) -> None:
        self.add_many((result,))

    def add_many(self, results) -> None:
        """Record a batch of results (one call per batch keeps the parent's per-file cost low)."""
        report, counters = self.report, self.counters
        nbytes = 0
        for result in results:
            status = result.status
            if status == COPIED:
                report.copied += 1
                nbytes += result.size
            elif status == SKIPPED:
                report.skipped += 1
            else:
                report.failed += 1
                report.failures.append(result)
                counters.failed += 1
        report.bytes_copied += nbytes
        counters.files_done += len(results)
        counters.bytes_done += nbytes
        if report.results is not None:
            report.results.extend(results)
        if self.manifest is not None:
            self.manifest.add_many(results)
        if self.on_result is not None:
            for result in results:
                self.on_result(result)


class SignalGuard:
    """Turns SIGINT/SIGTERM into a flag the main loop checks (main thread only)."""

    def __init__(self, stop_event: Optional[threading.Event] = None) -> None:
        self.signum: Optional[int] = None
        self.stop_event = stop_event
        self._saved: dict = {}

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    def check(self) -> None:
        if self.signum is None and self.stop_event is not None and self.stop_event.is_set():
            self.signum = signal.SIGINT
        if self.signum is not None:
            raise Interrupted(self.signum)


def preflight(src: str, dst: str) -> bool:
    """Refuse impossible runs before touching anything; create DST.

    Returns True when DST was created by this call (so it starts empty).
    """
    try:
        src_stat = os.stat(src)
    except OSError as exc:
        raise PcopyError(f"{src}: cannot read source: {describe(exc)}") from None
    if not stat.S_ISDIR(src_stat.st_mode):
        raise PcopyError(f"{src}: source is not a directory")
    real_src, real_dst = os.path.realpath(src), os.path.realpath(dst)
    if real_src == real_dst:
        raise PcopyError(f"{dst}: source and destination are the same directory")
    if real_dst.startswith(real_src.rstrip(os.sep) + os.sep):
        raise PcopyError(f"{dst}: destination is inside the source")
    if os.path.lexists(dst):
        if not os.path.isdir(dst):
            raise PcopyError(f"{dst}: destination exists and is not a directory")
        return False
    try:
        os.makedirs(dst, 0o700)
    except OSError as exc:
        raise PcopyError(f"{dst}: cannot create destination: {describe(exc)}") from None
    return True


def _dst_entries(options: Options, reldir: str) -> dict:
    """What DST already holds in one directory (empty when it does not exist)."""
    try:
        fd = fsops.open_dir_beneath(options.dst, reldir)
    except OSError:
        return {}  # missing, or not a directory: the workers report the latter
    try:
        return {e.name: e for e in walk.scan_dir(fd)}
    except OSError:
        return {}
    finally:
        os.close(fd)


class Run:
    """One copy: walks, plans, feeds the pool and records every result."""

    def __init__(self, options: Options, consumer: Consumer, dst_is_new: bool, check: Callable) -> None:
        self.options = options
        self.consumer = consumer
        self.check = check
        self.dirs: list = []  # (reldir, mode, atime_ns, mtime_ns), parents before children
        self._fresh = {""} if dst_is_new else set()  # DST dirs created by us: known empty

    def produce(self):
        """Yield batches for the pool; hand no-I/O results straight to the consumer."""
        options, consumer = self.options, self.consumer
        needs_stat = self._fresh.__contains__
        for listing in walk.walk(options.src, options.follow_symlinks, lambda d: not needs_stat(d)):
            self.check()
            reldir = listing.reldir
            if listing.error is not None:
                consumer.add(Result(reldir or ".", FAILED, DIR, 0, None,
                                    f"cannot read directory: {describe(listing.error)}"))
                continue
            if reldir in self._fresh:
                self._fresh.discard(reldir)
                existing = {}
            else:
                existing = _dst_entries(options, reldir)
            plan = plan_directory(reldir, listing.entries, existing, options)
            consumer.counters.discovered(len(plan.tasks) + len(plan.results),
                                         sum(t.size for t in plan.tasks if t.size > 0))
            if plan.results:
                consumer.add_many(plan.results)
            for entry in plan.subdirs:
                self._make_dir(relpath_join(reldir, entry.name), entry)
            yield from batches(reldir, plan.tasks, options.batch_files, options.batch_bytes)
        self.consumer.counters.walk_done = True

    def _make_dir(self, reldir: str, entry) -> None:
        try:
            if fsops.make_dir_beneath(self.options.dst, reldir):
                self._fresh.add(reldir)
        except OSError as exc:
            self.consumer.add(Result(reldir, FAILED, DIR, 0, None,
                                     f"cannot create directory: {describe(exc)}"))
            return
        self.consumer.report.dirs += 1
        self.dirs.append((reldir, entry.mode, entry.atime_ns, entry.mtime_ns))

    def consume(self, batch, results, exc, resubmit: Callable) -> None:
        if exc is not None:
            for task in batch.tasks:
                self.consumer.add(Result(relpath_join(batch.reldir, task.name), FAILED, FILE, 0, None,
                                         f"worker failed: {describe(exc)}"))
            return
        if any(r.status == DEFERRED for r in results):
            for result in results:
                if result.status == DEFERRED:
                    name = result.relpath[len(batch.reldir) + 1:] if batch.reldir else result.relpath
                    resubmit(Batch(batch.reldir, (Task(COPY, name, result.size),)))
            results = [r for r in results if r.status != DEFERRED]
        self.consumer.add_many(results)

    def finish_dirs(self, root_stat: os.stat_result) -> None:
        """Set directory modes and times after their contents, deepest first."""
        todo = reversed(self.dirs)
        root = [("", root_stat.st_mode, root_stat.st_atime_ns, root_stat.st_mtime_ns)]
        for reldir, mode, atime_ns, mtime_ns in [*todo, *root]:
            try:
                fsops.set_dir_metadata(self.options.dst, reldir, mode, atime_ns, mtime_ns)
            except OSError as exc:
                self.consumer.add(Result(reldir or ".", FAILED, DIR, 0, None,
                                         f"cannot set directory metadata: {describe(exc)}"))


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def copy_tree(options: Options, *, jobs: Optional[int] = None, backend: str = "process",
              counters: Optional[Counters] = None, manifest_path: Optional[str] = None,
              keep_results: bool = False, on_result: Optional[Callable] = None,
              stop_event: Optional[threading.Event] = None, scheduler=None) -> Report:
    """Copy options.src into options.dst; see the module docstring for the flow.

    ``scheduler``: run the workers on the cluster at that address instead of
    locally (``jobs`` then defaults to the cluster's size).
    """
    started = time.monotonic()
    jobs = jobs or (None if scheduler is not None else default_jobs())
    counters = counters if counters is not None else Counters()
    dst_is_new = preflight(options.src, options.dst)
    options = _with_token(options)
    if scheduler is not None:  # remote workers do not share our working directory
        options = dataclasses.replace(options, src=os.path.abspath(options.src), dst=os.path.abspath(options.dst))
    root_stat = os.stat(options.src)
    report = Report(results=[] if keep_results else None)
    manifest = ManifestWriter(manifest_path) if manifest_path else None
    try:  # before the signal guard: connecting to a scheduler can take a while
        workers = make_backend(backend, jobs, fsops.worker_init, scheduler=scheduler,
                               roots=(options.src, options.dst))
    except BaseException:
        if manifest is not None:
            manifest.discard()
        raise
    with SignalGuard(stop_event) as guard:
        consumer = Consumer(report, counters, manifest, on_result)
        run = Run(options, consumer, dst_is_new, guard.check)
        pool = BoundedPool(workers, max_in_flight=workers.jobs * 4)
        counters.start()
        try:
            worker = functools.partial(fsops.run_batch, options)
            for batch, results, exc in pool.map_unordered(worker, run.produce(), guard.check):
                run.consume(batch, results, exc, pool.push)
            lost = pool.close()
            if lost:  # a worker died mid-batch: its batches were rerun, its temp files stayed
                fsops.remove_temp_files(options.dst, {b.reldir for b in lost}, options.token)
            guard.check()
        except BaseException:
            in_flight = pool.abort(ABORT_GRACE)
            fsops.remove_temp_files(options.dst, {b.reldir for b in in_flight}, options.token)
            counters.close()
            if manifest is not None:
                manifest.discard()
            raise
        run.finish_dirs(root_stat)
        counters.close()
    if manifest is not None:
        manifest.close()
    report.seconds = time.monotonic() - started
    return report


def _with_token(options: Options) -> Options:
    """Give the run a random token that names (and later finds) its temp files."""
    return dataclasses.replace(options, token=secrets.token_hex(4))
