"""Worker threads in this process: fine for big files (I/O and xxhash release the GIL)."""

from __future__ import annotations

import threading
import time

from . import worker

JOIN_TIMEOUT = 2.0


class ThreadBackend:
    def __init__(self, jobs: int) -> None:
        import concurrent.futures as cf  # only for threads: it pulls in logging (start-up time)

        self._cf = cf
        self.stop_event = threading.Event()
        self.jobs = jobs
        self._executor = cf.ThreadPoolExecutor(jobs, thread_name_prefix="pcopy-worker", initializer=worker.init,
                                               initargs=(self.stop_event, False))
        self.started = False

    def start(self) -> None:
        """Threads start with their first item."""

    def submit(self, fn, *args):
        self.started = True
        return self._executor.submit(fn, *args)

    def wait(self, futures, timeout: float):
        return self._cf.wait(futures, timeout, return_when=self._cf.FIRST_COMPLETED)[0]

    def lost_items(self) -> list:
        return []

    def shutdown(self, kill: bool = False) -> None:
        """Threads cannot be killed: with ``kill`` the stop flag is set, queued items are cancelled
        and running ones get ``JOIN_TIMEOUT`` seconds to notice it."""
        if not kill:
            self._executor.shutdown(wait=True)
            return
        self.stop_event.set()
        threads = list(getattr(self._executor, "_threads", ()))
        self._executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
