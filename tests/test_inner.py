"""Threads inside a worker process that follow how busy it is (runtime.inner)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from conftest import make_tree

from pcopy.model import entries
from pcopy.model.batching import Bundle
from pcopy.model.entries import Batch, Task
from pcopy.options import Options, build
from pcopy.runtime import inner, worker
from pcopy.transfer import worker as transfer_worker


@pytest.fixture(autouse=True)
def fresh_gauge(monkeypatch):
    monkeypatch.setattr(inner, "_gauge", inner.Gauge())
    return inner._gauge


class Clocks:
    """Fake wall and CPU clocks: each part advances wall by 20 ms and CPU by ``busy`` of that."""

    def __init__(self, busy: float, queued: float = 0.0) -> None:
        self.busy, self.queued, self.wall, self.cpu, self.delay = busy, queued, 0.0, 0.0, 0.0
        self.lock = threading.Lock()

    def advance(self) -> None:
        with self.lock:
            self.wall += 0.02
            self.cpu += 0.02 * self.busy
            self.delay += 0.02 * self.queued


def _use(monkeypatch, clocks: Clocks) -> None:
    monkeypatch.setattr(inner, "_wall", lambda: clocks.wall)
    monkeypatch.setattr(inner, "_cpu", lambda: clocks.cpu)
    monkeypatch.setattr(inner, "_delay", lambda: clocks.delay)


def test_gauge_doubles_while_waiting_halves_while_busy_and_stays_in_between():
    g = inner.Gauge()
    for want in (2, 4, 8, 8):
        g.observe(0.1, limit=8)
        assert g.threads == want
    g.observe(0.7, limit=8)
    assert g.threads == 8
    for want in (4, 2, 1, 1):
        g.observe(0.99, limit=8)
        assert g.threads == want


def test_busy_parts_run_in_the_calling_thread(monkeypatch, fresh_gauge):
    clocks = Clocks(busy=1.0)
    _use(monkeypatch, clocks)
    seen = []

    def part(n):
        clocks.advance()
        seen.append(threading.get_ident())
        return n * 2

    assert inner.run_parts(list(range(40)), part, limit=16) == [n * 2 for n in range(40)]
    assert set(seen) == {threading.get_ident()} and fresh_gauge.threads == 1


def test_waiting_for_a_cpu_is_not_waiting_for_the_storage(monkeypatch, fresh_gauge):
    """A loaded machine: the worker ran 30% of the time and waited for a CPU 65%: no more threads."""
    clocks = Clocks(busy=0.3, queued=0.65)
    _use(monkeypatch, clocks)
    assert inner.run_parts(list(range(40)), lambda n: (clocks.advance(), n)[1], limit=16) == list(range(40))
    assert fresh_gauge.threads == 1
    clocks.queued = 0.0  # the same work on an idle machine: it waits on the storage, threads double
    inner.run_parts(list(range(40)), lambda n: (clocks.advance(), n)[1], limit=16)
    assert fresh_gauge.threads > 1


def test_run_delay_reads_this_process_s_threads():
    before = inner.run_delay()
    assert before >= 0.0 and inner.run_delay() >= before


def test_waiting_parts_get_more_threads_and_keep_their_order(monkeypatch, fresh_gauge):
    clocks = Clocks(busy=0.05)
    _use(monkeypatch, clocks)
    running, peak, lock = [0], [0], threading.Lock()
    gate = threading.Barrier(2, timeout=30)  # two parts inside at once: proves they overlap

    def part(n):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        if n in (30, 31):
            gate.wait()
        clocks.advance()
        with lock:
            running[0] -= 1
        return n

    assert inner.run_parts(list(range(200)), part, limit=8) == list(range(200))
    assert fresh_gauge.threads == 8 and peak[0] >= 2


def test_the_run_s_stop_flag_reaches_the_threads(monkeypatch, fresh_gauge):
    _use(monkeypatch, Clocks(busy=0.0))
    fresh_gauge.threads = 4
    stop = threading.Event()
    worker.init(stop, in_subprocess=False)
    try:
        flags = inner.run_parts(list(range(12)), lambda n: worker.stop_flag(), limit=4)
    finally:
        worker.init(None, in_subprocess=False)
    assert all(flag is stop for flag in flags)


def test_an_exception_is_raised_after_the_started_parts_finished(monkeypatch, fresh_gauge):
    _use(monkeypatch, Clocks(busy=0.0))
    fresh_gauge.threads = 4
    finished = []

    def part(n):
        if n == 3:
            raise RuntimeError("bug")
        time.sleep(0.01)
        finished.append(n)
        return n

    with pytest.raises(RuntimeError, match="bug"):
        inner.run_parts(list(range(8)), part, limit=4)
    assert {0, 1, 2} <= set(finished)


def test_a_slow_storage_bundle_is_copied_on_several_threads(tmp_path, monkeypatch, fresh_gauge):
    """The real copy path in this process: every source open waits 10 ms (a network filesystem's
    round trip). The first bundle's probe part shows it, the thread count rises, and the next
    bundle runs on several threads; every file arrives, results in task order."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    names = [f"f{i:03d}" for i in range(48)]
    make_tree(src, {f"{d}/{n}": n.encode() * 50 for d in ("d1", "d2") for n in names})
    (dst / "d1").mkdir(parents=True)
    (dst / "d2").mkdir()
    real_open = os.open
    threads = set()

    def slow_open(path, flags, *args, dir_fd=None, **kwargs):
        if dir_fd is not None and isinstance(path, str) and path.startswith("f") and not flags & os.O_WRONLY:
            threads.add(threading.get_ident())
            time.sleep(0.01)  # waits without CPU, as a remote read does
        return real_open(path, flags, *args, dir_fd=dir_fd, **kwargs)

    monkeypatch.setattr(os, "open", slow_open)
    options = Options(src=str(src), dst=str(dst), token="inner1", inner_threads=inner.LIMIT)
    for d in ("d1", "d2"):
        (results,) = transfer_worker.run_bundle(options, Bundle((Batch(d, tuple(Task(entries.COPY, n, 150)
                                                                                  for n in names)),)))
        assert [r.relpath for r in results] == [f"{d}/{n}" for n in names]
        assert all(r.status == "copied" for r in results), [r for r in results if r.status != "copied"][:3]
        assert all((dst / d / n).read_bytes() == n.encode() * 50 for n in names)
    assert fresh_gauge.threads > 1 and len(threads) > 1


