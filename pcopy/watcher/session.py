"""Watch mode: keep DST mirrored by feeding filesystem events into the sync engine.

    watchdog observer ─► Watcher.on_event (observer thread)       watchdog is imported in observer
     (inotify; polling    │ event → source directories to re-read:
      with --poll or      │   file created/changed/deleted → its parent (non-recursive)
      as a fall-back)     │   directory created/moved in   → it (recursive) + its parent
                          │   moved/renamed                → both parents (+ the new directory),
                          │                                  and a renames.Move (inside SRC)
                          │   cannot be mapped, or events lost (queue overflow) → the whole tree
                          │   a burst (> BURST pending): events of a directory already pending stop there
                          ▼
                     pending set (under a lock)
                          │  Watcher.run (caller's thread): wait until no event came for `debounce`
                          │  seconds (at most `max_delay` after the first one), then coalesce:
                          ▼  drop targets covered by a recursive ancestor
    mirror.moves (--delete): the batch's moves as renames in DST, each checked first
                          ▼
    mirror.sync(targets=[(reldir, recursive), ...])   local.LocalMirror: engine.copy_tree on one
                          │  long-lived pool; remote.watch.RemoteMirror (host:DST): remote.flow over
                          │  ssh sessions kept open. Same planner as `sync`: one copy path
                          ▼
                     results ─► on_result (-v lines), failures ─► retried with the next batch
                                ("source changed while being copied": retried right away)

The initial sync runs after the observer is started, so nothing that changes
during it is missed. Correctness comes first: whenever the events may not tell
the whole story (inotify queue overflow, an event outside SRC, the observer
dying, DST vanishing) the whole tree is re-read, which is what ``sync`` does.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from typing import Callable, Optional

from ..errors import Interrupted
from ..fs.filters import make_filter
from ..fs.temps import TMP_PREFIX
from ..model.entries import DIR
from ..model.results import SOURCE_CHANGED, Report
from ..options import Options
from ..runtime.signals import SignalGuard
from ..transfer import renames
from .events import FULL, coalesce, map_event, move_of, parent_of
from .local import LocalMirror, Mirror
from .observer import Observation

DEFAULT_DEBOUNCE = 0.05  # seconds without events before a batch is applied
MAX_DELAY_FLOOR = 1.0  # a steady stream of events still gets applied at least this often
DEFAULT_POLL_INTERVAL = 1.0
TICK = 0.1  # the loop checks for signals / stop_event at least this often
STATUS_EVERY = 0.25
HEALTH_EVERY = 1.0
FULL_RETRY_FIRST, FULL_RETRY_MAX = 1.0, 60.0  # seconds before retrying after DST was full, doubling
BURST_DELAY = 5.0  # seconds a burst may defer its batch (a steady stream is still applied this often)
BURST = 256  # pending events past which a file event in a directory already to be re-read costs a set lookup
FILE_CHANGES = frozenset({"created", "modified", "closed", "attrib"})
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, systemd's stop: how a watch session normally ends

IGNORE = object()  # an event path to ignore (as opposed to one outside SRC)

# --------------------------------------------------------------------------- status


@dataclasses.dataclass
class WatchStatus:
    """What the watcher is doing; passed to ``on_status`` (the CLI draws it as a status line)."""

    observer: str = ""  # "inotify", "polling", ...
    watching: bool = False  # the initial sync is done; following changes
    pending: int = 0  # events received since the last batch started
    events: int = 0  # events received in total
    cycles: int = 0  # batches applied, the initial sync included
    last_sync: Optional[float] = None  # time.time() when the last batch finished
    last_seconds: float = 0.0  # how long the last batch took
    errors: int = 0  # paths whose last attempt failed (retried with the next batch)
    last_report: Optional[Report] = None  # the last batch's report (set right after it)
    warnings: list = dataclasses.field(default_factory=list)  # every warning so far, in order


# --------------------------------------------------------------------------- the watcher


class Watcher:
    """One watch session: observer + debounced batches through its mirror (``local``, or a host:DST's)."""

    def __init__(self, options: Options, *, debounce: float = DEFAULT_DEBOUNCE, max_delay: Optional[float] = None,
                 poll: bool = False,
                 poll_interval: float = DEFAULT_POLL_INTERVAL, rescan_interval: Optional[float] = None,
                 on_result: Optional[Callable] = None, on_status: Optional[Callable] = None,
                 stop_event: Optional[threading.Event] = None, mirror: Optional[Mirror] = None) -> None:
        self.options = options
        self.debounce = debounce
        self.max_delay = max_delay if max_delay is not None else max(MAX_DELAY_FLOOR, 10 * debounce)
        self.poll = poll
        self.poll_interval = poll_interval
        self.rescan_interval = rescan_interval
        self.on_result = on_result
        self.on_status = on_status
        self.stop_event = stop_event
        self.status = WatchStatus()
        self.total = Report()
        self.failures: dict = {}  # relpath -> Result of the last batch's failures
        self._root = os.path.realpath(options.src)
        self._prefix = self._root.rstrip(os.sep) + os.sep
        self._keep = make_filter(options.filters)
        self.mirror: Mirror = mirror if mirror is not None else LocalMirror(options, self._keep)
        self.mirror.warn = self.warn_now
        local_dst = self.mirror.local_dst
        self._dst_prefix = os.path.realpath(local_dst).rstrip(os.sep) + os.sep if local_dst else None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: set = set()
        self._moves: list = []  # renames.Move of this batch, in event order: replayed in DST first
        self._hot: set = set()  # event directories whose re-read is pending: a burst's events stop there
        self._births = 0  # files created since the batch started: many make a burst (not a busy writer)
        self._first_at: Optional[float] = None
        self._last_at = 0.0
        self._retry: set = set()  # targets of failed paths: retried with the next batch
        self._observer: Optional[Observation] = None
        self._next_rescan = float("inf")
        self._full_retry_at = float("inf")  # DST was full: retry what was not attempted, backing off
        self._full_backoff = FULL_RETRY_FIRST

    # ---- observer side (runs in watchdog's thread: keep it cheap)

    def _classify(self, path, is_dir: bool):
        """SRC-relative path of an event path; None outside SRC; IGNORE for DST, temp files, excluded paths."""
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if path == self._root:
            return ""
        if not path.startswith(self._prefix):
            return None
        if self._dst_prefix is not None and path.startswith(self._dst_prefix):
            return IGNORE  # DST inside SRC (preflight refuses it; never chase our own writes)
        rel = path[len(self._prefix):]
        if rel.rpartition(os.sep)[2].startswith(TMP_PREFIX):
            return IGNORE
        if self._keep is not None and not self._keep(rel, is_dir):
            return IGNORE
        return rel

    def on_event(self, event) -> None:
        is_dir = event.is_directory
        if not is_dir and self.status.pending > BURST and event.event_type in FILE_CHANGES:
            parent = os.path.dirname(event.src_path)
            if parent in self._hot:  # the burst's one targeted re-read already covers it: no mapping
                self._births += event.event_type == "created"
                self.status.events += 1
                self.status.pending += 1
                self._last_at = time.monotonic()
                return
        rel = self._classify(event.src_path, is_dir)
        dest_rel = None
        if event.event_type == "moved":
            dest_rel = self._classify(event.dest_path, is_dir) if event.dest_path else None
            if rel is IGNORE or dest_rel is IGNORE:
                rel = None if rel is IGNORE else rel
                dest_rel = None if dest_rel is IGNORE else dest_rel
                if rel is None and dest_rel is None:
                    return  # between ignored places (or in and out of the tree through them)
        elif rel is IGNORE:
            return
        targets = map_event(event.event_type, is_dir, rel, dest_rel)
        if targets is None:
            targets = [FULL]  # cannot tell what changed: re-read everything
        kind = event.event_type
        move = move_of(kind, is_dir, rel, dest_rel, getattr(event, "is_synthetic", False))
        if targets:
            hot = os.path.dirname(event.src_path) if not is_dir and kind in FILE_CHANGES and rel else None
            self._add(targets, move=None if move is None else renames.Move(*move), hot=hot)

    def _add(self, targets, now: Optional[float] = None, move: Optional[renames.Move] = None,
             hot: Optional[str] = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            first = not self._pending
            self._pending.update(targets)
            if hot is not None:  # its events map to (its directory, False): pending until the batch starts
                self._hot.add(hot)
            self._births += move is not None and not move.old
            if move is not None and len(self._moves) < renames.MAX_MOVES:
                self._moves.append(move)
            self.status.events += 1
            self.status.pending += 1
            if first:
                self._first_at = now
            self._last_at = now
        if first:
            self._wake.set()

    def request_full_rescan(self, reason: str) -> None:
        self._warn(reason)
        self._add([FULL])

    def warn_now(self, message: str) -> None:
        """A warning shown at once (the mirror's, while a batch waits on it: a lost connection)."""
        self._warn(message)
        self._report_status()

    def _warn(self, message: str) -> None:
        with self._lock:
            if not self.status.warnings or self.status.warnings[-1] != message:
                self.status.warnings.append(message)
                self.total.warnings.append(message)

    # ---- main loop (caller's thread)

    def run(self) -> Report:
        """Initial sync, then follow changes until stop_event, SIGINT or SIGTERM: each is a normal end.

        Files in flight at the stop are discarded (temp files removed) and
        counted in the report's ``discarded``. SIGHUP raises ``Interrupted``,
        its ``report`` attribute holding the session's report.
        """
        started = time.monotonic()
        self.mirror.preflight()
        clean = False
        with SignalGuard() as guard:
            try:
                self.mirror.start()
                guard.check()
                self._start_observer()
                self._cycle(initial=True)
                self.status.watching = True
                self._report_status()
                self._loop(guard)
                clean = True
            except Interrupted as exc:
                self.total.discarded += exc.discarded
                if exc.signum not in STOP_SIGNALS:
                    self._finish_total(started)
                    exc.report = self.total
                    raise
                clean = self._stopped() and guard.signum is None  # stop_event: the workers are idle
            finally:
                self._shutdown(clean)
        self._finish_total(started)
        return self.total

    def _stopped(self) -> bool:
        return self.stop_event is not None and self.stop_event.is_set()

    def _loop(self, guard: SignalGuard) -> None:
        last_status = last_health = time.monotonic()
        while True:
            if self._stopped():
                return
            guard.check()
            self._wake.clear()
            now = time.monotonic()
            if now - last_health >= HEALTH_EVERY:
                last_health = now
                self._check_observer()
                if not self.mirror.healthy():
                    self._add([FULL])  # a session to DST ended: the mirror reconnects, then re-reads all
            due = self._due()
            if due <= now:
                self._cycle()
                last_status = time.monotonic()
                continue
            if now - last_status >= STATUS_EVERY:
                last_status = now
                self._report_status()
            self._wake.wait(min(TICK, due - now))

    def _due(self) -> float:
        with self._lock:
            due = float("inf")
            if self._pending:
                first = self._first_at if self._first_at is not None else self._last_at
                # a burst is applied once it pauses (one re-read, the observer not slowed by batches meanwhile)
                most = BURST_DELAY if self._births > BURST else self.max_delay
                due = min(self._last_at + self.debounce, first + max(most, self.max_delay))
        return min(due, self._next_rescan, self._full_retry_at)

    def _cycle(self, initial: bool = False) -> None:
        now = time.monotonic()
        self._full_retry_at = float("inf")  # set again if this run finds DST full too
        with self._lock:
            targets = coalesce(self._pending | self._retry) if (self._pending or self._retry) else []
            self._pending.clear()
            self._hot.clear()
            self._births = 0
            moves, self._moves = self._moves, []
            self._first_at = None
            self.status.pending = 0
        self._retry.clear()
        if initial or now >= self._next_rescan or not self.mirror.dst_present():
            targets = [FULL]
        if targets == [FULL] and self.rescan_interval:
            self._next_rescan = now + self.rescan_interval
        if not targets:
            return
        started = time.monotonic()
        self._replay(self.mirror.moves(moves, initial))
        report = self.mirror.sync(None if targets == [FULL] else targets, self._result, self.stop_event)
        self._account(report, targets)
        self.status.cycles += 1
        self.status.last_sync = time.time()
        self.status.last_seconds = time.monotonic() - started
        self.status.last_report = report
        self._report_status()
        self.status.last_report = None

    def _replay(self, done: list) -> None:
        """Count and show the renames done in DST instead of copies (the re-read that follows checks them)."""
        if done:
            moved = Report()
            moved.count(done)
            self.total.merge(moved, warnings=False)
            for result in done:
                self._result(result)

    def _result(self, result) -> None:
        if self.on_result is not None:
            self.on_result(result)

    def _account(self, report: Report, targets: list) -> None:
        total = self.total
        total.merge(report, warnings=False)  # failed is set from the last batch's failures at the end
        for warning in report.warnings:
            self._warn(warning)
        self.failures = {r.relpath: r for r in report.failures}
        self.status.errors = len(self.failures)
        if report.stopped_early:  # DST was full: what was not attempted is retried, backing off
            self._retry.update(targets)
            self._full_retry_at = time.monotonic() + self._full_backoff
            self._full_backoff = min(self._full_backoff * 2, FULL_RETRY_MAX)
        else:
            self._full_backoff = FULL_RETRY_FIRST
        if not report.failures:
            return
        retry_now = []
        for result in report.failures:
            relpath = "" if result.relpath == "." else result.relpath
            if result.kind == DIR:
                target = (relpath, True)  # could not read or create it: everything below is unknown
            else:
                target = (parent_of(relpath), False)
            if result.reason == SOURCE_CHANGED:
                retry_now.append(target)  # still being written: try again once it settles
            else:
                self._retry.add(target)
        if self.options.delete:
            self._retry.update(targets)  # the engine skipped this batch's deletions after a failure
        if retry_now:
            self._add(retry_now)

    def _finish_total(self, started: float) -> None:
        self.total.failures = list(self.failures.values())
        self.total.failed = len(self.total.failures)
        self.total.seconds = time.monotonic() - started

    def _report_status(self) -> None:
        if self.on_status is not None:
            self.on_status(self.status)

    # ---- resources

    def _start_observer(self) -> None:
        self._observer = Observation(self._root, self.on_event, self.request_full_rescan, self._warn)
        self.status.observer = self._observer.start(self.poll, self.poll_interval)

    def _check_observer(self) -> None:
        """An observer whose threads died reports nothing: fall back to polling and re-read everything."""
        observer = self._observer
        if observer is None or observer.healthy():
            return
        if not os.path.isdir(self.options.src):
            self._add([FULL])  # SRC is gone: the next batch reports it
            return
        observer.stop()
        self.poll = True
        self._start_observer()
        self.request_full_rescan("the file-event observer stopped: polling instead")

    def _shutdown(self, clean: bool) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
        self.mirror.close(clean)


def watch(options: Options, **kwargs) -> Report:
    """Run a watch session (see ``Watcher``); ``pcopy.api.watch`` is the public entry point."""
    return Watcher(options, **kwargs).run()


__all__ = ["Watcher", "WatchStatus", "watch", "map_event", "coalesce"]
