"""The only module that knows the whole flow of a copy or sync.

    walk(SRC) ─► plan_directory ◄── DST listing (lister: a helper process for an existing DST)
       │            │ results decided                              one Result
       │            │ without I/O (skips,  batches ─► BoundedPool ─► fsops.run_batch (worker)
       │            ▼ conflicts)                                     │
       │        Consumer ◄───────────────────────────────────────────┘
       │          ├─► Report (counts, failures)   ├─► manifest lines (streamed)
       │          └─► progress counters           └─► on_result callback (-v, --log-file)
       ▼
    mkdir in DST as directories are found (parents first). After the pool is
    drained: -H hard links, then --delete (refused past --max-delete, skipped
    after failures), then directory modes and times, deepest first.

Data flows one way. The walker runs in this process and is pulled only when
the pool has a free slot, so at most ``max_in_flight`` batches exist beyond
the directory being planned: memory is flat for any tree size. Watch mode
calls ``copy_tree`` with ``targets`` (directories to re-read) and its own pool.
"""

from __future__ import annotations

import errno
import functools
import operator
import os
import signal
import stat
import threading
import time
from typing import Callable, Optional

from . import fsops, walk
from .errors import DISK_FULL, Interrupted, PcopyError, describe
from .filters import make_filter
from .hashing import ManifestWriter
from .lister import Lister, entries_at
from .model import (
    ATTRS,
    CHECKSUM,
    COPIED,
    CREATED,
    DEFERRED,
    DELETED,
    DIR,
    FAILED,
    FILE,
    LINK,
    LINKDEST,
    LINKED,
    SKIPPED,
    SYMLINK,
    Batch,
    Options,
    Report,
    Result,
    relpath_join,
)
from .plan import DELETING, NEW_DIR, batches, plan_directory
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

    @property
    def wants_each(self) -> bool:
        """Whether every unchanged file needs a Result of its own (or only counting)."""
        return self.report.results is not None or self.on_result is not None

    def add(self, result: Result) -> None:
        self.add_many((result,))

    def add_unchanged(self, count: int) -> None:
        self.report.skipped += count
        self.counters.files_done += count

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
            elif status == LINKED:
                report.linked += 1
            elif status == DELETED:
                report.deleted += 1
            elif status == CREATED:
                report.dirs += 1
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


_is_temp_name = operator.methodcaller("startswith", fsops.TMP_PREFIX)


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


