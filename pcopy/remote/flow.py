"""A copy or sync with one end on another machine.

    SRC end ──listings──► march (walk order) ─► plan.plan_directory ─► batches ─► Streams (N ssh sessions)
    DST end ──listings──┘     │ mkdir / replace / stale temps on the DST end      │ sender reads + hashes,
                              ▼                                                   │ receiver writes + hashes
                    remembered: deletions, directory metadata                     ▼
                                                                        Consumer (report, -v, logs)
    finish: -H links, --delete (skipped after failures, refused past --max-delete), directory metadata.

The planner, the consumer, the walker, the sender's read loop and the receiver's write path are
the local copy's own; only where each runs differs. ``push``: SRC is here, DST remote.
"""

from __future__ import annotations

import os
import posixpath
import threading
import time
from collections import deque
from typing import Optional

from ..errors import PcopyError, describe
from ..fs import temps
from ..model.batching import batches
from ..model.entries import ATTRS, CHECKSUM, COPY, DIR, FILE, HASH, LINK, LINKDEST, Batch, Task, relpath_join
from ..model.results import (
    CREATED,
    DELETED,
    DISK_FULL,
    FAILED,
    LINK_IN_PLACE,
    LINKED,
    REPLACED,
    Report,
    Result,
    failure,
)
from ..options import Options
from ..runtime.progress import Counters
from ..runtime.signals import SignalGuard
from ..transfer import dirmeta
from ..transfer.consumer import Consumer
from ..transfer.plan import DELETING, NEW_DIR, NEW_FILE, hardlink_names, plan_directory
from ..transfer.run import anchor_ok
from .mover import Mover
from .protocol import result_in
from .sides import DstListings
from .streams import Streams, failed


def _parts(reldir: str) -> list:
    return reldir.split(os.sep) if reldir else []


