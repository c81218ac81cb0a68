"""The watchdog side of watch mode: which events to ask for, the handler, and stopping an observer.

Kept apart from ``session`` (the loop and its batches) so that each file holds
one job; ``watcher`` below is the session, seen only through ``on_event`` and
``request_full_rescan``.
"""

from __future__ import annotations

import logging
from typing import Any

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


class Handler(FileSystemEventHandler):
    def __init__(self, watcher: Any) -> None:
        self.watcher = watcher

    def dispatch(self, event) -> None:  # skip the base class's two-step dispatch
        self.watcher.on_event(event)


class LostEvents(logging.Handler):
    """watchdog reports a queue overflow (and failures to re-add watches) only in its log."""

    def __init__(self, watcher: Any) -> None:
        super().__init__(logging.WARNING)
        self.watcher = watcher

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not break the observer thread
            message = str(record.msg)
        self.watcher.request_full_rescan(f"file events may have been lost ({message}): re-reading the whole tree")


def observer_name(observer) -> str:
    name = type(observer).__name__
    return name[:-len("Observer")].lower() if name.endswith("Observer") and name != "Observer" else name


def stop_quietly(observer) -> None:
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
