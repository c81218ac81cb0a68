"""SIGKILL of a real ``python -m pcopy`` run (parent and workers) at several points, then a re-run.

The run is started in its own session under a tiny *subreaper* process, so
the killed workers are reaped (this machine's pid 1 does not reap orphans;
see ``test_stale_temp_of_a_zombie_writer_is_removed`` for what that does).
The whole process group is SIGKILLed: nothing of pcopy's can clean up.
Afterwards every final-named file in DST must be complete and identical;
temp files may remain. A re-run must exit 0, remove them and finish the copy.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
import xxhash
from conftest import PYTHON, make_tree, temp_files
from fault_helpers import (
    assert_nothing_lost,
    dead_pid,
    env,
    pcopy_cmd,
    run_pcopy,
    sentinel,  # noqa: F401 (fixture)
    snapshots_equal,
    verify_ok,
    zombie_pid,
)

from pcopy.fs import temps

pytestmark = pytest.mark.faults

BIG_SIZES = (20 << 20, 35 << 20, 50 << 20)
SMALL_DIRS, SMALL_PER_DIR = 8, 60

REAPER = r"""
import ctypes, os, subprocess, sys
from pcopy.fs import temps
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
child = subprocess.Popen(sys.argv[1:], start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=open(os.environ["PCOPY_TEST_STDERR"], "wb"))
print(child.pid, flush=True)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def _tree_spec() -> dict:
    spec = {}
    for d in range(SMALL_DIRS):
        for i in range(SMALL_PER_DIR):
            spec[f"s{d}/f{i:03d}"] = xxhash.xxh3_128(b"%d-%d" % (d, i)).digest() * (64 + i * 8)
    spec["s0/link"] = __import__("conftest").Link("f000")
    return spec


def _write_big(path, size: int, seed: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size >> 20):
            f.write(i.to_bytes(8, "little") + bytes([seed]) + block[9:])


@pytest.fixture(scope="module")
def kill_src(tmp_path_factory):
    src = tmp_path_factory.mktemp("kill") / "src"
    make_tree(src, _tree_spec())
    for n, size in enumerate(BIG_SIZES):
        _write_big(src / f"big{n}.bin", size, n)
        os.utime(src / f"big{n}.bin", ns=(time.time_ns(), 1_600_000_000_000_000_000 + n))
    os.utime(src, ns=(time.time_ns(), 1_600_000_000_000_000_000))
    yield src
    shutil.rmtree(src, ignore_errors=True)


def _final_files(dst) -> int:
    n = 0
    for _, _, files in os.walk(dst):
        n += sum(1 for f in files if not f.startswith(temps.TMP_PREFIX))
    return n


def _big_temp(dst, minimum=4 << 20) -> bool:
    try:
        for name in os.listdir(dst):
            if name.startswith(temps.TMP_PREFIX) and os.path.getsize(os.path.join(dst, name)) >= minimum:
                return True
    except OSError:
        pass
    return False


CONDITIONS = {
    "dst-created": lambda dst: os.path.isdir(dst),
    "first-files": lambda dst: os.path.isdir(dst) and _final_files(dst) >= 20,
    "many-files": lambda dst: os.path.isdir(dst) and _final_files(dst) >= 250,
    "big-temp": _big_temp,
    "after-0.4s": None,  # a fixed delay after the start
}


def _kill_run(tmp_path, args, condition, timeout=30) -> tuple:
    """Start pcopy ARGS under the reaper, SIGKILL its group when condition(dst) holds; return (hit, stderr)."""
    errfile = tmp_path / "stderr.txt"
    e = env()
    e["PCOPY_TEST_STDERR"] = str(errfile)
    reaper = subprocess.Popen([PYTHON, "-c", REAPER, *pcopy_cmd(*args)], stdout=subprocess.PIPE, env=e)
    pid = int(reaper.stdout.readline())
    dst = args[2]
    started = time.monotonic()
    hit = False
    try:
        while time.monotonic() - started < timeout:
            if condition is None:
                if time.monotonic() - started >= 0.4:
                    hit = True
                    break
            elif condition(dst):
                hit = True
                break
            if not os.path.exists(f"/proc/{pid}") or _state(pid) == "Z":
                break  # finished before the condition held: still a valid (late) kill point
            time.sleep(0.001)
    finally:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        reaper.wait(timeout=60)
    return hit, errfile.read_text(errors="replace") if errfile.exists() else ""


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


KILL_POINTS = [(when, ()) for when in CONDITIONS] + [("big-temp", ("--fsync",)), ("many-files", ("--fsync",))]


