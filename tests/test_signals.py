"""Interrupting a real ``python -m pcopy copy`` run: prompt exit, nothing half-written left.

The source tree holds small files (copied at once) and a few sparse 3 GiB
files: they take no disk space in SRC but many seconds to copy, so the signal
always lands while big files are being written. The signal is sent once DST
holds a finished file *and* a temporary file of more than 64 MiB.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import xxhash
from conftest import PYTHON, descendants, file_xxh128, make_tree, still_running, temp_files, tree_snapshot, walk_paths

import pcopy
from pcopy.fs import temps

BIG = 3 << 30
N_SMALL = 60
N_BIG = 4
EXIT_WITHIN = 2.5  # seconds from the signal to the exit


@pytest.fixture(scope="module")
def big_src(tmp_path_factory):
    src = tmp_path_factory.mktemp("signals") / "src"
    src.mkdir()
    for i in range(N_SMALL):
        (src / f"a{i:03d}").write_bytes(xxhash.xxh3_128(str(i).encode()).digest() * 2048)  # 32 KiB
    for i in range(N_BIG):
        with open(src / f"z{i}", "wb") as f:  # sparse: only the markers take space
            f.truncate(BIG)
            f.write(b"head %d" % i)
            f.seek(BIG // 2)
            f.write(b"middle")
            f.seek(BIG - 4)
            f.write(b"tail")
    return src


@pytest.fixture
def dst(tmp_path):
    """DST for one test, removed afterwards (a failed test may leave GiB-sized temp files in it)."""
    path = tmp_path / "dst"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _size(path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _copy_is_under_way(dst) -> bool:
    try:
        names = os.listdir(dst)
    except FileNotFoundError:
        return False
    return (any(not n.startswith(temps.TMP_PREFIX) for n in names)
            and any(n.startswith(temps.TMP_PREFIX) and _size(dst / n) > (64 << 20) for n in names))


def _start(src, dst, *extra):
    proc = subprocess.Popen([PYTHON, "-m", "pcopy", "copy", str(src), str(dst), "--no-progress", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 30
    while not _copy_is_under_way(dst):
        if proc.poll() is not None or time.monotonic() > deadline:
            _kill(proc)
            pytest.fail(f"the copy did not get under way (rc={proc.returncode}): {proc.stderr.read()!r}")
        time.sleep(0.005)
    return proc


def _kill(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _interrupt(big_src, dst, signum, to_group: bool, backend: str, *extra):
    proc = _start(big_src, dst, "--backend", backend, *extra)
    try:
        workers = descendants(proc.pid)
        (os.killpg if to_group else os.kill)(proc.pid, signum)
        t0 = time.monotonic()
        try:
            proc.wait(timeout=EXIT_WITHIN + 0.5)
        except subprocess.TimeoutExpired:
            pass
        elapsed = time.monotonic() - t0
        returncode = proc.poll()
    finally:
        _kill(proc)
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stdout.close()
        proc.stderr.close()
    return returncode, elapsed, stderr, workers


def _assert_clean_interrupted_copy(big_src, dst) -> None:
    assert temp_files(dst) == []
    copied = walk_paths(dst)
    assert copied, "nothing was copied before the signal"
    assert len(copied) < N_SMALL + N_BIG, "the copy finished: the signal came too late to test anything"
    for rel in copied:
        src_file, dst_file = big_src / rel, dst / rel
        assert os.path.getsize(dst_file) == os.path.getsize(src_file), f"incomplete file under its final name: {rel}"
        assert file_xxh128(dst_file) == file_xxh128(src_file), rel


def _assert_no_process_left(workers) -> None:
    deadline = time.monotonic() + 1.0
    while still_running(workers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert still_running(workers) == set(), "worker processes outlived pcopy"


CASES = [
    # (signal, sent to the whole process group like Ctrl-C does, backend)
    pytest.param(signal.SIGINT, True, "process", id="SIGINT-group-process"),
    pytest.param(signal.SIGINT, False, "process", id="SIGINT-pid-process"),
    pytest.param(signal.SIGTERM, False, "process", id="SIGTERM-pid-process"),
    pytest.param(signal.SIGINT, True, "thread", id="SIGINT-group-thread"),
    pytest.param(signal.SIGTERM, False, "thread", id="SIGTERM-pid-thread"),
    pytest.param(signal.SIGTERM, True, "process", id="SIGTERM-group-process"),
]


@pytest.mark.parametrize("signum, to_group, backend", CASES)
def test_interrupt_exits_promptly_and_cleanly(big_src, dst, signum, to_group, backend):
    manifest = dst.parent / "MANIFEST"
    returncode, elapsed, stderr, workers = _interrupt(big_src, dst, signum, to_group, backend,
                                                      "--manifest", str(manifest))

    assert returncode == 128 + signum, stderr
    assert elapsed < EXIT_WITHIN, f"took {elapsed:.2f} s to exit after the signal"
    assert "Traceback" not in stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stderr
    if backend == "process":
        assert workers, "no worker processes were seen"
    _assert_no_process_left(workers)
    _assert_clean_interrupted_copy(big_src, dst)
    assert [p.name for p in dst.parent.iterdir() if p.name.startswith("MANIFEST")] == []  # no half manifest


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_next_run_removes_stale_temp_files(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a", "sub/b": b"b"})
    pid = _dead_pid()
    make_tree(dst, {f"sub/{temps.TMP_PREFIX}0badf00d-{pid}-7": b"half a file from a killed run",
                    f"{temps.TMP_PREFIX}0badf00d-{pid}-8": b"another"})
    report = pcopy.copytree(src, dst, backend="thread")
    assert report.failed == 0
    assert temp_files(dst) == []
    assert tree_snapshot(dst) == tree_snapshot(src)


def test_temp_files_of_a_live_writer_are_left_alone(tmp_path):
    """A concurrent run's temp file (its writer is alive) must not be pulled from under it."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a"})
    busy = f"{temps.TMP_PREFIX}0badf00d-{os.getpid()}-1"
    make_tree(dst, {busy: b"being written"})
    report = pcopy.copytree(src, dst, backend="thread")
    assert report.failed == 0
    assert temp_files(dst) == [busy]


