"""``pcopy watch SRC [user@]host:DST``: where a watch batch goes when DST is on another machine.

    Watcher (watcher.session) ─► RemoteMirror.sync(targets)
                                   │ the ssh sessions (control from the start, data streams as batches
                                   │ need them) stay open between batches: a new session costs an ssh
                                   ▼ handshake and an interpreter start, a batch a few round trips
                             remote.flow.Flow.run(targets=...)   the remote sync's own planner, streams,
                                                                 receiver and finish, per dirty directory
    a session lost (ConnectionLost): one warning naming the host, then reconnect with back-off
    (1 s doubling to 30 s, as lsyncd keeps retrying) and a full resync, which is what a rerun does.

With --delete, a batch's moves are renames on the remote first (``moves``, checked as locally);
the re-read of both parents then finds nothing to copy for them.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Optional

from ..errors import PcopyError
from ..fs.scan import require_dir
from ..model.results import Report
from ..runtime.progress import Counters
from ..runtime.signals import SignalGuard
from . import client, transport
from .flow import Flow
from .moves import push_moves
from .transport import ConnectionLost

RECONNECT_FIRST, RECONNECT_MAX = 1.0, 30.0  # seconds before a reconnect attempt, doubling
WAIT_TICK = 0.1  # a back-off wait checks for signals this often


class RemoteMirror:
    """DST is ``host:path``; SRC is here (the events come from this machine's file system)."""

    local_dst = None  # nothing under SRC is our own write

    def __init__(self, setting: client.Setting, rsh: Optional[str], remote_pcopy: Optional[str],
                 compress: bool, warn: Optional[Callable[[str], None]] = None) -> None:
        self.setting = setting
        self.options = setting.options
        self.rsh, self.remote_pcopy, self.compress = rsh, remote_pcopy, compress
        self.warn = warn or (lambda message: None)
        self.sessions: Optional[transport.Sessions] = None
        self.src: Any = None  # sides.Local, sides.Remote once connected
        self.dst: Any = None
        self.control: Optional[transport.Connection] = None
        self.dst_is_new = False
        self.lost: Optional[PcopyError] = None  # a session ended since the last batch: reconnect first
        self.backoff = RECONNECT_FIRST

    def preflight(self) -> None:
        """What can be checked here before any session is opened (SRC)."""
        require_dir(self.options.src, "source")

    def start(self) -> None:
        """Open the sessions and check both ends (a failure here is fatal: one line, as sync)."""
        self._open()

    def _open(self) -> None:
        self.sessions = client.connect(self.setting, self.rsh, self.remote_pcopy)
        self.src, self.dst, self.control = client.ends(self.setting, self.sessions)
        self.dst_is_new = client.preflight(self.src, self.dst, self.options)
        if self.dst_is_new:
            self.dst.make_root()
        self.options = client.fit(self.dst, self.options)  # what the remote's file system stores

    @property
    def conns(self) -> list:
        return list(self.sessions) if self.sessions is not None else []

    def _drop(self) -> None:
        if self.sessions is not None:
            self.sessions.ended = True  # a data session still opening is killed as it comes up
        for conn in self.conns:
            if conn.proc.poll() is None:  # one already reaped is not signalled (its pid may be reused)
                conn.kill()
        self.sessions = None

    def healthy(self) -> bool:
        """False once a session's ssh process ended (noticed between batches, not only at the next one)."""
        ended = [c for c in self.conns if c.proc.poll() is not None]
        if self.lost is None and ended:
            self.lost = ended[0].lost()
        return self.lost is None

    def dst_present(self) -> bool:
        if self.lost is not None or self.dst is None:
            return False
        try:
            return self.dst.info()["kind"] == "dir"
        except ConnectionLost as exc:
            self.lost = exc
            return False

    def moves(self, moves: list, initial: bool) -> list:
        """The batch's renames done on the remote (``moves``); the re-read that follows checks them."""
        if self.lost is not None or self.dst is None:
            return []
        try:
            return push_moves(self.options, self.dst, moves)
        except ConnectionLost as exc:
            self.lost = exc  # the sync that follows reconnects
            return []

    def sync(self, targets: Optional[list], on_result: Callable, stop_event: Optional[threading.Event]) -> Report:
        """One batch (``targets`` None: the whole tree); a lost session is reconnected and the whole tree
        re-read, the report being that resync's."""
        while True:
            if self.lost is not None:
                self._reconnect(stop_event)
                targets = None
            try:
                return self._run(targets, on_result, stop_event)
            except ConnectionLost as exc:
                self.lost = exc

    def _run(self, targets: Optional[list], on_result: Callable, stop_event: Optional[threading.Event]) -> Report:
        assert self.src is not None and self.dst is not None
        self.src.info()  # the root's mode and times as they are now (set on DST at the batch's end)
        if targets is None and not self.dst_is_new and self.dst.info()["kind"] is None:
            self.dst.make_root()  # DST vanished: made again, then filled (as a local watch does)
            self.dst_is_new = True
        # a token per batch, as engine.copy_tree: the receivers' open directories are not reused (one
        # removed on the remote since would swallow the writes)
        options = self.options._replace(token=os.urandom(4).hex())
        flow = Flow(options, self.src, self.dst, True, Counters(), on_result, False, stop_event)
        spec = client.receiver_spec(options, self.setting.streams)
        report = flow.run(self.sessions, self.setting.streams, options.token, spec, None, self.dst_is_new,
                          self.compress, self.control, targets)
        self.dst_is_new = False
        self.backoff = RECONNECT_FIRST
        return report

    def _reconnect(self, stop_event: Optional[threading.Event]) -> None:
        """Until the sessions are back (or a stop signal): a warning per loss, one line naming the host."""
        assert self.lost is not None
        self.warn(f"{self.lost}; reconnecting")
        self._drop()
        with SignalGuard(stop_event) as guard:
            while True:
                deadline = time.monotonic() + self.backoff
                while time.monotonic() < deadline:
                    guard.check()
                    time.sleep(WAIT_TICK)
                self.backoff = min(self.backoff * 2, RECONNECT_MAX)
                try:
                    self._open()
                except PcopyError as exc:
                    self._drop()
                    guard.check()
                    self.warn(f"{exc}; trying again in {self.backoff:.0f} s")
                    continue
                guard.check()
                self.lost = None
                self.warn(f"{self.setting.spec.host}: reconnected; resyncing the whole tree")
                return

    def close(self, clean: bool) -> None:
        if clean and self.sessions is not None:
            self.sessions.close(timeout=1.0)
            self.sessions = None
        else:
            self._drop()
