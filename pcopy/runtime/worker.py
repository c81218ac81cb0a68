"""The one worker initializer, and what a worker knows about its run.

Every backend calls ``init`` once in each worker (process or thread) before it
runs anything: copy batches, hash batches and ``map`` functions alike.

Signals: Ctrl-C and ``kill -TERM -PGID`` reach the whole process group. Only
the parent acts on them (it sets the stop flag, waits a short grace period,
then kills what is left), so worker processes ignore SIGINT and SIGTERM; they
still cannot outlive the parent (``children.die_with_parent``).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Optional

_state = threading.local()  # .stop: the run's stop Event, per worker thread
_umask: Optional[int] = None


def init(stop_event, in_subprocess: bool = True) -> None:
    if in_subprocess:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGIO, signal.SIG_IGN)  # lease probes (content.digest.open_for_writing)
    _state.stop = stop_event


def stop_flag():
    """The stop Event of the run this worker serves (None outside a pool)."""
    return getattr(_state, "stop", None)


def umask() -> int:
    """This process's umask, read once without changing it (pcopy never changes it)."""
    global _umask
    if _umask is None:
        try:
            with open("/proc/self/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Umask:"):
                        _umask = int(line.split()[1], 8)
                        break
        except (OSError, ValueError, IndexError):
            pass
        if _umask is None:  # no /proc: the classic read-and-restore (racy only against other threads)
            _umask = os.umask(0o022)
            os.umask(_umask)
    return _umask
