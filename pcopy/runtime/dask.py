"""Run the worker function on a Dask cluster: the only module importing ``distributed``.

    engine ─► BoundedPool ─► DaskBackend.submit ──tcp──► scheduler ─► Dask workers
                 ▲               (one task per bundle,                 │ pcopy_batch(fn, bundle)
                 │                retries, pure=False)                 │   = transfer.worker.run_bundle
                 └── DaskBackend.wait ◄── done callbacks ◄─────────────┘ list of Result

The client process still walks and plans; only batches travel. Each task is
``pcopy_batch(functools.partial(transfer.worker.run_bundle, options), bundle)``: the same
worker function as local mode, so every worker must have pcopy installed and
must see SRC and DST at the same paths as the client (checked at start-up
with a probe file written into DST).

Lost workers: the scheduler reruns the batches a dead worker held (up to its
``allowed-failures``), and ``retries`` reruns a batch whose task raised. A
rerun is harmless because every file is written to a temporary name and
renamed; the batches a dead worker held are reported by ``lost_items`` so the
engine can remove that worker's stale temporary files at the end. A batch
that still fails becomes one failed result per file, never a silent gap.

Stopping: ``stop_event.set()`` (Ctrl-C) sets a ``distributed.Event`` that
running batches poll at most every ``STOP_POLL`` seconds between files, the
way local workers check their shared event; queued batches are cancelled.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from typing import Optional

import distributed

from ..errors import PcopyError, describe
from ..fs.temps import TMP_PREFIX
from . import worker

CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler and to wait for a first worker
STOP_POLL = 0.5  # seconds between a running batch's checks of the stop event
RETRIES = 2  # reruns of a batch whose task raised (lost workers are rerun by the scheduler)
PROBE_PREFIX = TMP_PREFIX + "probe-"


class _RemoteStop:
    """Worker side: an ``is_set()`` that asks the scheduler's Event at most every STOP_POLL s."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._set = False
        self._checked = 0.0

    def is_set(self) -> bool:
        if not self._set:
            now = time.monotonic()
            if now - self._checked >= STOP_POLL:
                self._checked = now
                try:
                    self._set = distributed.Event(self.name).is_set()
                except Exception:  # scheduler unreachable: the client's cancel still applies
                    pass
        return self._set


_stops: dict = {}  # stop-event name → _RemoteStop, per worker process (a few runs at most)


class _Opaque:
    """Carries a batch past Dask's argument scan, which walks every nested tuple
    looking for futures (a 256-task batch cost ~8 ms of client CPU per submit)."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value

    def __reduce__(self):
        return _Opaque, (self.value,)


def pcopy_batch(fn, item, stop_name: str):
    """The task a Dask worker runs: ``fn(item)`` with the run's stop flag installed.

    Threads of a Dask worker serve many clients, so the process-wide changes
    of local process workers (umask, signal handlers) are not made here.
    """
    stop = _stops.get(stop_name)
    if stop is None:
        if len(_stops) > 16:
            _stops.clear()
        stop = _stops[stop_name] = _RemoteStop(stop_name)
    worker.init(stop, in_subprocess=False)
    return fn(item.value if isinstance(item, _Opaque) else item)


def _check_roots(src: str, dst: str, probe: str, nonce: str) -> Optional[str]:
    """Worker side: None when SRC is a directory and DST holds the client's probe file."""
    if not os.path.isdir(src):
        return f"cannot see SRC {src}"
    try:
        fd = os.open(os.path.join(dst, probe), os.O_RDONLY | os.O_CLOEXEC)
        try:
            seen = os.read(fd, 64)
        finally:
            os.close(fd)
    except OSError as exc:
        return f"sees a different DST at {dst} (no probe file: {describe(exc)})"
    return None if seen == nonce.encode() else f"sees a different DST at {dst} (wrong probe file)"


class _StopEvent:
    """Client side: a local event that also sets the cluster-wide one, once."""

    def __init__(self, client, name: str) -> None:
        self._local = threading.Event()
        self._remote = distributed.Event(name, client=client)

    def set(self) -> None:
        if self._local.is_set():
            return
        self._local.set()
        try:
            self._remote.set()
        except Exception:  # the scheduler is gone: cancelling futures is all we can do
            pass

    def is_set(self) -> bool:
        return self._local.is_set()