def preflight(src: str, dst: str, options: Options) -> bool:
    """Refuse impossible runs before touching anything; create DST.

    Returns True when DST did not exist (so it starts empty).
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
    if options.delete and real_src.startswith(real_dst.rstrip(os.sep) + os.sep):
        raise PcopyError(f"{src}: source is inside the destination; --delete would remove it")
    for root in options.link_dest:
        if not os.path.isdir(root):
            raise PcopyError(f"{root}: --link-dest directory does not exist")
    if os.path.lexists(dst):
        if not os.path.isdir(dst):
            raise PcopyError(f"{dst}: destination exists and is not a directory")
        return False
    if options.dry_run:
        return True
    try:
        os.makedirs(dst, 0o700)
    except OSError as exc:
        raise PcopyError(f"{dst}: cannot create destination: {describe(exc)}") from None
    return True


class Run:
    """One copy or sync: walks, plans, feeds the pool, then links, deletes, sets directory times."""

    def __init__(self, options: Options, consumer: Consumer, dst_is_new: bool, check: Callable,
                 keep: Optional[Callable] = None, targets: Optional[list] = None) -> None:
        self.options = options
        self.targets = targets if targets is not None else [("", True)]
        self.consumer = consumer
        self.check = check
        self.keep = keep  # the source-side filter
        self.dst_keep = None if options.delete_excluded else keep  # excluded DST entries are invisible
        self.dirs: list = [""]  # DST dirs made or found, parents first: their metadata is set at the end
        self.hardlinks: list = []  # (reldir, Task) to link once every first name is copied
        self.deletions: list = []  # (relpath, kind), children before their parents
        self._fresh = {""} if dst_is_new else set()  # DST dirs that are known to be empty
        self._first_names: dict = {}  # (dev, ino) -> relpath of its first name (-H)
        self._needs_stat = options.hard_links or bool(options.link_dest)
        self._in_dst = set() if dst_is_new else {""}  # SRC dirs that DST has as directories
        self._lister: Optional[Lister] = None
        self.stale_removed = 0  # temp files of killed runs cleaned up
        self.disk_full = False  # DST ran out of space: stop handing out work

    def start_lister(self) -> None:
        """A whole-tree run into an existing DST reads DST in a helper process (see lister)."""
        if self._in_dst and self.targets == [("", True)]:
            self._lister = Lister(self.options.dst, self.dst_keep)

    def produce(self):
        """Yield batches for the pool; hand no-I/O results straight to the consumer."""
        options = self.options
        fresh = self._fresh
        stat_files = (lambda d: True) if self._needs_stat else (lambda d: d not in fresh)
        for start, recursive in self.targets:
            if start and not self._enter_target(start):
                continue
            yield from self._produce_from(walk.walk(options.src, options.follow_symlinks, stat_files, self.keep,
                                                    start, recursive))
        self.consumer.counters.walk_done = True
        self.close()

    def close(self) -> None:
        if self._lister is not None:
            self._lister.close()
            self._lister = None

    def _enter_target(self, start: str) -> bool:
        """Targeted runs (watch): skip a vanished or excluded start, make its DST parents."""
        if self.keep is not None and not self.keep(start, True):
            return False
        try:  # as the worker opens it: a start reached through a symlink is not walked (unless -L)
            os.close(fsops.open_dir_beneath(self.options.src, start, self.options.follow_symlinks))
        except OSError:
            return False
        if self.options.dry_run:
            return True
        parts = start.split(os.sep)
        for i in range(1, len(parts) + 1):
            reldir = os.sep.join(parts[:i])
            if reldir not in self.dirs:
                self._make_dir(reldir, NEW_DIR)
        return True

    def _produce_from(self, listings):
        options, consumer, fresh = self.options, self.consumer, self._fresh
        for listing in listings:
            self.check()
            if self.disk_full:
                return
            reldir = listing.reldir
            if listing.error is not None:
                consumer.add(Result(reldir or ".", FAILED, DIR, 0, None,
                                    f"cannot read directory: {describe(listing.error)}"))
                continue
            if listing.entry_errors:
                consumer.add_many([Result(relpath_join(reldir, name), FAILED, FILE, 0, None,
                                          f"source: cannot stat: {describe(exc)}")
                                   for name, exc in listing.entry_errors])
            if reldir in fresh:
                fresh.discard(reldir)
                existing = {}
            elif reldir in self._in_dst and self._lister is not None:
                self._in_dst.discard(reldir)
                existing = self._lister.get(reldir)
            else:
                existing = entries_at(options.dst, reldir, self.dst_keep)
            if existing and any(map(_is_temp_name, existing)):
                existing = self._clean_stale_temps(reldir, existing)
            link_dest = tuple((root, entries_at(root, reldir)) for root in options.link_dest)
            plan = plan_directory(reldir, listing.entries, existing, options, link_dest,
                                  self._hardlink_names(reldir, listing.entries), consumer.wants_each)
            consumer.counters.discovered(len(plan.tasks) + len(plan.results) + plan.unchanged,
                                         sum(t.size for t in plan.tasks if t.size > 0))
            if plan.results:
                consumer.add_many(plan.results)
            if plan.unchanged:
                consumer.add_unchanged(plan.unchanged)
            for name in plan.replace:
                self._remove_for_replacement(relpath_join(reldir, name))
            for entry, why in plan.subdirs:
                self._make_dir(relpath_join(reldir, entry.name), why)
                if not why:
                    self._in_dst.add(relpath_join(reldir, entry.name))
            for entry in plan.deletions:
                self._plan_deletion(relpath_join(reldir, entry.name), entry)
            self.hardlinks.extend((reldir, task) for task in plan.hardlinks)
            tasks = plan.tasks
            if options.dry_run:  # report what would be done; only content checks need workers
                done_as = {LINKDEST: LINKED, ATTRS: SKIPPED}
                consumer.add_many([Result(relpath_join(reldir, t.name), done_as.get(t.action, COPIED),
                                          SYMLINK if t.action == LINK else FILE, max(t.size, 0), None, t.why)
                                   for t in tasks if t.action != CHECKSUM])
                tasks = [t for t in tasks if t.action == CHECKSUM]
            yield from batches(reldir, tasks, options.batch_files, options.batch_bytes)

    def _clean_stale_temps(self, reldir: str, existing: dict) -> dict:
        """Remove temp files that killed runs left behind; hide every temp file from the plan."""
        kept = {}
        for name, entry in existing.items():
            if not name.startswith(fsops.TMP_PREFIX):
                kept[name] = entry
            elif not self.options.dry_run and fsops.is_stale_temp(name):
                try:
                    fsops.remove_beneath(self.options.dst, relpath_join(reldir, name), False)
                    self.stale_removed += 1
                except OSError:
                    pass
        return kept

    def _hardlink_names(self, reldir: str, entries: list) -> dict:
        """-H: names in this directory whose inode was already seen under another name."""
        if not self.options.hard_links:
            return {}
        names = {}
        for e in entries:
            if e.kind == FILE and e.nlink > 1:
                first = self._first_names.setdefault((e.dev, e.ino), relpath_join(reldir, e.name))
                if first != relpath_join(reldir, e.name):
                    names[e.name] = first
        return names

    def _remove_for_replacement(self, relpath: str) -> None:
        if self.options.dry_run:
            self.consumer.add(Result(relpath, DELETED, FILE, 0, None, DELETING))
            return
        try:
            fsops.remove_tree_beneath(self.options.dst, relpath)
        except OSError as exc:
            self.consumer.add(Result(relpath, FAILED, FILE, 0, None, f"cannot replace: {describe(exc)}"))

    def _make_dir(self, reldir: str, why: str) -> None:
        if self.options.dry_run:
            if why:
                self._fresh.add(reldir)
                self.consumer.add(Result(reldir, CREATED, DIR, 0, None, why))
            return
        try:
            if fsops.make_dir_beneath(self.options.dst, reldir):
                self._fresh.add(reldir)
                self.consumer.add(Result(reldir, CREATED, DIR, 0, None, NEW_DIR))
        except OSError as exc:
            self.consumer.add(Result(reldir, FAILED, DIR, 0, None, f"cannot create directory: {describe(exc)}"))
            return
        self.dirs.append(reldir)

    def _plan_deletion(self, relpath: str, entry) -> None:
        """Queue an extraneous DST entry (a directory with everything below it) for deletion."""
        found = [(relpath, entry.kind)]
        if entry.kind == DIR:
            for listing in walk.walk(self.options.dst, keep=self.dst_keep, start=relpath):
                found.extend((relpath_join(listing.reldir, e.name), e.kind) for e in listing.entries)
        self.deletions.extend(reversed(found))

    def consume(self, batch, results, exc, resubmit: Callable) -> None:
        if exc is not None:
            for task in batch.tasks:
                self.consumer.add(Result(relpath_join(batch.reldir, task.name), FAILED, FILE, 0, None,
                                         f"worker failed: {describe(exc)}"))
            return
        if any(r.status == DEFERRED for r in results):
            by_name = {t.name: t for t in batch.tasks}
            for result in results:
                if result.status == DEFERRED:
                    name = result.relpath[len(batch.reldir) + 1:] if batch.reldir else result.relpath
                    task = by_name[name]
                    resubmit(Batch(batch.reldir, (task._replace(size=result.size),)))
            results = [r for r in results if r.status != DEFERRED]
        if not self.disk_full and any(r.status == FAILED and DISK_FULL in (r.message or "") for r in results):
            self.disk_full = True
            self.consumer.report.warnings.append(
                "the destination is full: pcopy stopped handing out work (files in flight were finished or "
                "failed, the rest was not attempted); free some space and run again to complete")
        self.consumer.add_many(results)

    def link_hardlinks(self) -> None:
        """-H: every first name is in place now, so the other names can be linked to it."""
        for reldir, task in self.hardlinks:
            self.check()
            if self.options.dry_run:
                self.consumer.add(Result(relpath_join(reldir, task.name), LINKED, FILE, 0, None,
                                         f"{task.why} => {task.source}"))
            else:
                self.consumer.add(fsops.make_hardlink(self.options, task, reldir))

    def delete_extraneous(self) -> Optional[str]:
        """--delete, after the copies: returns a fatal message instead of deleting too much."""
        options, report = self.options, self.consumer.report
        if not self.deletions:
            return None
        if options.max_delete is not None and len(self.deletions) > options.max_delete:
            return (f"{options.dst}: refusing to delete {len(self.deletions)} entries "
                    f"(more than --max-delete {options.max_delete}); nothing was deleted")
        if report.failed and not options.dry_run:
            report.warnings.append(f"{report.failed} failures: deletions skipped so nothing more is lost")
            return None
        for relpath, kind in self.deletions:
            self.check()
            if not options.dry_run:
                try:
                    fsops.remove_beneath(options.dst, relpath, kind == DIR)
                except OSError as exc:
                    if kind == DIR and exc.errno == errno.ENOTEMPTY:
                        report.warnings.append(f"{relpath}: not deleted: it holds excluded files")
                    else:
                        self.consumer.add(Result(relpath, FAILED, kind, 0, None, f"cannot delete: {describe(exc)}"))
                    continue
            self.consumer.add(Result(relpath, DELETED, kind, 0, None, DELETING))
        return None

    def finish_dirs(self) -> None:
        """Give DST directories their source's mode, owner and times, deepest first (after their contents)."""
        options = self.options
        for reldir in reversed(self.dirs):
            try:
                fsops.copy_dir_metadata(options.src, options.dst, reldir, options)
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
              stop_event: Optional[threading.Event] = None, targets: Optional[list] = None,
              pool: Optional[BoundedPool] = None, scheduler=None) -> Report:
    """Copy or sync options.src into options.dst; see the module docstring for the flow.

    ``targets``: [(reldir, recursive)] to re-read only those directories (watch
    mode); default the whole tree. ``pool``: a long-lived BoundedPool to reuse
    (the caller closes it); default a new one for this run. ``scheduler``: run
    the workers on the Dask cluster at that address (``jobs`` then defaults
    to the cluster's size).
    """
    started = time.monotonic()
    jobs = jobs or (None if scheduler is not None else default_jobs())
    counters = counters if counters is not None else Counters()
    keep = make_filter(options.filters)
    dst_is_new = preflight(options.src, options.dst, options)
    options = _with_token(options)
    if scheduler is not None:  # remote workers do not share our working directory
        options = options._replace(src=os.path.abspath(options.src), dst=os.path.abspath(options.dst))
    report = Report(results=[] if keep_results else None, dry_run=options.dry_run)
    manifest = ManifestWriter(manifest_path) if manifest_path else None
    own_pool = pool is None
    if own_pool:
        try:  # before the signal guard: connecting to a scheduler can take a while
            workers = make_backend(backend, jobs, fsops.worker_init, scheduler=scheduler,
                                   roots=(options.src, options.dst))
        except BaseException:
            if manifest is not None:
                manifest.discard()
            raise
        pool = BoundedPool(workers, max_in_flight=workers.jobs * 4)
    fatal = None
    with SignalGuard(stop_event) as guard:
        consumer = Consumer(report, counters, manifest, on_result)
        run = Run(options, consumer, dst_is_new, guard.check, keep, targets)
        run.start_lister()  # forks: before any thread of ours exists
        counters.start()
        try:
            worker = functools.partial(fsops.run_batch, options)
            for batch, results, exc in pool.map_unordered(worker, run.produce(), guard.check):
                run.consume(batch, results, exc, pool.push)
            lost = pool.take_lost()
            if own_pool:
                pool.close()
            if lost:  # a worker died mid-batch (its batches ran again): its temp files are garbage
                fsops.remove_temp_files(options.dst, {b.reldir for b in lost}, options.token)
            guard.check()
            run.link_hardlinks()
            fatal = run.delete_extraneous()
        except BaseException:
            run.close()
            in_flight = pool.abort(ABORT_GRACE)
            fsops.remove_temp_files(options.dst, {b.reldir for b in in_flight}, options.token)
            counters.close()
            if manifest is not None:
                manifest.discard()
            raise
        if manifest is not None:
            manifest.close()  # before directory times are set: the manifest may live in DST
            manifest = None
        if not options.dry_run:
            run.finish_dirs()
        report.stopped_early = run.disk_full
        if run.stale_removed:
            report.warnings.append(f"removed {run.stale_removed} temporary files left by an interrupted run")
        counters.close()
    if fatal:
        raise PcopyError(fatal)
    report.seconds = time.monotonic() - started
    return report


def _with_token(options: Options) -> Options:
    """Give the run a random token that names (and later finds) its temp files."""
    return options._replace(token=os.urandom(4).hex())
