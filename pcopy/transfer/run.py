"""One copy or sync: march SRC and DST, plan each directory, feed batches to the pool, take results.

    March ─► Pair(reldir, SRC listing, DST listing) ─► plan_directory ─► batches ─► pool
                 │                                      │ results decided without I/O
                 │ mkdir / replace in DST (parents      ▼
                 │ first), stale temps removed       Consumer ◄── results from the workers
                 ▼
    remembered for the end (``finish``): hard links to make, deletions, directories whose
    metadata must be set.

The planner never touches the disk; this module does the parent's few DST
operations (all beneath the root: ``fs.beneath``).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from ..errors import describe, is_disk_full
from ..fs import beneath, temps
from ..fs.backup import Backups
from ..fs.march import March, Pair, read_beneath
from ..model.batching import Bundle, Bundler, batches, single
from ..model.entries import ATTRS, CHECKSUM, DIR, FILE, LINK, LINKDEST, SYMLINK, Batch, entry_from_stat, relpath_join
from ..model.results import (
    COPIED,
    CREATED,
    DEFERRED,
    DELETED,
    DISK_FULL,
    FAILED,
    LINKED,
    REPLACED,
    SAME_CONTENT,
    SKIPPED,
    UNCHANGED,
    UPDATED,
    Result,
    failure,
)
from ..options import Options
from ..runtime import worker as runtime_worker
from ..runtime.process import WorkerDied
from .consumer import Consumer
from .plan import DELETING, NEW_DIR, hardlink_names, plan_directory
from .ranges import Piece, Splitter

ANCHOR_OK = (COPIED, LINKED, UPDATED)  # a first name of a hard-link group written (or kept) in this run


def anchor_ok(result: Result) -> bool:
    """-H: may the other names of a group link to this first name's DST file (written or kept in this run)?"""
    return result.status in ANCHOR_OK or (result.status == SKIPPED and result.reason in (UNCHANGED, SAME_CONTENT))