def _connect(address: str):
    client = distributed.Client.__new__(distributed.Client)  # keep a handle if __init__ fails
    try:
        client.__init__(address, timeout=CONNECT_TIMEOUT, set_as_default=False)  # type: ignore[misc]
    except (OSError, TimeoutError, ValueError) as exc:
        try:  # a failed start leaves the client's event-loop thread running (distributed 2026.8)
            client._loop_runner.stop()
        except Exception:
            pass
        raise PcopyError(f"{address}: cannot connect to the Dask scheduler: {describe(exc)}") from None
    return client


class DaskBackend:
    """A pool backend whose workers are the threads of a Dask cluster's workers.

    ``scheduler`` is an address (``tcp://host:port``) or an existing
    ``distributed.Client`` (then it is used and left open). ``jobs`` is the
    parallelism the pool sizes its in-flight window by; by default the
    cluster's total worker threads when it starts. ``roots`` (SRC, DST) are
    checked on every worker present at start-up.
    """

    def __init__(self, scheduler, jobs: Optional[int] = None, roots: Optional[tuple] = None) -> None:
        if isinstance(scheduler, distributed.Client):
            self.client, self._own_client = scheduler, False
        else:
            self.client, self._own_client = _connect(scheduler), True
        try:
            self.jobs = jobs or self._cluster_threads()
            if roots is not None:
                self.check_roots(*roots)
            self._stop_name = "pcopy-stop-" + secrets.token_hex(8)
            self.stop_event = _StopEvent(self.client, self._stop_name)
            self._wake = threading.Event()
            self._lock = threading.Lock()
            self._in_flight: dict = {}  # task key → item, until its future is done
            self._lost: list = []  # items a worker held when it left the cluster
            self.client.subscribe_topic("all", self._on_cluster_event)
        except BaseException:
            self._close_client()
            raise

    # ---------------------------------------------------------------- start-up

    def _cluster_threads(self) -> int:
        threads = sum(self.client.nthreads().values())
        if threads == 0:
            try:
                self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                raise PcopyError(f"{self.client.scheduler.address}: the Dask cluster has no workers "
                                 f"(waited {CONNECT_TIMEOUT:.0f} s)") from None
            threads = sum(self.client.nthreads().values())
        return max(1, threads)

    def check_roots(self, src: str, dst: str) -> None:
        """Every worker must see SRC and the very same DST (a probe file proves it)."""
        probe = PROBE_PREFIX + secrets.token_hex(8)
        nonce = secrets.token_hex(16)
        path = os.path.join(dst, probe)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, nonce.encode())
            os.close(fd)
            answers = self.client.run(_check_roots, src, dst, probe, nonce)
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        bad = sorted((worker, why) for worker, why in answers.items() if why is not None)
        if bad:
            worker, why = bad[0]
            more = f" (and {len(bad) - 1} more workers)" if len(bad) > 1 else ""
            raise PcopyError(f"Dask worker {worker} {why}{more}: every worker must see SRC and DST "
                             f"at the same paths as this machine")

    # ---------------------------------------------------------------- the backend interface

    started = True  # the cluster's workers are already running

    def start(self) -> None:
        """The cluster's workers are already running."""

    def submit(self, fn, item):
        future = self.client.submit(pcopy_batch, fn, _Opaque(item), self._stop_name, pure=False, retries=RETRIES)
        with self._lock:
            self._in_flight[future.key] = item
        future.add_done_callback(self._on_done)
        return future

    def _on_done(self, future) -> None:
        with self._lock:
            self._in_flight.pop(future.key, None)
        self._wake.set()

    def _on_cluster_event(self, event) -> None:
        _, msg = event
        if not isinstance(msg, dict) or msg.get("action") != "remove-worker":
            return
        with self._lock:
            for key in msg.get("processing-tasks") or ():
                item = self._in_flight.get(key)
                if item is not None:
                    self._lost.append(item)

    def wait(self, futures, timeout):
        """The done ones among ``futures``, waiting up to ``timeout`` s for one."""
        self._wake.clear()
        done = [f for f in futures if f.done()]
        if done or not futures:
            return done
        self._wake.wait(timeout)
        return [f for f in futures if f.done()]

    def lost_items(self) -> list:
        with self._lock:
            return list(self._lost)

    def shutdown(self, kill: bool = False) -> None:
        """Close the client, never the cluster.

        With ``kill`` the pool has already cancelled the futures and set the
        stop event, which running batches see within STOP_POLL seconds (the
        event stays set on the scheduler for them; Dask workers are shared,
        so they are never killed).
        """
        try:
            self.client.unsubscribe_topic("all")
        except Exception:
            pass
        self._close_client()

    def _close_client(self) -> None:
        if self._own_client:
            self.client.close()