@pytest.mark.parametrize("when, extra", KILL_POINTS, ids=[w + "".join(e) for w, e in KILL_POINTS])
def test_sigkill_copy_then_rerun(tmp_path, kill_src, sentinel, when, extra):  # noqa: F811
    dst = tmp_path / "dst"
    try:
        hit, err = _kill_run(tmp_path, ["copy", kill_src, dst, "--no-progress", "-j", "2", *extra],
                             CONDITIONS[when])
        # after the kill: every final-named file complete and identical; temp files may remain
        assert_nothing_lost(kill_src, dst, sentinel, allow_temps=True)
        left = temp_files(dst) if os.path.isdir(dst) else []
        print(f"kill point {when}{extra}: condition met={hit}, temp files left={len(left)}, "
              f"final files={len(os.listdir(dst)) if os.path.isdir(dst) else 0}")
        proc = run_pcopy("copy", kill_src, dst, "--no-progress", "-j", "2")
        assert proc.returncode == 0, proc.err
        if left:
            assert "temporary files left by an interrupted run" in proc.err, proc.err
        assert temp_files(dst) == []
        assert_nothing_lost(kill_src, dst, sentinel, complete=True)
        snapshots_equal(kill_src, dst)
        verify_ok(kill_src, dst)
    finally:
        shutil.rmtree(dst, ignore_errors=True)


def _prepare_sync(tmp_path, kill_src):
    """SRC2 = changed copy of kill_src; DST = old copy plus extras; prior = {rel: path of DST's old content}."""
    src = tmp_path / "src2"
    dst = tmp_path / "dst"
    subprocess.run(["cp", "-a", str(kill_src), str(src)], check=True)
    subprocess.run(["cp", "-a", str(kill_src), str(dst)], check=True)
    _write_big(src / "big1.bin", 40 << 20, 99)  # changed: DST's old one is replaced mid-run
    for i in range(0, SMALL_PER_DIR, 7):
        (src / f"s3/f{i:03d}").write_bytes(b"changed %d\n" % i * (i + 1))
    (src / "s5/f010").unlink()
    shutil.rmtree(src / "s6")
    make_tree(src, {"new/a": b"new a", "new/b": b"new b" * 999})
    make_tree(dst, {"extra/x": b"extra", "extra.txt": b"extra file"})
    prior_dir = tmp_path / "prior"
    subprocess.run(["cp", "-a", str(dst), str(prior_dir)], check=True)
    prior = {}
    for dirpath, dirnames, filenames in os.walk(prior_dir):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            prior[os.path.relpath(path, prior_dir)] = path
    return src, dst, prior


@pytest.mark.parametrize("when", ["first-files", "big-temp", "after-0.4s"])
def test_sigkill_sync_delete_then_rerun(tmp_path, kill_src, sentinel, when):  # noqa: F811
    src, dst, prior = _prepare_sync(tmp_path, kill_src)
    try:
        start = time.monotonic()
        cond = CONDITIONS[when]
        if when == "first-files":  # DST already holds everything: wait for a changed file instead
            cond = lambda d: os.path.exists(os.path.join(d, "new", "a"))  # noqa: E731
        _kill_run(tmp_path, ["sync", src, dst, "--delete", "--no-progress", "-j", "2"], cond)
        # each final-named file is the new SRC content or exactly what DST held before
        assert_nothing_lost(src, dst, sentinel, allow_temps=True, prior=prior)
        proc = run_pcopy("sync", src, dst, "--delete", "--no-progress", "-j", "2")
        assert proc.returncode == 0, proc.err
        assert temp_files(dst) == []
        assert_nothing_lost(src, dst, sentinel, complete=True)
        snapshots_equal(src, dst)
        verify_ok(src, dst)
        assert time.monotonic() - start < 120
    finally:
        for p in (src, dst, tmp_path / "prior"):
            shutil.rmtree(p, ignore_errors=True)


def test_stale_temp_of_a_dead_writer_is_removed(tmp_path, sentinel):  # noqa: F811
    """Deterministic version of the clean-up: a temp named after a reaped pid goes; a live writer's stays."""
    src = tmp_path / "src"
    make_tree(src, {"a": b"a", "d/b": b"b"})
    dst = tmp_path / "dst"
    make_tree(dst, {"d/x": b"x"})
    stale = [dst / f"{temps.TMP_PREFIX}deadbeef-{dead_pid()}-0",
             dst / "d" / f"{temps.TMP_PREFIX}cafe0001-{dead_pid()}-7"]
    live = dst / "d" / f"{temps.TMP_PREFIX}cafe0002-{os.getpid()}-1"  # a concurrent run's: keep
    for p in stale + [live]:
        p.write_bytes(b"half a file")
    proc = run_pcopy("copy", src, dst, "--no-progress")
    assert proc.returncode == 0, proc.err
    assert not any(p.exists() for p in stale)
    assert live.exists()
    assert "removed 2 temporary files" in proc.err
    live.unlink()
    (tmp_path / "x-before").write_bytes(b"x")
    assert_nothing_lost(src, dst, sentinel, prior={"d/x": str(tmp_path / "x-before")}, complete=True)


def test_stale_temp_of_a_zombie_writer_is_removed(tmp_path, sentinel):  # noqa: F811
    src = tmp_path / "src"
    make_tree(src, {"a": b"a"})
    dst = tmp_path / "dst"
    dst.mkdir()
    child, pid = zombie_pid()  # exited, not reaped: it can never write again
    try:
        stale = dst / f"{temps.TMP_PREFIX}deadbeef-{pid}-0"
        stale.write_bytes(b"half a file")
        proc = run_pcopy("copy", src, dst, "--no-progress")
        assert proc.returncode == 0, proc.err
        assert temp_files(dst) == [], "the zombie writer's temp file was kept"
    finally:
        child.wait()
    sentinel.check()
