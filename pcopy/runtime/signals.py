"""SIGINT, SIGTERM and SIGHUP become a flag that the main loop checks.

The handler only records the signal; the loops call ``check()`` at least every
``pool.WAIT_TICK`` seconds and it raises ``Interrupted`` there, where cleanup
is safe. A read that may block without end (a manifest on a pipe, ``/dev/zero``)
runs inside ``interruptible()``, where the handler raises at once.

Guards nest (watch runs a copy per batch inside its own guard): an inner
guard shares the outer one's flag instead of installing handlers, so a signal
that arrives after the inner run's last check is still seen by the outer loop.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Optional

from ..errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


_active: list = []  # the guards entered in the main thread, outermost first


class SignalGuard:
    """Turns the stop signals into a flag (main thread only; elsewhere only ``stop_event`` counts)."""

    def __init__(self, stop_event: Optional[threading.Event] = None) -> None:
        self._signum: Optional[int] = None
        self.stop_event = stop_event
        self._saved: dict = {}
        self._raise_now = False
        self._outer: Optional["SignalGuard"] = None

    @property
    def signum(self) -> Optional[int]:
        """The signal (or stop request) seen by this guard or the guard it is nested in."""
        if self._signum is None and self._outer is not None:
            return self._outer.signum
        return self._signum

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            _active.append(self)
            if len(_active) > 1:
                self._outer = _active[0]
                return self
            for signum in SIGNALS:
                self._saved[signum] = signal.signal(signum, self._handle)
            # SIGIO: the kernel's note that a lease was broken (content.digest.open_for_writing)
            self._saved[signal.SIGIO] = signal.signal(signal.SIGIO, signal.SIG_IGN)
        return self

    def __exit__(self, *exc) -> None:
        if self in _active:
            _active.remove(self)
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        self._saved.clear()

    def _handle(self, signum, frame) -> None:
        if self._signum is None:
            self._signum = signum
        if self._raise_now:
            raise Interrupted(signum)

    def check(self) -> None:
        if self.signum is None and self.stop_event is not None and self.stop_event.is_set():
            self._signum = signal.SIGINT
        signum = self.signum
        if signum is not None:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def interruptible(self):
        """A region where a signal raises ``Interrupted`` immediately (around reads that may block)."""
        self.check()
        root = self._outer or self
        root._raise_now = True
        try:
            yield
        finally:
            root._raise_now = False
