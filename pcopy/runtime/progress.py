"""Progress display: a reporter thread that redraws a tqdm bar on stderr.

The engine only bumps integer counters (cheap, no locks: one writer); the
thread reads them a few times a second. While the walker is still finding
files the total is unknown, so the bar shows counts, bytes and the rate only
(a percentage or an ETA against a growing total would be a lie: it sat at
100 % and 00:00 for the whole walk); once ``walk_done`` is set it shows a
real percentage and ETA. "Files" are the entries that are not directories.
Lines printed while a bar is shown go through ``lines_above`` so they never
share a line with it. tqdm is imported only when a bar is actually shown.
"""

from __future__ import annotations

import collections
import contextlib
import sys
import threading
import time
from typing import Any, Optional

RATE_WINDOW = 5.0  # seconds of samples behind the rate and the ETA


def human_bytes(n: float) -> str:
    """1024-based units, as everywhere pcopy prints sizes (summaries and the bar)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


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


_shown: list = []  # the bar on screen, if any (at most one)


@contextlib.contextmanager
def lines_above():
    """Print other lines inside this: the bar on screen is cleared first (the thread redraws it)."""
    bar = _shown[0] if _shown else None
    if bar is None:
        yield
        return
    with bar._lock:
        bar._clear()
        yield


class ProgressBar(Counters):
    """Counters plus a thread that draws them with tqdm."""

    def __init__(self, interval: float = 0.2, stream=None) -> None:
        super().__init__()
        self.interval = interval
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pcopy-progress", daemon=True)
        self._lock = threading.Lock()
        self._bar: Any = None
        self._visible = False
        self._started = 0.0
        self._samples: collections.deque = collections.deque()
        self._walk_seen = False

    def start(self) -> None:
        from tqdm import tqdm

        class Bar(tqdm):
            monitor_interval = 0  # we redraw it ourselves: no tqdm monitor thread

        self._started = time.monotonic()
        self._bar = Bar(total=None, file=self.stream, dynamic_ncols=True, leave=True, bar_format="{desc}",
                         mininterval=0, delay=0)
        _shown[:] = [self]
        self._thread.start()

    # ---- what the bar says (pure, for tests)

    def _fraction(self) -> float:
        """The share done: the lesser of files and bytes, so 100 % means both are complete."""
        files = self.files_done / self.files_total if self.files_total else 1.0
        nbytes = self.bytes_done / self.bytes_total if self.bytes_total > 0 else 1.0
        return min(1.0, files, nbytes)

    def _rates(self, now: float) -> tuple:
        """(bytes per second, fraction per second) over the last RATE_WINDOW seconds."""
        samples = self._samples
        if self.walk_done and not self._walk_seen:
            self._walk_seen = True  # the fraction means something from now on: start its samples afresh
            samples.clear()
        samples.append((now, self.bytes_done, self._fraction() if self.walk_done else 0.0))
        while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW:
            samples.popleft()
        then, nbytes, fraction = samples[0]
        span = now - then
        if span <= 0:  # one sample: the averages since the start
            span = now - self._started
            if span <= 0:
                return 0.0, 0.0
            return self.bytes_done / span, self._fraction() / span if self.walk_done else 0.0
        return (self.bytes_done - nbytes) / span, (self._fraction() - fraction) / span if self.walk_done else 0.0

    def text(self, now: Optional[float] = None) -> tuple:
        """(bar_format, description) for the current counts."""
        now = time.monotonic() if now is None else now
        elapsed = now - self._started
        rate, per_second = self._rates(now)
        failed = f", {self.failed} failed" if self.failed else ""
        if not self.walk_done:
            found = f"{self.files_total} found so far"
            return "{desc}", (f"{self.files_done} files, {human_bytes(self.bytes_done)}, "
                              f"{human_bytes(rate)}/s, {clock(elapsed)}{failed} ({found})")
        fraction = self._fraction()
        if fraction >= 1.0:
            eta = "00:00"
        elif per_second > 0:
            eta = clock((1.0 - fraction) / per_second)
        else:
            eta = "?"
        desc = (f"{self.files_done}/{self.files_total} files, {human_bytes(self.bytes_done)}/"
                f"{human_bytes(max(self.bytes_total, self.bytes_done))}, {human_bytes(rate)}/s, "
                f"{clock(elapsed)} ETA {eta}{failed}")
        return "{percentage:3.0f}%|{bar}| {desc}", desc

    # ---- drawing (the thread; ``lines_above`` from the main thread)

    def _draw(self) -> None:
        with self._lock:
            bar = self._bar
            if bar is None:
                return
            bar_format, desc = self.text()
            if self.walk_done:
                bar.total = 1000
                bar.n = int(self._fraction() * 1000)
            bar.bar_format = bar_format
            bar.set_description_str(desc, refresh=False)
            bar.refresh()
            self._visible = True

    def _clear(self) -> None:
        if self._visible and self._bar is not None:
            self._bar.clear()
            self._visible = False

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()

    def close(self) -> None:
        if self._bar is None:
            return
        self._stop.set()
        self._thread.join()
        self._draw()
        with self._lock:
            self._bar.close()
            self._bar = None
            if _shown and _shown[0] is self:
                _shown.clear()


def make_progress(enabled) -> Counters:
    """``enabled``: True/False, or None to show a bar only when stderr is a TTY."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return ProgressBar() if enabled else Counters()
