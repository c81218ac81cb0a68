"""SIGINT, SIGTERM and SIGHUP become a flag that the main loop checks.

The handler only records the signal; the loops call ``check()`` at least every
``pool.WAIT_TICK`` seconds and it raises ``Interrupted`` there, where cleanup
is safe. A read that may block without end (a manifest on a pipe, ``/dev/zero``)
runs inside ``interruptible()``, where the handler raises at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Optional

from ..errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SignalGuard:
    """Turns the stop signals into a flag (main thread only; elsewhere only ``stop_event`` counts)."""

    def __init__(self, stop_event: Optional[threading.Event] = None) -> None:
        self.signum: Optional[int] = None
        self.stop_event = stop_event
        self._saved: dict = {}
        self._raise_now = False

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._saved[signum] = signal.signal(signum, self._handle)
            # SIGIO: the kernel's note that a lease was broken (content.digest.open_for_writing)
            self._saved[signal.SIGIO] = signal.signal(signal.SIGIO, signal.SIG_IGN)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        self._saved.clear()

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
        if self._raise_now:
            raise Interrupted(signum)

    def check(self) -> None:
        if self.signum is None and self.stop_event is not None and self.stop_event.is_set():
            self.signum = signal.SIGINT
        if self.signum is not None:
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def interruptible(self):
        """A region where a signal raises ``Interrupted`` immediately (around reads that may block)."""
        self.check()
        self._raise_now = True
        try:
            yield
        finally:
            self._raise_now = False
