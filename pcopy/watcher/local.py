"""Where a watch batch goes when DST is on this machine: ``engine.copy_tree`` on one long-lived pool,
the batch's moves replayed as renames in DST first. ``remote.watch.RemoteMirror`` is the same shape
for a ``host:DST`` (the Watcher does not care which it has).
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Optional, Protocol

from ..model.results import Report
from ..options import Options
from ..runtime.pool import ABORT_GRACE, BoundedPool, make_pool
from ..transfer import engine, renames, track


class Mirror(Protocol):
    """What the Watcher asks of the place it keeps mirrored."""

    local_dst: Optional[str]  # DST on this machine: events below it are the watch's own writes
    warn: Callable[[str], None]  # set by the Watcher: a warning shown at once

    def preflight(self) -> None: ...
    def start(self) -> None: ...
    def dst_present(self) -> bool: ...
    def healthy(self) -> bool: ...
    def moves(self, moves: list, initial: bool) -> list: ...
    def sync(self, targets: Optional[list], on_result: Callable,
             stop_event: Optional[threading.Event]) -> Report: ...
    def close(self, clean: bool) -> None: ...


class LocalMirror:
    """DST is a local directory."""

    def __init__(self, options: Options, keep: Optional[Callable]) -> None:
        self.options = options
        self.keep = keep
        self.warn: Callable[[str], None] = lambda message: None
        self.local_dst: Optional[str] = options.dst  # events below it are our own writes
        self._pool: Optional[BoundedPool] = None

    def preflight(self) -> None:
        """Validate SRC/DST before any thread starts (nothing is created by a dry preflight)."""
        engine.preflight(self.options._replace(dry_run=True), self.keep)

    def start(self) -> None:
        """Start the workers now, before the observer's threads exist (fork-safety, first-event latency)."""
        self._pool = make_pool(self.options.backend, self.options.jobs)
        self._pool.backend.start()

    def dst_present(self) -> bool:
        return os.path.isdir(self.options.dst)

    def healthy(self) -> bool:
        return True

    def moves(self, moves: list, initial: bool) -> list:
        """The batch's renames done in DST (a MOVED Result each); the re-read that follows checks them."""
        if initial and self.options.track_renames:
            return track.track_renames(self.options, self.keep, self.options.track_renames)
        return renames.apply_moves(self.options, moves)

    def sync(self, targets: Optional[list], on_result: Callable, stop_event: Optional[threading.Event]) -> Report:
        """``targets`` None: the whole tree."""
        return engine.copy_tree(self.options, on_result=on_result, stop_event=stop_event, targets=targets,
                                pool=self._pool)

    def close(self, clean: bool) -> None:
        if self._pool is not None:
            if clean:
                self._pool.close()
            else:
                self._pool.abort(ABORT_GRACE)
            self._pool = None