class Flow:
    def __init__(self, options: Options, src, dst, push: bool, counters: Counters, on_result,
                 keep_results: bool, stop_event: Optional[threading.Event], manifest=None,
                 hidden: frozenset = frozenset(), single: Optional[tuple] = None) -> None:
        self.options = options
        self.src, self.dst, self.push = src, dst, push
        self.report = Report(results=[] if keep_results else None, dry_run=options.dry_run)
        self.consumer = Consumer(self.report, counters, manifest, on_result)  # manifest: DST's digests
        self.hidden = hidden  # DST relpaths the run leaves alone (its own manifest in a local DST)
        self.single = single  # (source name, DST name, SRC Entry named as in DST): one file (``targets``)
        self.alone = True  # the only run: it closes the manifest (before directory times) and the display
        self.drain_walk = False  # several SRCs: the DST walk's session serves the next run too
        self.pending: dict = {}  # -m: new DST dirs made only once something is put in them -> why
        self.root_meta = True  # DST root gets SRC's mode and times (not with --files-from without ".")
        self.stop_event = stop_event
        self.stop = threading.Event()
        self.dirs: list = []  # [reldir] whose metadata is set at the end, parents first
        self.new_dirs: set = set()  # made by this run (not itemized as changed)
        self.spec: dict = {}  # the receivers' options (client.receiver_spec)
        self.deletions: list = []  # [relpath, is_dir]
        self.broken: dict = {}  # SRC reldir -> why DST has nothing usable there
        self.dst_dirs: set = set()
        self.touched: set = set()  # DST dirs this run wrote into (its temp files are removed on a stop)
        self.disk_full = False  # DST ran out of space: the rest is not attempted
        self.making: set = set()  # DST dirs whose mkdir was posted: a batch into one makes it if it comes first
        self.landed: deque = deque()  # (reldirs, answer) of posted mkdirs, for ``_made``
        # -H, as transfer.run: first names by inode, the other names linked at the end (transfer.finish's rule:
        # a name whose first name was not written is copied instead, and the rest link to it)
        self.first_names: dict = {}
        self.hardlinks: list = []  # (reldir, Task(HARDLINK))
        self.anchors: set = set()  # first names whose outcome is still to come
        self.anchor_digests: dict = {}  # --manifest: first name -> its digest (its other names' line)
        self.bad_anchors: set = set()

    def run(self, sessions, streams_max: int, token: str, spec: dict, local_options: Optional[Options],
            dst_is_new: bool, compress: bool = False, shared=None, targets: Optional[list] = None) -> Report:
        """The whole tree, or (``targets``: [(reldir, recursive)], a watch batch; SRC is here) only those
        directories, through the same planner, streams and finish. ``sessions`` (transport.Sessions) opens
        the data sessions as the streams need them; the first stream moves its batches over ``shared``
        (the control session) when given."""
        options = self.options
        started = time.monotonic()
        self.spec = spec
        if dst_is_new:
            self.new_dirs.add("")
            self.report.created["dir"] += 1
        else:
            self.dst_dirs.add("")
        mover = Mover(self.push, self.src, self.dst, token, spec, local_options, options.follow_symlinks,
                      options.dry_run, self.stop, compress, self.making)
        streams = Streams(sessions.take, streams_max, mover, shared, sessions.give)
        counters = self.consumer.counters
        with SignalGuard(self.stop_event) as guard:
            if self.alone:  # several SRCs: the client starts and closes the display
                counters.start()
            try:
                with guard.interruptible():  # a signal ends even a read from a session at once
                    if targets is None and self.single is None:
                        dst_stream = self.dst.listings(False, filtered=False) if not dst_is_new else None
                        messages = self.src.listings(options.follow_symlinks, True, options.one_file_system)
                    elif targets is None:  # one file (remote.targets): its listing made by the client
                        single = self.single
                        dst_stream, messages = None, iter([("", [single[2]], None, ())])  # type: ignore[index]
                    else:
                        dst_stream, messages = None, self._targeted(targets)
                    listings = DstListings(self.dst, dst_stream)
                    for message in messages:
                        if self.disk_full:
                            break
                        for batch in self._plan(message, listings):
                            if not self.disk_full:
                                streams.put(batch, self._take, guard.check)
                    counters.walk_done = True
                    streams.drain(self._take, wait=True, check=guard.check)
                    self.dst.settle()
                    self._made()
                    self._link_hardlinks(mover, shared, sessions.take, guard.check)
                    self._delete()
                    if self.drain_walk:
                        listings.finish()  # the session carries the next SRC's walk (several SRCs)
                    if self.consumer.manifest is not None and self.alone:
                        self.consumer.manifest.close()  # before directory times: it may live in DST
                        self.consumer.manifest = None
                    if not options.dry_run:
                        self._finish_dirs()
            except BaseException:
                self.stop.set()
                sessions.kill()
                raise
            finally:
                streams.close()
                if self.alone:
                    counters.close()
        self.report.seconds = time.monotonic() - started
        return self.report

    # ----------------------------------------------------------------- planning

    def _plan(self, message: tuple, listings: DstListings):
        options, consumer = self.options, self.consumer
        self._made()
        reldir, entries, error, entry_errors = message
        if error is not None:
            consumer.add(failure(reldir or ".", DIR, f"cannot read directory: {describe(error)}"))
            return
        if entry_errors:
            consumer.add_many([failure(relpath_join(reldir, n), FILE, f"source: cannot stat: {describe(e)}")
                               for n, e in entry_errors])
        if any(reldir == b or reldir.startswith(b + os.sep) for b in self.broken):
            parent = next(b for b in self.broken if reldir == b or reldir.startswith(b + os.sep))
            consumer.add_many([failure(relpath_join(reldir, e.name), e.kind, self.broken[parent]) for e in entries])
            return
        existing: dict = {}
        if reldir in self.dst_dirs:
            found, dst_error, dst_errors = listings.get(reldir)
            if dst_error is not None:
                why = f"destination directory: cannot read: {describe(dst_error)}"
                consumer.add(failure(reldir or ".", DIR, why))
                self.broken[reldir] = why
                return
            existing = found or {}
            if self.single is not None:
                existing = {n: e for n, e in existing.items() if n == self.single[1]}
            if dst_errors:
                consumer.add_many([failure(relpath_join(reldir, n), FILE, f"destination: cannot stat: {describe(e)}")
                                   for n, e in dst_errors], source=False)
            keep = self.dst.keep if not options.delete_excluded else None
            if keep is not None:
                existing = {n: e for n, e in existing.items() if keep(relpath_join(reldir, n), e.kind == DIR)}
            if options.backup:  # the backups it made (NAME~, a --backup-dir inside DST): never deleted
                existing = {n: e for n, e in existing.items() if not self._is_backup(relpath_join(reldir, n), e.kind)}
            if self.src.marked and not options.delete_excluded:  # excluded for a marker in SRC: protected
                existing = {n: e for n, e in existing.items() if relpath_join(reldir, n) not in self.src.marked}
            stale = [n for n in existing if temps.is_temp_name(n)]
            if stale:
                if not options.dry_run:
                    removed = self.dst.remove_stale(reldir, stale, not options.partial)
                    if removed:
                        self.report.warnings.append(f"removed {removed} temporary files left by an interrupted run")
                existing = {n: e for n, e in existing.items() if n not in stale}
        if self.hidden:
            existing = {n: e for n, e in existing.items() if relpath_join(reldir, n) not in self.hidden}
            entries = [e for e in entries if relpath_join(reldir, e.name) not in self.hidden]
        consumer.report.look_at(entries)
        if not reldir and self.single is None:
            consumer.report.listed["dir"] += 1
            if self.root_meta:
                self._remember_dir("", self._root_entry())
        link_dest = tuple((root, self.dst.readdir_at(root, reldir)[0] or {}) for root in options.link_dest
                          if self.single is None)
        others, firsts = hardlink_names(self.first_names, reldir, entries) if options.hard_links else ({}, ())
        plan = plan_directory(reldir, entries, existing, options, link_dest, others, consumer.wants_each)
        consumer.counters.discovered(
            len(plan.tasks) + sum(1 for r in plan.results if r.kind != DIR) + plan.unchanged + len(plan.hardlinks),
            sum(t.size for t in plan.tasks if t.size > 0))
        if plan.results:
            consumer.add_many(plan.results)
            for result in plan.results:
                if result.status == FAILED and result.kind == DIR:
                    self.broken[result.relpath] = f"destination directory: {result.message}"
                elif result.status == FAILED and result.relpath.rpartition(os.sep)[2] in firsts:
                    self.bad_anchors.add(result.relpath)
        self.hardlinks.extend((reldir, task) for task in plan.hardlinks)
        if firsts:
            self.anchors.update(relpath_join(reldir, t.name) for t in plan.tasks if t.name in firsts)
        if plan.unchanged:
            consumer.add_unchanged(plan.unchanged)
        tasks = plan.tasks
        if plan.replace:
            tasks = self._replace(reldir, plan.replace, tasks)
        self._make_dirs(reldir, plan.subdirs, existing)
        if options.delete or options.delete_excluded:
            self.deletions.extend([relpath_join(reldir, e.name), e.kind == DIR] for e in plan.deletions)
        tasks = [t for t in tasks if t.action in (COPY, LINK, CHECKSUM, ATTRS, HASH, LINKDEST)]
        if self.single is not None and self.single[0] != self.single[1]:
            tasks = [t._replace(source=self.single[0]) for t in tasks]  # read under its SRC name
        if tasks:
            self.touched.add(reldir)
            if self.pending:
                self._materialize(reldir)
        yield from batches(reldir, tasks, options.batch_files, options.batch_bytes)

    def _is_backup(self, relpath: str, kind: str) -> bool:
        """As locally (transfer.run._protect_backups), with paths of the DST end."""
        options = self.options
        if options.backup_dir is None:
            return bool(options.suffix) and kind != DIR and relpath.endswith(options.suffix)
        root = posixpath.normpath(self.dst.root)
        return posixpath.normpath(options.backup_dir) == posixpath.join(root, relpath)

    def _targeted(self, targets: list):
        """SRC listings of a watch batch's directories. A start that vanished (or is excluded) is skipped,
        as the local engine does (its parent's re-read deletes it); its DST parents are made first."""
        for start, recursive in targets:
            if start:
                entry = self.src.dir_entry(start, self.options.follow_symlinks)
                if entry is None or (self.src.keep is not None and not self.src.keep(start, True)):
                    continue
                if not self._enter(start, entry):
                    continue
            yield from self.src.listings(self.options.follow_symlinks, start=start, recursive=recursive)

    def _enter(self, start: str, entry) -> bool:
        parts = _parts(start)
        chain = [os.sep.join(parts[:i]) for i in range(1, len(parts) + 1)]
        new = [d for d in chain if d not in self.dst_dirs]
        if new and not self.options.dry_run:
            for relpath, error in zip(new, self.dst.mkdirs(new), strict=True):
                if error:
                    message = f"cannot create directory: {error}"
                    self.consumer.add(failure(relpath, DIR, message))
                    self.broken[relpath] = f"destination directory: {message}"
                    return False
        self.dst_dirs.update(chain)
        self._remember_dir(start, entry)
        return True

    def _root_entry(self):
        return self.src.root_stat  # from the preflight: a session may be busy streaming the walk now

    def _remember_dir(self, relpath: str, entry) -> None:
        if entry is not None:
            self.dirs.append([relpath])

    def _replace(self, reldir: str, names: list, tasks: list) -> list:
        items: list = [[relpath_join(reldir, n), True, True] for n in names]  # with --backup: kept whole
        if self.options.dry_run:
            self.consumer.add_many([Result(p, DELETED, FILE, 0, None, DELETING, REPLACED) for p, *_ in items])
            return tasks
        stuck = set()
        for item in items:
            errors = [f for f in self.dst.delete([item], False, False) if f[2]]
            if errors:
                self.consumer.add(failure(item[0], errors[-1][1], f"cannot replace: {errors[-1][2]}"))
                stuck.add(item[0].rpartition(os.sep)[2])
        return [t for t in tasks if t.name not in stuck]

    def _make_dirs(self, reldir: str, subdirs: list, existing: dict) -> None:
        made = []
        for entry, why in subdirs:
            relpath = relpath_join(reldir, entry.name)
            old = existing.get(entry.name)
            if old is not None and old.kind == DIR:
                self.dst_dirs.add(relpath)
            self._remember_dir(relpath, entry)
            if why and self.options.prune_empty_dirs:
                self.pending[relpath] = why  # -m: made only once something goes into it
                continue
            if self.options.dry_run:
                if why:
                    self.consumer.add(Result(relpath, CREATED, DIR, 0, None, why))
                continue
            if old is None or old.kind != DIR:
                made.append(relpath)
        self._mkdirs(made)

    def _materialize(self, reldir: str) -> None:
        """-m: make the pending directories on the way to ``reldir`` (parents first)."""
        parts = _parts(reldir)
        chain = [p for p in (os.sep.join(parts[:i]) for i in range(1, len(parts) + 1)) if p in self.pending]
        whys = [self.pending.pop(p) for p in chain]
        if self.options.dry_run:
            self.consumer.add_many([Result(p, CREATED, DIR, 0, None, why) for p, why in zip(chain, whys, strict=True)])
        else:
            self._mkdirs(chain)

    def _mkdirs(self, made: list) -> None:
        if made and self.dst.post_mkdirs is not None:  # a remote DST: no round trip per directory
            self.making.update(made)
            self.dst.post_mkdirs(made, lambda reldirs, answer: self.landed.append((reldirs, answer)))
        elif made:
            self._dirs_made(made, self.dst.mkdirs(made))

    def _made(self) -> None:
        """The answers of the mkdirs posted so far (``_mkdirs``)."""
        while self.landed:
            reldirs, answer = self.landed.popleft()
            errors = answer.get("errors") if answer.get("ok") else None
            self._dirs_made(reldirs, errors or [answer.get("error") or "refused by the remote"] * len(reldirs))

    def _dirs_made(self, made: list, errors: list) -> None:
        if made:
            for relpath, error in zip(made, errors, strict=True):
                if error:
                    message = f"cannot create directory: {error}"
                    self.consumer.add(failure(relpath, DIR, message))
                    self.broken[relpath] = f"destination directory: {message}"
                else:
                    self.new_dirs.add(relpath)
                    self.consumer.add(Result(relpath, CREATED, DIR, 0, None, NEW_DIR))

    # ----------------------------------------------------------------- results and the end

    def _take(self, batch, results) -> None:
        if results is None:
            results = failed(batch, "not attempted")
        if not self.disk_full and any(r.reason == DISK_FULL for r in results):
            self.disk_full = True  # as locally: stop handing out work (transfer.run)
            self.report.stopped_early = True
            self.report.warnings.append(
                "the destination is full: pcopy stopped handing out work (files in flight were finished or "
                "failed, the rest was not attempted); free some space and run again to complete")
        if self.anchors:
            for result in results:
                if result.relpath in self.anchors:
                    self.anchors.discard(result.relpath)
                    if result.digest and self.consumer.manifest is not None:
                        self.anchor_digests[result.relpath] = result.digest
                    if not anchor_ok(result):
                        self.bad_anchors.add(result.relpath)
        self.consumer.add_many(results)

    def _link_hardlinks(self, mover: Mover, conn, open_session, check) -> None:
        """-H: the other names of each group, linked on the DST end to their first name; where that
        was not written, the next name is copied (on ``conn``, the control session, idle now; else on a
        session opened for it) and the rest link to it."""
        replaced: dict = {}  # a bad first name -> the name copied in its place (or none yet)
        links: list = []
        for reldir, task in self.hardlinks:
            check()
            relpath = relpath_join(reldir, task.name)
            if self.options.dry_run:
                self.consumer.add(Result(relpath, LINKED, FILE, 0, None, task.why, "", task.source))
                continue
            source = task.source
            if source in self.bad_anchors:
                source = replaced.get(source)
                if source is None:
                    conn = conn or open_session()
                    with conn.op_lock:
                        results = mover.run(conn, Batch(reldir, (Task(COPY, task.name, task.size, NEW_FILE),)))
                    self.consumer.add_many(results)
                    if results and anchor_ok(results[0]):
                        replaced[task.source] = relpath
                        self.anchor_digests[relpath] = results[0].digest
                    continue
            links.append([relpath, source, task.why])
        if links:
            found = [result_in(r) for r in self.dst.link_names(links, self.options.token)]
            digests = self.anchor_digests  # a linked name's manifest line is its first name's
            self.consumer.add_many([r._replace(digest=digests.get(link[1])) if r.digest is None and (
                r.status == LINKED or r.reason == LINK_IN_PLACE) else r for r, link in zip(found, links, strict=True)])

    def _delete(self) -> None:
        options, report = self.options, self.report
        if not self.deletions:
            return
        found = self.dst.delete(self.deletions, True, not options.delete_excluded)
        count = sum(1 for f in found if not f[1].startswith("unreadable"))
        if options.max_delete is not None and count > options.max_delete:
            raise PcopyError(f"{self.dst.label}: refusing to delete {count} entries "
                             f"(more than --max-delete {options.max_delete}); nothing was deleted")
        if report.failed and not options.dry_run:
            report.warnings.append(f"{report.failed} failures: deletions skipped so nothing more is lost")
            return
        if not options.dry_run:
            found = self.dst.delete(self.deletions, False, not options.delete_excluded)
        for relpath, kind, error in found:
            if error and error.startswith("not deleted"):
                report.warnings.append(f"{relpath}: {error}")
            elif error:
                self.consumer.add(failure(relpath, kind, f"cannot delete: {error}"), source=False)
            else:
                self.consumer.add(Result(relpath, DELETED, kind, 0, None, DELETING), source=False)

    def _finish_dirs(self) -> None:
        """Directory metadata after the contents, deepest first: the SRC end's stat and attributes of
        each, set on the DST end as the local copy sets them (``transfer.dirmeta``, itemized ``.d...p.....``)."""
        options = self.options
        dirs = [d for d in self.dirs if d[0] not in self.broken and d[0] not in self.pending]
        dirs.sort(key=lambda d: -len(_parts(d[0])))
        if not dirs:
            return
        found = self.src.src_meta([d[0] for d in dirs], options.follow_symlinks, (options.xattrs, options.acls))
        items = []
        for (relpath, *_), (meta, plain, error) in zip(dirs, found, strict=True):
            if meta is None:  # gone from SRC since the walk: left as it is
                if error is not None:
                    self.consumer.add(failure(relpath or ".", DIR, f"cannot set directory metadata: source: {error}"))
                continue
            items.append([relpath, relpath in self.new_dirs, meta, plain])
            if error is not None and error not in self.report.warnings:  # its attributes could not be read
                self.report.warnings.append(error)
        done = self.dst.set_dirs(items, options.token, self.spec)
        for outcome in done["outcomes"]:
            line = dirmeta.outcome_results(dirmeta.DirOutcome(*outcome), set())
            if line is not None:
                self.consumer.add(line)
        for note in done["notes"]:
            if note not in self.report.warnings:
                self.report.warnings.append(note)
