"""BoundedPool: back-pressure, errors as values, and a prompt abort."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from conftest import children, still_running

from pcopy.errors import UsageError
from pcopy.runtime import backend, pool, process


def thread_pool(jobs: int, max_in_flight: int) -> pool.BoundedPool:
    return pool.BoundedPool(backend.make_backend("thread", jobs), max_in_flight)


def test_never_more_than_max_in_flight():
    bp = thread_pool(jobs=3, max_in_flight=4)
    produced = consumed = 0
    worst = 0

    def items():
        nonlocal produced, worst
        for i in range(60):
            produced += 1
            worst = max(worst, produced - consumed)
            yield i

    def work(i):
        time.sleep(0.002 * (i % 3))
        return i * i

    got = {}
    try:
        for item, result, exc in bp.map_unordered(work, items()):
            consumed += 1
            assert exc is None
            got[item] = result
            assert produced - consumed <= 4
    finally:
        bp.close()
    assert got == {i: i * i for i in range(60)}
    assert worst == 4  # the bound was reached (the test is meaningful) and never passed


def test_slow_consumer_stops_the_producer():
    """While the consumer sits on a result, nothing more is pulled from the generator."""
    bp = thread_pool(jobs=2, max_in_flight=3)
    produced = []

    def items():
        for i in range(20):
            produced.append(i)
            yield i

    gen = bp.map_unordered(lambda i: i, items())
    try:
        next(gen)
        time.sleep(0.2)  # workers are idle now; the producer must still be waiting
        assert len(produced) <= 3
    finally:
        gen.close()
        bp.abort(1.0)


def test_worker_exception_is_returned_not_raised():
    bp = thread_pool(jobs=2, max_in_flight=2)

    def work(i):
        if i == 3:
            raise ValueError("boom")
        return i

    try:
        out = {item: (result, exc) for item, result, exc in bp.map_unordered(work, range(6))}
    finally:
        bp.close()
    assert isinstance(out[3][1], ValueError) and out[3][0] is None
    assert {i: r for i, (r, e) in out.items() if e is None} == {0: 0, 1: 1, 2: 2, 4: 4, 5: 5}


def test_check_can_stop_the_loop():
    bp = thread_pool(jobs=1, max_in_flight=1)
    release = threading.Event()
    calls = []

    def check():
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        for _ in bp.map_unordered(lambda i: release.wait(5), range(5), check):
            pass
    release.set()
    bp.abort(1.0)


def test_abort_returns_in_flight_items_and_stops_workers():
    bp = thread_pool(jobs=3, max_in_flight=3)
    stop = bp.backend.stop_event
    started = threading.Semaphore(0)

    def work(i):
        if i == 0:
            return "quick"
        started.release()
        stop.wait(10)  # a worker that honours the stop flag, like fsops does
        return "stopped"

    gen = bp.map_unordered(work, iter(range(100)))
    item, result, exc = next(gen)
    assert (item, result) == (0, "quick")
    assert started.acquire(timeout=5) and started.acquire(timeout=5)
    t0 = time.monotonic()
    in_flight = bp.abort(grace=2.0)
    gen.close()
    assert time.monotonic() - t0 < 1.0
    assert sorted(in_flight) == [1, 2]
    assert stop.is_set()
    assert bp.in_flight() == []


def test_process_backend_abort_kills_stuck_workers():
    """A worker that ignores the stop flag is killed once the grace period is over."""
    before = children(os.getpid())
    bp = pool.BoundedPool(process.ProcessBackend(2, start_method="fork"), max_in_flight=2)
    deadline = time.monotonic() + 0.3

    def check():  # as the engine's signal guard does after Ctrl-C
        if time.monotonic() > deadline:
            raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        for _ in bp.map_unordered(time.sleep, iter([30, 30, 30]), check):
            pass
    workers = children(os.getpid()) - before
    items = bp.abort(grace=0.2)
    elapsed = time.monotonic() - t0
    assert sorted(items) == [30, 30]
    assert elapsed < 5, f"abort took {elapsed:.1f} s"
    assert len(workers) == 2
    assert still_running(workers) == set()


def test_pushed_items_run_before_new_ones():
    bp = thread_pool(jobs=1, max_in_flight=1)
    order = []
    try:
        for item, _result, _exc in bp.map_unordered(lambda i: i, iter(["a", "b", "c"])):
            order.append(item)
            if item == "a":
                bp.push("pushed")
    finally:
        bp.close()
    assert order == ["a", "pushed", "b", "c"]


def test_make_backend_rejects_unknown():
    with pytest.raises(UsageError):
        backend.make_backend("dask-but-not-installed", 1)


def _probe():
    """In a worker: the pid, and whether it inherited the parent's memory (fork) or not (spawn)."""
    return os.getpid(), getattr(pool, "_TEST_PROBE", None)


@pytest.mark.parametrize("method, inherited", [("fork", "set in parent"), ("spawn", None)])
def test_process_backend_start_method_from_env(monkeypatch, method, inherited):
    monkeypatch.setenv("PCOPY_START_METHOD", method)
    monkeypatch.setattr(pool, "_TEST_PROBE", "set in parent", raising=False)
    workers = process.ProcessBackend(1)
    try:
        future = workers.submit(_probe)
        assert workers.wait([future], 30) == {future}  # the process backend's futures settle in wait()
        pid, probe = future.result()
    finally:
        workers.shutdown()
    assert pid != os.getpid()
    assert probe == inherited


def test_process_backend_replaces_a_worker_that_died_while_idle():
    """Sending to a worker killed between items must not fail the run: the item goes to a new worker."""
    workers = process.ProcessBackend(2, start_method="fork")
    try:
        workers.start()
        dead = [w.process.pid for w in workers._workers]
        for pid in dead:
            os.kill(pid, signal.SIGKILL)
        for worker in workers._workers:  # wait until the kill has landed
            worker.process.join(timeout=5)
        future = workers.submit(os.getpid)
        assert workers.wait([future], 30) == {future}
        assert future.result() not in dead and future.result() != os.getpid()
    finally:
        workers.shutdown()