def test_sigkill_then_rerun_completes(big_src, tmp_path):
    """The 'Nothing is lost' contract end to end: kill -9 mid-copy, run again, get the full tree."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a000", "a001", "a002"):
        shutil.copyfile(big_src / name, src / name)
    with open(src / "z0", "wb") as f:
        f.truncate(256 << 20)
        f.write(b"head")
    dst = tmp_path / "dst"
    proc = _start(src, dst, "--backend", "thread")
    _kill(proc)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert temp_files(dst), "the kill did not land while a file was being written"
    # even kill -9 leaves no half-written file under a final name (temp file + rename)
    for rel in walk_paths(dst):
        if not os.path.basename(rel).startswith(temps.TMP_PREFIX):
            assert file_xxh128(dst / rel) == file_xxh128(src / rel), rel
    report = pcopy.copytree(src, dst, backend="thread")
    assert report.failed == 0
    assert temp_files(dst) == []
    assert tree_snapshot(dst) == tree_snapshot(src)


def _writers_of_big_temp_files(dst, min_size: int) -> set:
    """Pids of processes holding open a temp file in ``dst`` that has grown past ``min_size``."""
    try:
        names = [n for n in os.listdir(dst) if n.startswith(temps.TMP_PREFIX) and _size(dst / n) > min_size]
    except FileNotFoundError:
        return set()
    targets = {str(dst / n) for n in names}
    pids = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    pids.add(int(pid))
        except OSError:
            continue
    return pids


class WorkerKiller:
    """A thread that SIGKILLs the worker process writing a big temp file in DST, up to ``times`` times."""

    def __init__(self, dst, times: int) -> None:
        self.dst, self.times = dst, times
        self.killed: list = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-killer")

    def _run(self) -> None:
        while not self._done.is_set() and len(self.killed) < self.times:
            for pid in _writers_of_big_temp_files(self.dst, 16 << 20):
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


@pytest.fixture
def sparse_src(tmp_path):
    """A small file and a dense 160 MiB one (dense: a file with holes is copied hole by hole, too fast to
    catch a worker in the middle of it)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "small").write_bytes(b"s")
    block = os.urandom(1 << 20)
    with open(src / "huge", "wb") as f:
        for _ in range(160):
            f.write(block)
    return src


def test_dead_worker_batch_is_retried_and_its_temp_removed(sparse_src, dst):
    with WorkerKiller(dst, times=1) as killer:
        report = pcopy.copytree(sparse_src, dst, backend="process", jobs=1)
    assert len(killer.killed) == 1, "no worker was killed"
    assert report.failed == 0 and report.copied == 2
    assert temp_files(dst) == []
    assert file_xxh128(dst / "huge") == file_xxh128(sparse_src / "huge")


def test_worker_that_keeps_dying_is_a_failure_without_leftovers(sparse_src, dst):
    with WorkerKiller(dst, times=5) as killer:
        report = pcopy.copytree(sparse_src, dst, backend="process", jobs=1)
    assert len(killer.killed) >= 2
    assert [r.relpath for r in report.failures] == ["huge"]
    assert "worker" in report.failures[0].message
    assert temp_files(dst) == []
    assert not os.path.lexists(dst / "huge")
    assert (dst / "small").read_bytes() == b"s"


def test_a_signal_after_a_nested_runs_last_check_reaches_the_outer_loop():
    """Watch runs a copy (with its own guard) per batch: a Ctrl-C landing after that copy's last check
    must still stop the watch loop (it was lost, and watch kept running, before guards nested)."""
    from pcopy.errors import Interrupted
    from pcopy.runtime.signals import SignalGuard

    with SignalGuard() as outer:
        with SignalGuard() as inner:
            inner.check()
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 10
            while inner.signum is None and time.monotonic() < deadline:
                time.sleep(0.01)  # the handler runs in this (main) thread between bytecodes
        with pytest.raises(Interrupted) as info:
            outer.check()
    assert info.value.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored once, by the outer


def test_a_stop_event_of_a_nested_run_stops_that_run():
    from pcopy.errors import Interrupted
    from pcopy.runtime.signals import SignalGuard

    stop = threading.Event()
    with SignalGuard() as outer:
        with SignalGuard(stop) as inner:
            stop.set()
            with pytest.raises(Interrupted):
                inner.check()
        outer.check()  # the inner run's stop request is its own
