"""The watchdog observer of one watch session: the only module that imports watchdog.

``Observation`` starts inotify (or watchdog's polling observer with --poll, or
when native events are unavailable), turns watchdog's log warnings about lost
events into a full re-read, and turns an observer thread that dies into a
warning instead of a traceback (the session's health check then falls back to
polling).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

import watchdog.events
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEventHandler,
)

from ..errors import describe

# inotify: DirModifiedEvent is left out on purpose. watchdog only synthesizes it
# next to a create/delete/move/close event of the same directory, which maps to
# the same target, so it would double the events of a burst for nothing.
# FileClosedEvent (IN_CLOSE_WRITE) is kept: writes through mmap raise no IN_MODIFY.
# Attrib events exist since watchdog 7 (before, a chmod was a modified event).
NATIVE_EVENTS = [FileCreatedEvent, DirCreatedEvent, FileDeletedEvent, DirDeletedEvent, FileModifiedEvent,
                 FileMovedEvent, DirMovedEvent, FileClosedEvent] + [
    getattr(watchdog.events, name) for name in ("FileAttribEvent", "DirAttribEvent") if hasattr(watchdog.events, name)]
# polling: a directory whose mtime changed only shows up as DirModifiedEvent
POLLING_EVENTS = NATIVE_EVENTS + [DirModifiedEvent]


class _Handler(FileSystemEventHandler):
    def __init__(self, on_event: Callable) -> None:
        self.on_event = on_event

    def dispatch(self, event) -> None:  # skip the base class's two-step dispatch
        self.on_event(event)


class _LostEvents(logging.Handler):
    """watchdog reports a queue overflow (and failures to re-add watches) only in its log."""

    def __init__(self, rescan: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.rescan = rescan

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not break the observer thread
            message = str(record.msg)
        self.rescan(f"file events may have been lost ({message}): re-reading the whole tree")


class Observation:
    """One running observer with its log and thread-failure hooks."""

    def __init__(self, root: str, on_event: Callable, rescan: Callable[[str], None],
                 warn: Callable[[str], None]) -> None:
        self.root, self.on_event, self.rescan, self.warn = root, on_event, rescan, warn
        self.observer: Any = None
        self._log_handler: Optional[_LostEvents] = None
        self._saved_excepthook: Optional[Callable] = None

    def start(self, poll: bool, poll_interval: float) -> str:
        """Start watching; returns the observer's name ("inotify", "polling", ...)."""
        import watchdog.observers
        from watchdog.observers.polling import PollingObserver

        self._hook()
        if not poll:
            observer = None
            try:
                observer = watchdog.observers.Observer()
                observer.schedule(_Handler(self.on_event), self.root, recursive=True, event_filter=NATIVE_EVENTS)
                observer.start()
                self.observer = observer
                return _observer_name(observer)
            except OSError as exc:
                _stop_quietly(observer)
                self.warn(f"native file events unavailable ({describe(exc)}; see fs.inotify.max_user_watches): "
                          f"polling every {poll_interval:g} s")
        observer = PollingObserver(timeout=poll_interval)
        observer.schedule(_Handler(self.on_event), self.root, recursive=True, event_filter=POLLING_EVENTS)
        observer.start()
        self.observer = observer
        return "polling"

    def healthy(self) -> bool:
        observer = self.observer
        return observer is not None and observer.is_alive() and all(e.is_alive() for e in list(observer.emitters))

    def stop(self) -> None:
        _stop_quietly(self.observer)
        self.observer = None
        if self._saved_excepthook is not None:
            threading.excepthook = self._saved_excepthook
            self._saved_excepthook = None
        if self._log_handler is not None:
            logging.getLogger("watchdog").removeHandler(self._log_handler)
            self._log_handler = None

    def _hook(self) -> None:
        if self._saved_excepthook is None:
            self._saved_excepthook = threading.excepthook
            threading.excepthook = self._thread_failed
        if self._log_handler is None:
            self._log_handler = _LostEvents(self.rescan)
            logging.getLogger("watchdog").addHandler(self._log_handler)

    def _thread_failed(self, args) -> None:
        """threading.excepthook while watching: an observer thread that dies is a warning, not a traceback."""
        observer = self.observer
        mine = observer is not None and (args.thread is observer or args.thread in set(observer.emitters))
        if not mine and self._saved_excepthook is not None:
            self._saved_excepthook(args)
            return
        self.warn(f"the file-event observer failed: {describe(args.exc_value)}")


def _observer_name(observer) -> str:
    name = type(observer).__name__
    return name[:-len("Observer")].lower() if name.endswith("Observer") and name != "Observer" else name


def _stop_quietly(observer) -> None:
    if observer is None:
        return
    try:
        observer.stop()
    except Exception:
        pass
    try:
        observer.join(timeout=5)
    except RuntimeError:  # never started
        pass
