"""Progress display: a reporter thread that redraws a tqdm bar on stderr.

The engine only bumps integer counters (cheap, no locks: one writer); the
thread reads them a few times a second. Totals grow while the walker is still
discovering files, so the ETA firms up once the walk is done. tqdm is
imported only when a bar is actually shown.
"""

from __future__ import annotations

import sys
import threading
from typing import Any


class Counters:
    """Plain counters; the engine writes them, the reporter reads them."""

    def __init__(self) -> None:
        self.files_done = 0
        self.bytes_done = 0
        self.files_total = 0
        self.bytes_total = 0
        self.failed = 0
        self.walk_done = False

    def discovered(self, files: int, nbytes: int) -> None:
        self.files_total += files
        self.bytes_total += nbytes

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressBar(Counters):
    """Counters plus a thread that draws them with tqdm."""

    def __init__(self, interval: float = 0.2, stream=None) -> None:
        super().__init__()
        self.interval = interval
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pcopy-progress", daemon=True)
        self._bar: Any = None

    def start(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024,
                         file=self.stream, dynamic_ncols=True, leave=True)
        self._thread.start()

    def _draw(self) -> None:
        bar = self._bar
        bar.total = max(self.bytes_total, self.bytes_done)
        bar.n = self.bytes_done
        total = f"{self.files_total}" + ("" if self.walk_done else "+")
        failed = f" failed={self.failed}" if self.failed else ""
        bar.set_postfix_str(f"files={self.files_done}/{total}{failed}", refresh=False)
        bar.refresh()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()

    def close(self) -> None:
        if self._bar is None:
            return
        self._stop.set()
        self._thread.join()
        self.walk_done = True
        self._draw()
        self._bar.close()
        self._bar = None


def make_progress(enabled) -> Counters:
    """``enabled``: True/False, or None to show a bar only when stderr is a TTY."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return ProgressBar() if enabled else Counters()
