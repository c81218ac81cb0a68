"""``--bwlimit``: keep a worker's write rate at or below its share of the limit.

Each worker process (or thread) writes at most ``limit / jobs`` bytes per
second, so all of them together stay within the limit; the account spans the
worker's batches of one run (a new run token starts a new account).
"""

from __future__ import annotations

import threading
import time

_accounts: dict = {}  # (token, thread id) -> Throttle
_lock = threading.Lock()


class Throttle:
    def __init__(self, rate: float) -> None:
        self.rate = rate  # bytes per second
        self.started = time.monotonic()
        self.sent = 0

    def __call__(self, nbytes: int) -> None:
        """Account for ``nbytes`` written; sleep while this worker is ahead of its rate."""
        self.sent += nbytes
        ahead = self.sent / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            time.sleep(min(ahead, 5.0))


def for_run(token: str, limit: int, jobs: int):
    """This worker's throttle for the run named ``token``, or None without a limit."""
    if limit <= 0:
        return None
    key = (token, threading.get_ident())
    with _lock:
        account = _accounts.get(key)
        if account is None:
            if len(_accounts) > 64:
                _accounts.clear()
            account = _accounts[key] = Throttle(limit / max(jobs, 1))
        return account