class Run:
    """State of one copy or sync between the walk and ``finish``."""

    def __init__(self, options: Options, consumer: Consumer, dst_is_new: bool, check: Callable,
                 keep: Optional[Callable] = None, targets: Optional[list] = None,
                 hidden: frozenset = frozenset(), single: Optional[tuple] = None) -> None:
        self.options = options
        self.targets = targets if targets is not None else [("", True)]
        self.consumer = consumer
        self.check = check
        self.keep = keep  # the source-side filter
        self.dst_keep = _protect_backups(options, None if options.delete_excluded else keep)
        self.hidden = hidden  # DST relpaths the run must leave alone (its own manifest)
        self.march = March(options.src, options.dst, follow_symlinks=options.follow_symlinks, keep=keep,
                           dst_keep=self.dst_keep, dst_exists=not dst_is_new,
                           need_stat=options.hard_links or bool(options.link_dest) or options.min_size >= 0
                           or options.max_size >= 0)
        self.single = single  # (source name, DST name): one file of SRC's directory, not a tree
        # DST dirs made or found, parents first: their metadata is set at the end
        self.dirs: list = [] if single is not None else [""]
        # the parent's open directories (mkdir, deletions, directory metadata): fs.beneath.DirCache
        self.src_dirs = beneath.DirCache(options.src, options.follow_symlinks)
        self.dst_dirs = beneath.DirCache(options.dst)
        self.new_dirs: set = {""} if dst_is_new else set()  # made by this run: itemized as cd+++++++++
        self.hardlinks: list = []  # (reldir, Task) to link once every first name is copied
        self.deletions: list = []  # (relpath, kind), children before their parents
        self.broken_dirs: dict = {}  # SRC reldir -> why DST has no usable directory there
        self.unreadable: set = set()  # SRC dirs that could not be listed
        self.first_names: dict = {}  # (dev, ino) -> relpath of its first name (-H)
        self.anchors: set = set()  # first names whose outcome is still to come
        self.bad_anchors: set = set()  # first names that were not written (their other names must not link)
        self.stale_removed = 0  # temp files of killed runs cleaned up
        self.disk_full = False  # DST ran out of space: stop handing out work
        self.pending_dirs: dict = {}  # -m: new DST dirs made only once something is put in them
        self.ranges = Splitter(options, self.src_dirs, self.dst_dirs, consumer.counters)  # big files, split
        self.root_dev = -1  # -x: the file system SRC is on
        if options.one_file_system and single is None:
            try:
                self.root_dev = os.stat(options.src).st_dev
            except OSError:
                pass

    def start_lister(self) -> None:
        """A whole-tree run into an existing DST reads DST in a helper process (``fs.march``)."""
        if self.targets == [("", True)]:
            self.march.start_lister()

    def close(self) -> None:
        self.march.close()

    def close_dirs(self) -> None:
        """Close the run's directory fds, the parent's and this thread's worker caches (a batch can run
        here: the hard-link fallback, the thread backend), so DST can be unmounted once the run returns."""
        self.ranges.discard()
        self.src_dirs.close()
        self.dst_dirs.close()
        runtime_worker.drop_dir_caches()

    # ----------------------------------------------------------------- producing batches

    def produce(self):
        """Yield bundles of batches for the pool (``model.batching.Bundler``); a big file's pieces instead
        of its bundle (``transfer.ranges``)."""
        return self.ranges.split_all(self._bundles())

    def _bundles(self):
        scale = self.options.bundle_scale
        bundler = Bundler(self.options.batch_files * scale, self.options.batch_bytes * scale)
        for batch in self._batches():
            yield from bundler.add(batch)
        if not self.disk_full:  # a full DST: the rest is not attempted
            yield from bundler.flush()

    def _batches(self):
        """Yield batches; hand no-I/O results straight to the consumer."""
        if self.single is not None:
            yield from self._produce_single()
            self.consumer.counters.walk_done = True
            return
        for start, recursive in self.targets:
            if start and not self._enter_target(start):
                continue
            for pair in self.march.pairs(start, recursive):
                self.check()
                if self.disk_full:
                    return
                yield from self._plan_pair(pair)
        self.consumer.counters.walk_done = True
        self.close()

    def _enter_target(self, start: str) -> bool:
        """Targeted runs (watch): skip a vanished or excluded start, make its DST parents."""
        if self.keep is not None and not self.keep(start, True):
            return False
        try:  # as the worker opens it: a start reached through a symlink is not walked (unless -L)
            os.close(beneath.open_dir_beneath(self.options.src, start, self.options.follow_symlinks))
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

    def _plan_pair(self, pair: Pair):
        options, consumer = self.options, self.consumer
        reldir, listing = pair.reldir, pair.src
        if listing.error is not None:
            self.unreadable.add(reldir)
            consumer.add(failure(reldir or ".", DIR, f"cannot read directory: {describe(listing.error)}"))
            return
        if listing.entry_errors:  # source entries the walk found: counted as files
            consumer.counters.discovered(len(listing.entry_errors), 0)
            consumer.add_many([failure(relpath_join(reldir, name), FILE, f"source: cannot stat: {describe(exc)}")
                               for name, exc in listing.entry_errors])
        if pair.dst_entry_errors:
            consumer.add_many([failure(relpath_join(reldir, name), FILE, f"destination: cannot stat: {describe(exc)}")
                               for name, exc in pair.dst_entry_errors], source=False)
        broken = self.broken_dirs.get(reldir)
        if broken is None and pair.dst_error is not None:
            broken = f"destination directory: cannot read: {describe(pair.dst_error)}"
            consumer.add(failure(reldir or ".", DIR, broken))
        if broken is not None:
            self._fail_below(reldir, listing.entries, broken)
            return
        existing = pair.dst or {}
        if existing and any(map(temps.is_temp_name, existing)):
            existing = self._clean_stale_temps(reldir, existing)
        entries = listing.entries
        if self.hidden:
            existing = {n: e for n, e in existing.items() if relpath_join(reldir, n) not in self.hidden}
            entries = [e for e in entries if relpath_join(reldir, e.name) not in self.hidden]
        consumer.report.look_at(entries)
        if not reldir:
            consumer.report.listed["dir"] += 1  # SRC itself, as rsync counts "."
        link_dest = tuple((root, read_beneath(root, reldir)[0] or {}) for root in options.link_dest)
        others, firsts = self._hardlink_names(reldir, entries)
        plan = plan_directory(reldir, entries, existing, options, link_dest, others, consumer.wants_each)
        consumer.counters.discovered(  # files, not directories: what Report.count counts as done
            len(plan.tasks) + sum(1 for r in plan.results if r.kind != DIR) + plan.unchanged + len(plan.hardlinks),
            sum(t.size for t in plan.tasks if t.size > 0))
        if plan.results:
            consumer.add_many(plan.results)
            for result in plan.results:
                if result.status == FAILED and result.kind == DIR:  # cannot be made: nothing below can be copied
                    self.broken_dirs[result.relpath] = f"destination directory: {result.message}"
                elif result.status == FAILED and firsts and result.relpath.rpartition(os.sep)[2] in firsts:
                    self.bad_anchors.add(result.relpath)
        if plan.unchanged:
            consumer.add_unchanged(plan.unchanged)
        tasks, hardlinks, subdirs = plan.tasks, plan.hardlinks, plan.subdirs
        if plan.replace:
            stuck = self._replace(reldir, plan.replace, {e.name: e.kind for e in entries}, firsts)
            if stuck:  # the DST entry in the way stays: its source entry failed, not attempted
                tasks = [t for t in tasks if t.name not in stuck]
                hardlinks = [t for t in hardlinks if t.name not in stuck]
                subdirs = [(e, why) for e, why in subdirs if e.name not in stuck]
        if plan.prune:
            self.march.prune.update(relpath_join(reldir, name) for name in plan.prune)
        for entry, why in subdirs:
            relpath = relpath_join(reldir, entry.name)
            self._make_dir(relpath, why)
            if self.root_dev >= 0 and entry.dev and entry.dev != self.root_dev:
                self.march.prune.add(relpath)  # -x: a mount point is copied, not what is mounted there
        for entry in plan.deletions:
            self._plan_deletion(relpath_join(reldir, entry.name), entry)
        self.hardlinks.extend((reldir, task) for task in hardlinks)
        if firsts:
            self.anchors.update(relpath_join(reldir, t.name) for t in tasks if t.name in firsts)
        if tasks and self.pending_dirs:
            self.materialize(reldir)
        if options.dry_run:  # report what would be done; only content checks need workers
            done_as = {LINKDEST: LINKED, ATTRS: UPDATED}
            consumer.add_many([Result(relpath_join(reldir, t.name), done_as.get(t.action, COPIED),
                                      SYMLINK if t.action == LINK else FILE, max(t.size, 0), None, t.why,
                                      "", t.source if t.action == LINKDEST else None)
                               for t in tasks if not _needs_worker(t)])
            tasks = [t for t in tasks if _needs_worker(t)]
        yield from batches(reldir, tasks, options.batch_files, options.batch_bytes)

    def _produce_single(self):
        """One file: planned like an entry of a directory, under its DST name; the task keeps the SRC name."""
        options = self.options
        src_name, dst_name = self.single
        try:
            st = _stat_in(options.src, src_name, options.follow_symlinks)
        except OSError as exc:
            self.consumer.add(failure(dst_name, FILE, f"source: {describe(exc)}"))
            return
        entry = entry_from_stat(dst_name, st)
        existing = read_beneath(options.dst, "")[0] or {}
        existing = {dst_name: existing[dst_name]} if dst_name in existing else {}
        self.consumer.report.look_at([entry])
        plan = plan_directory("", [entry], existing, options, (), {}, self.consumer.wants_each)
        self.consumer.counters.discovered(len(plan.tasks) + len(plan.results) + plan.unchanged,
                                          sum(t.size for t in plan.tasks if t.size > 0))
        if plan.results:
            self.consumer.add_many(plan.results)
        if plan.unchanged:
            self.consumer.add_unchanged(plan.unchanged)
        for name in plan.replace:
            self._replace("", [name], {name: entry.kind}, ())
        tasks = [t._replace(source=src_name) if src_name != dst_name else t for t in plan.tasks]
        if options.dry_run:
            self.consumer.add_many([Result(t.name, UPDATED if t.action == ATTRS else COPIED,
                                           SYMLINK if t.action == LINK else FILE, max(t.size, 0), None, t.why)
                                    for t in tasks if not _needs_worker(t)])
            tasks = [t for t in tasks if _needs_worker(t)]
        yield from batches("", tasks, options.batch_files, options.batch_bytes)

    def _fail_below(self, reldir: str, entries: list, why: str) -> None:
        """DST has no usable directory here: every entry fails with the reason, subdirectories too."""
        results = []
        _, firsts = self._hardlink_names(reldir, entries)
        for entry in entries:
            relpath = relpath_join(reldir, entry.name)
            if entry.kind == DIR:
                self.broken_dirs[relpath] = why
            elif entry.name in firsts:
                self.bad_anchors.add(relpath)
            results.append(failure(relpath, entry.kind, why))
        self.consumer.counters.discovered(sum(1 for e in entries if e.kind != DIR), 0)
        self.consumer.add_many(results)
        self.broken_dirs.pop(reldir, None)

    def _clean_stale_temps(self, reldir: str, existing: dict) -> dict:
        """Remove temp files that killed runs left behind; hide every temp file from the plan."""
        kept = {}
        for name, entry in existing.items():
            if not temps.is_temp_name(name):
                kept[name] = entry
            elif not self.options.dry_run and (temps.is_stale_temp(name) or (
                    temps.is_partial_name(name) and not self.options.partial)):
                try:
                    beneath.remove_beneath(self.options.dst, relpath_join(reldir, name), False)
                    self.stale_removed += 1
                except OSError:
                    pass
        return kept

    def _hardlink_names(self, reldir: str, entries: list) -> tuple:
        """-H: ({name: first name's relpath} of names whose inode was seen before, {names that are first})."""
        if not self.options.hard_links:
            return {}, ()
        return hardlink_names(self.first_names, reldir, entries)

    def _replace(self, reldir: str, names: list, kinds: dict, firsts) -> set:
        """Remove DST entries of another kind (sync); returns the names whose entry could not be removed."""
        stuck = set()
        for name in names:
            relpath = relpath_join(reldir, name)
            if self.options.dry_run:
                self.consumer.add(Result(relpath, DELETED, FILE, 0, None, DELETING, REPLACED))
                continue
            try:
                if self.options.backup:
                    self.dst_dirs.forget(relpath)
                    backups(self.options).move_out(self.options.dst, relpath)
                else:
                    beneath.remove_tree_beneath(self.options.dst, relpath, self.dst_dirs)
            except OSError as exc:
                why = f"cannot replace: {describe(exc)}"
                self.consumer.add(failure(relpath, kinds.get(name, FILE), why))
                stuck.add(name)
                if kinds.get(name) == DIR:
                    self.broken_dirs[relpath] = f"destination directory: {why}"
                elif firsts and name in firsts:
                    self.bad_anchors.add(relpath)
        return stuck

    def _make_dir(self, reldir: str, why: str) -> None:
        if why and self.options.prune_empty_dirs:
            self.pending_dirs[reldir] = why  # -m: created only when something goes into it
            return
        self._create_dir(reldir, why)

    def _create_dir(self, reldir: str, why: str) -> None:
        if self.options.dry_run:
            if why:
                self.consumer.add(Result(reldir, CREATED, DIR, 0, None, why))
            return
        try:
            if beneath.make_dir_beneath(self.options.dst, reldir, cache=self.dst_dirs):
                self.consumer.add(Result(reldir, CREATED, DIR, 0, None, NEW_DIR))
                self.new_dirs.add(reldir)
        except OSError as exc:
            message = f"cannot create directory: {describe(exc)}"
            self.consumer.add(failure(reldir, DIR, message, DISK_FULL if is_disk_full(exc) else "error"))
            self.broken_dirs[reldir] = f"destination directory: {message}"
            return
        self.dirs.append(reldir)

    def materialize(self, reldir: str) -> None:
        """-m: create the pending directories on the way to ``reldir`` (parents first)."""
        parts = reldir.split(os.sep) if reldir else []
        for i in range(1, len(parts) + 1):
            path = os.sep.join(parts[:i])
            why = self.pending_dirs.pop(path, None)
            if why is not None:
                self._create_dir(path, why)

    def _plan_deletion(self, relpath: str, entry) -> None:
        """Queue an extraneous DST entry (a directory with everything below it) for deletion."""
        found = [(relpath, entry.kind)]
        if entry.kind == DIR and not (self.options.backup and self.options.backup_dir is None):
            from ..fs.scan import walk

            for listing in walk(self.options.dst, keep=self.dst_keep, start=relpath):
                if listing.error is not None:
                    found.append((listing.reldir, "unreadable:" + describe(listing.error)))
                    continue
                found.extend((relpath_join(listing.reldir, e.name), e.kind) for e in listing.entries)
        self.deletions.extend(reversed(found))

    # ----------------------------------------------------------------- taking results

    def consume(self, bundle: Bundle, results, exc, resubmit: Callable) -> None:
        """A bundle's results (one list per batch) or the exception that lost them all."""
        if isinstance(bundle, Piece):  # a part of a big file: the file's results come with its last piece
            self._consume_batch(bundle.batch, self.ranges.consume(bundle, results, exc, resubmit), None, resubmit)
            return
        resubmit = self.ranges.resubmitter(resubmit)  # a big file handed back is split like new work
        if isinstance(exc, WorkerDied) and sum(len(b.tasks) for b in bundle) > 1:
            # its worker died twice (the pool ran it once more): each file again on its own, so a file
            # that kills its worker fails alone and the bundle's other files are copied
            for batch in bundle:
                for task in batch.tasks:
                    resubmit(single(Batch(batch.reldir, (task,))))
            return
        for i, batch in enumerate(bundle):
            self._consume_batch(batch, results[i] if exc is None else None, exc, resubmit)

    def _consume_batch(self, batch: Batch, results, exc, resubmit: Callable) -> None:
        if exc is not None:
            results = [failure(relpath_join(batch.reldir, t.name), SYMLINK if t.action == LINK else FILE,
                               f"worker failed: {describe(exc)}") for t in batch.tasks]
        elif any(r.status == DEFERRED for r in results):
            by_name = {t.name: t for t in batch.tasks}
            for result in results:
                if result.status == DEFERRED:
                    name = result.relpath[len(batch.reldir) + 1:] if batch.reldir else result.relpath
                    resubmit(single(Batch(batch.reldir, (by_name[name]._replace(size=result.size),))))
            results = [r for r in results if r.status != DEFERRED]
        if self.anchors:
            for result in results:
                if result.relpath in self.anchors:
                    self.anchors.discard(result.relpath)
                    if not anchor_ok(result):
                        self.bad_anchors.add(result.relpath)
        if not self.disk_full and any(r.reason == DISK_FULL for r in results):
            self.disk_full = True
            self.consumer.report.warnings.append(
                "the destination is full: pcopy stopped handing out work (files in flight were finished or "
                "failed, the rest was not attempted); free some space and run again to complete")
        self.consumer.add_many(results)


