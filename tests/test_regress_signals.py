"""Regression tests: signals and dying parents (black box, ``python -m pcopy`` in subprocesses).

Covers:

* defect 1: SIGINT (to the group, as Ctrl-C) or SIGTERM (to the pid, as kill)
  during ``hash``, ``verify SRC DST`` and ``verify --manifest`` must end the run
  with 130 / 143 within about 2 s, one line on stderr (no traceback), and no
  process left behind;
* defect 2: SIGKILL of the pcopy parent alone (not its group) during ``copy``,
  ``sync``, ``hash``, ``verify``, ``map`` and ``watch``: no worker may outlive it
  by more than 2 s (we allow 3 s), and a reader of pcopy's stdout must see EOF
  promptly (no worker keeps the pipe open).

The trees are huge *sparse* files on /dev/shm: reading a hole costs no disk
and no memory but takes many seconds, so the signal always lands mid-run. Each
signal is sent only once a worker demonstrably has one of the files open.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time

import pytest
from regress_helpers import SHM, Reaped, Running, assert_gone, assert_no_traceback, sparse_file, wait_for

pytestmark = pytest.mark.faults

HUGE = 1 << 40  # 1 TiB of hole per file: minutes to read, so the run is always still going
N_HUGE = 4
EXIT_WITHIN = 5.0  # the contract says 2 s; a little slack for a loaded machine
GONE_WITHIN = 3.0  # workers may outlive their parent by at most 2 s


@pytest.fixture(scope="module")
def huge_trees():
    """(SRC, DST, MANIFEST): two identical trees of sparse 1 TiB files and a manifest listing them."""
    base = tempfile.mkdtemp(prefix="pcopy-regress-huge-", dir=SHM)
    src, dst = os.path.join(base, "src"), os.path.join(base, "dst")
    for root in (src, dst):
        os.mkdir(root)
        for i in range(N_HUGE):
            sparse_file(os.path.join(root, f"z{i}"), HUGE, b"head %d" % i)
    manifest = os.path.join(base, "MANIFEST.xxh")
    with open(manifest, "w") as f:  # the digests are never reached: the run is interrupted long before
        f.writelines(f"{'0' * 32}  z{i}\n" for i in range(N_HUGE))
    yield src, dst, manifest
    shutil.rmtree(base, ignore_errors=True)


def _integrity_args(command: str, trees) -> list:
    src, dst, manifest = trees
    common = ["--no-cache", "--no-progress", "-j", "2"]
    if command == "hash":
        return ["hash", src, *common]
    if command == "verify":
        return ["verify", src, dst, *common]
    return ["verify", "--manifest", manifest, src, *common]


# --------------------------------------------------------------------------- defect 1


@pytest.mark.parametrize("command", ["hash", "verify", "verify-manifest"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_ends_hash_and_verify_promptly_with_its_exit_code(huge_trees, command, signum):
    """Ctrl-C / kill during hash or verify: exit 128+signum within ~2 s, one line on stderr, nothing left."""
    with Running(*_integrity_args(command, huge_trees)) as run:
        run.wait_busy(huge_trees[0])
        workers = run.workers()
        assert workers, "no worker processes were seen"
        if signum == signal.SIGINT:
            os.killpg(run.pid, signum)  # Ctrl-C reaches the whole foreground group
        else:
            os.kill(run.pid, signum)
        t0 = time.monotonic()
        code = run.wait(EXIT_WITHIN)
        elapsed = time.monotonic() - t0
        stderr = run.stderr_text()
        assert code is not None, \
            f"{command} still running {EXIT_WITHIN} s after {signum.name}; stderr ends: {stderr[-600:]!r}"
        assert_no_traceback(stderr)
        assert code == 128 + signum, f"exit code {code}, expected {128 + signum}; stderr: {stderr!r}"
        assert elapsed < EXIT_WITHIN, f"took {elapsed:.1f} s to exit after {signum.name}"
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one line on stderr, got: {lines}"
        assert "interrupted" in lines[0], lines
        assert_gone(workers, 1.0, "worker processes")


# --------------------------------------------------------------------------- defect 2

SLOW_MODULE = """
import os, time

def slow(path):
    # a long computation on one file: the worker is busy, not waiting for its parent
    with open(os.path.join(os.environ["SLOW_MARKS"], str(os.getpid())), "w"):
        pass
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.02)
    return path
"""


def _kill_args(command: str, trees, tmp_path) -> list:
    src, dst, _ = trees
    out = str(tmp_path / "dst")
    if command == "copy":
        return ["copy", src, out, "--sparse", "--no-progress", "-j", "2"]
    if command == "sync":
        return ["sync", src, out, "--sparse", "--no-progress", "-j", "2"]
    if command == "watch":
        return ["watch", src, out, "--sparse", "--no-progress", "-j", "2"]
    if command == "map":
        return ["map", src, "slowmod:slow", "--no-progress", "-j", "2"]
    return _integrity_args(command, trees)


@pytest.mark.parametrize("command", ["copy", "sync", "hash", "verify", "map", "watch"])
def test_workers_do_not_outlive_a_killed_parent(huge_trees, tmp_path, command):
    """kill -9 of the pcopy parent alone mid-run: every worker is gone within 2 s (3 s allowed)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "slowmod.py").write_text(textwrap.dedent(SLOW_MODULE))
    extra = {"PYTHONPATH": str(tmp_path), "SLOW_MARKS": str(marks)}
    with Reaped(tmp_path, *_kill_args(command, huge_trees, tmp_path), env_extra=extra) as run:
        if command == "map":
            assert wait_for(lambda: len(os.listdir(marks)) >= 1 or run.reaper.poll() is not None, 30), \
                "map never started the function"
            run.workers()
        else:
            run.wait_busy(huge_trees[0])
        workers = run.workers()
        assert workers, "no worker processes were seen"
        os.kill(run.pcopy_pid, signal.SIGKILL)
        assert_gone({w for w in workers}, GONE_WITHIN, f"{command} workers (their parent was SIGKILLed)")


def test_reader_of_a_killed_hash_sees_eof_promptly(huge_trees, tmp_path):
    """``pcopy hash ROOT | tail -1`` whose pcopy is SIGKILLed: the reader gets EOF, not a pipe held by workers."""
    with Reaped(tmp_path, *_integrity_args("hash", huge_trees), stdout=subprocess.PIPE) as run:
        run.wait_busy(huge_trees[0])
        assert run.workers(), "no worker processes were seen"
        fd = run.reaper.stdout.fileno()
        os.kill(run.pcopy_pid, signal.SIGKILL)
        deadline = time.monotonic() + GONE_WITHIN
        eof = False
        while not eof and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                eof = os.read(fd, 1 << 16) == b""
        assert eof, f"stdout of a SIGKILLed pcopy hash still open {GONE_WITHIN} s later (a worker holds it)"
