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

from ..fs.beneath import DirCache

_state = threading.local()  # .stop: the run's stop Event, per worker thread
_umask: Optional[int] = None


def init(stop_event, in_subprocess: bool = True) -> None:
    if in_subprocess:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGIO, signal.SIG_IGN)  # lease probes (content.digest.open_for_writing)
    _state.stop = stop_event


INNER_DIR_FDS = 8  # directory fds each inner thread keeps (``runtime.inner``: up to 16 threads a process)


def init_inner(stop_event) -> None:
    """A thread that ``runtime.inner`` started in a worker: the run's stop flag, fewer cached fds."""
    _state.stop = stop_event
    _state.dir_limit = INNER_DIR_FDS


def dir_cache(token: str, root: str, follow_symlinks: bool = False) -> DirCache:
    """This thread's open directory fds below ``root`` for the run ``token`` (``fs.beneath.DirCache``).

    A worker serves batch after batch of one run: its directories are opened once, not per batch.
    Another run's token closes the previous run's fds (its directories may have changed since).
    """
    caches = getattr(_state, "dirs", None)
    if caches is None or caches[0] != token:
        if caches is not None:
            for old in caches[1].values():
                old.close()
        caches = _state.dirs = (token, {})
    by_root: dict = caches[1]
    key = (root, follow_symlinks)
    cache = by_root.get(key)
    if cache is None:
        cache = by_root[key] = DirCache(root, follow_symlinks, getattr(_state, "dir_limit", DirCache.LIMIT))
    return cache


def drop_dir_caches() -> None:
    """Close this thread's directory fds (a run's end in the parent: DST can be unmounted after it)."""
    caches = getattr(_state, "dirs", None)
    _state.dirs = None
    for cache in caches[1].values() if caches is not None else ():
        cache.close()


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