def _stat_in(root: str, name: str, follow_symlinks: bool) -> os.stat_result:
    with beneath.DirFd(root, "") as fd:
        return os.stat(name, dir_fd=fd, follow_symlinks=follow_symlinks)


def _protect_backups(options: Options, keep: Optional[Callable]) -> Optional[Callable]:
    """DST entries the run must not see: excluded ones, and with --backup the backups it made
    (``NAME~``, or the --backup-dir inside DST), so a later --delete does not delete them (as rsync's
    implied ``P *~`` filter does)."""
    if not options.backup:
        return keep
    suffix = options.suffix if options.backup_dir is None else ""
    root = os.path.realpath(options.dst).rstrip(os.sep) + os.sep
    backup_rel = None
    if options.backup_dir is not None and os.path.realpath(options.backup_dir).startswith(root):
        backup_rel = os.path.relpath(os.path.realpath(options.backup_dir), root)

    def visible(relpath: str, is_dir: bool) -> bool:
        if keep is not None and not keep(relpath, is_dir):
            return False
        if suffix and not is_dir and relpath.endswith(suffix):
            return False
        return relpath != backup_rel
    return visible


def backups(options: Options) -> Backups:
    return Backups(options.backup_dir, options.suffix, options.token)


def _needs_worker(task) -> bool:
    """In a dry run: tasks whose outcome only reading can tell (-c, an attribute check)."""
    return task.action == CHECKSUM or (task.action == ATTRS and not task.why[2:].strip("."))
