"""Threads inside a worker process, as many as the storage wants.

One worker process per CPU is right while copying is CPU work (tmpfs, a warm page
cache), and far too few when every file waits on the storage (a network filesystem's
round trips, a cold disk's seeks). A worker process therefore runs the parts of its
work item on up to ``limit`` threads and measures, every ``WINDOW`` seconds, how busy
it is: process CPU time (user + system, all its threads) plus the time its threads
were runnable but waited for a CPU (``/proc/self/task/*/schedstat``: a loaded machine
must not look like slow storage), over wall time. Mostly waiting (below
``GROW_BELOW``): twice the threads; busy (above ``SHRINK_ABOVE``): half. With one
thread the parts run in the calling thread, exactly as without this module. The count
is kept per process across items, so a run finds its level within the first few
windows and keeps it. Threads rather than more processes: waiting
threads cost no CPU and no extra copy of the run's state, and the GIL is released
around every system call the copy makes.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Callable, Optional, Sequence

from . import worker

LIMIT = 16  # threads per worker process at most (the default's ceiling)
WINDOW = 0.05  # seconds of work per measurement
GROW_BELOW, SHRINK_ABOVE = 0.5, 0.9  # CPU time / wall time
IDLE = 0.5  # seconds an idle thread waits for work before it ends


class Gauge:
    """The thread count of one process, adjusted from measured busy ratios."""

    def __init__(self) -> None:
        self.threads = 1
        self.quick = False  # the last item ran on one thread within one window: fast storage

    def observe(self, busy: float, limit: int) -> None:
        if busy < GROW_BELOW and self.threads < limit:
            self.threads = min(self.threads * 2, limit)
        elif busy > SHRINK_ABOVE and self.threads > 1:
            self.threads = max(self.threads // 2, 1)
        self.threads = min(self.threads, limit)


def run_delay() -> float:
    """Seconds this process's threads spent runnable, waiting for a CPU (0 where /proc lacks it)."""
    total = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as fh:
                total += int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


_wall, _cpu, _delay = time.monotonic, time.process_time, run_delay  # a measurement's clocks (tests replace them)
_gauge = Gauge()
_jobs: "queue.SimpleQueue[Callable[[], None]]" = queue.SimpleQueue()
_started = 0
_lock = threading.Lock()


def gauge() -> Gauge:
    return _gauge


def run_parts(parts: Sequence, fn: Callable, limit: int) -> list:
    """``[fn(part) for part in parts]``, on up to ``limit`` threads as the gauge decides.

    ``fn`` must not raise for a part's own failure (it returns it); anything it raises
    is raised here once every started part has finished.
    """
    if limit <= 1 or not parts:
        return [fn(part) for part in parts]
    started = _wall()
    stop = worker.stop_flag()
    results: list = [None] * len(parts)
    done: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
    raised: Optional[BaseException] = None
    window = _Window()
    nxt = running = 0
    while nxt < len(parts) or running:
        while nxt < len(parts) and running < _gauge.threads and raised is None:
            if _gauge.threads == 1 and not running:
                results[nxt] = fn(parts[nxt])  # one thread: the caller's own
                nxt += 1
                window.tick(limit)
                continue
            _submit(_job(fn, parts, nxt, done, stop), _gauge.threads)
            nxt += 1
            running += 1
        if not running:
            if raised is not None or nxt >= len(parts):
                break
            continue
        i, value, exc = done.get()
        running -= 1
        results[i] = value
        if exc is not None and raised is None:
            raised = exc
        window.tick(limit)
    if raised is not None:
        raise raised
    _gauge.quick = _gauge.threads == 1 and _wall() - started < WINDOW
    return results


class _Window:
    """CPU and wall time since the last measurement."""

    def __init__(self) -> None:
        self.wall, self.cpu, self.delay = _wall(), _cpu(), _delay()

    def tick(self, limit: int) -> None:
        now = _wall()
        if now - self.wall >= WINDOW:
            cpu, delay = _cpu(), _delay()
            # a thread that ended takes its delay out of the sum: never below zero
            _gauge.observe((cpu - self.cpu + max(0.0, delay - self.delay)) / (now - self.wall), limit)
            self.wall, self.cpu, self.delay = now, cpu, delay


def _job(fn: Callable, parts: Sequence, i: int, done: queue.SimpleQueue, stop) -> Callable[[], None]:
    def job() -> None:
        worker.init_inner(stop)
        try:
            done.put((i, fn(parts[i]), None))
        except BaseException as exc:  # handed to the caller's thread
            done.put((i, None, exc))
    return job


def _submit(job: Callable[[], None], threads: int) -> None:
    """Queue ``job`` with at least ``threads`` threads serving the queue. Daemon threads: a worker
    process that exits or is killed never waits for them; idle for ``IDLE`` seconds, they end."""
    global _started
    with _lock:
        while _started < threads:
            threading.Thread(target=_serve, name=f"pcopy-inner-{_started}", daemon=True).start()
            _started += 1
        _jobs.put(job)


def _serve() -> None:
    global _started
    while True:
        try:
            job = _jobs.get(timeout=IDLE)
        except queue.Empty:
            with _lock:  # a job queued meanwhile (under the lock) keeps this thread
                if _jobs.empty():
                    _started -= 1
                    return
            continue
        job()
