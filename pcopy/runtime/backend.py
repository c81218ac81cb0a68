"""The one place that makes worker pools, whatever runs the work.

A backend runs ``fn(*args)`` somewhere and hands back futures with
``done()``/``result()``/``exception()``/``cancel()``: worker processes (the
default; best for many small files), threads (fine for a few big files), or
the threads of a Dask cluster. ``BoundedPool`` (``pool``) sits on top and is
all the commands see.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional, Protocol

from ..errors import PcopyError, UsageError

BACKENDS = ("process", "thread")


class Backend(Protocol):
    jobs: int
    stop_event: Any  # an Event shared with the workers: set to make them drop their work

    @property
    def started(self) -> bool: ...

    def start(self) -> None: ...

    def submit(self, fn, *args): ...

    def wait(self, futures, timeout: float): ...

    def lost_items(self) -> list: ...

    def shutdown(self, kill: bool = False) -> None: ...


_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ucx|ws|wss|inproc)://)?\[?[\w.:-]+\]?:\d+$")


def check_scheduler_address(address: str) -> None:
    """UsageError unless ``address`` looks like a Dask scheduler address (``tcp://HOST:PORT``)."""
    if not _ADDRESS.match(address):
        raise UsageError(f"{address!r} is not a Dask scheduler address (expected tcp://HOST:PORT)")


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def make_backend(name: str = "process", jobs: Optional[int] = None, scheduler=None,
                 roots: Optional[tuple] = None) -> Backend:
    """A backend with ``jobs`` workers (default: one per CPU); with a ``scheduler``, that Dask cluster.

    ``roots`` (SRC, DST) are checked to be visible to a cluster's workers.
    """
    if scheduler is not None:
        try:
            from .dask import DaskBackend  # imports distributed: only when asked for
        except ImportError as exc:
            raise PcopyError(f"a scheduler needs the 'dask' extra (pip install 'pcopy[dask]'): {exc}") from None
        return DaskBackend(scheduler, jobs, roots)
    jobs = jobs or default_jobs()
    if name == "thread":
        from .thread import ThreadBackend

        return ThreadBackend(jobs)
    if name == "process":
        from .process import ProcessBackend

        return ProcessBackend(jobs)
    raise UsageError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