def test_a_bundle_done_within_one_window_makes_the_next_one_run_its_batches_whole(monkeypatch, fresh_gauge):
    clocks = Clocks(busy=1.0)
    _use(monkeypatch, clocks)
    inner.run_parts([1], lambda n: n, limit=16)  # no time passed: fast storage
    assert fresh_gauge.quick
    batch = Batch("d", tuple(Task(entries.COPY, f"f{i}", 1) for i in range(150)))
    assert [len(p.tasks) for _, p in transfer_worker._parts(Bundle((batch, batch)), -1)] == [150, 150]
    inner.run_parts([1, 2, 3], lambda n: (clocks.advance(), clocks.advance(), clocks.advance(), n)[-1], limit=16)
    assert not fresh_gauge.quick  # that one took longer than a window


def test_one_thread_runs_big_parts_after_a_probe():
    """On one thread a part costs a batch's set-up: a probe of INNER_PART files, then big parts."""
    batch = Batch("d", tuple(Task(entries.COPY, f"f{i}", 1) for i in range(150)))
    parts = transfer_worker._parts(Bundle((batch, Batch("e", ()), batch)), 0)
    assert [len(p.tasks) for _, p in parts] == [8, 64, 64, 14, 64, 64, 22]
    assert [len(p.tasks) for _, p in transfer_worker._parts(Bundle((batch,)), 8)] == [8] * 18 + [6]


@pytest.mark.parametrize("kwargs, adapts", [
    ({}, True),
    ({"jobs": 2}, False),
    ({"backend": "thread"}, False),
    ({"bwlimit": 1 << 20}, False),
])
def test_only_the_default_worker_count_adapts(tmp_path, kwargs, adapts):
    options = build(tmp_path / "s", tmp_path / "d", **kwargs)
    assert options.inner_threads == (inner.LIMIT if adapts else 1)
