"""Black-box helpers for the regression tests (tests/test_regress_*.py).

Nothing here imports pcopy: these tests drive ``python -m pcopy`` in
subprocesses only, so they keep working while the package's internal modules
are restructured. (tests/fault_helpers.py imports ``pcopy.fsops``, hence this
small copy of what the regression tests need from it.)

* ``env``/``pcopy_cmd``/``run_pcopy``: run the CLI (``user=True``: as nobody via setpriv);
* ``Running``: a ``python -m pcopy`` started in its own session, whose whole
  process group is SIGKILLed when the ``with`` block ends (nothing is left behind);
* ``Reaped``: the same under a tiny subreaper, so pcopy itself can be SIGKILLed
  alone and its orphaned workers are still reaped;
* ``shared_dir`` fixture: a fresh 0o777 directory in /dev/shm that nobody can reach.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import descendants, still_running

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
NOBODY = 65534
SETPRIV = shutil.which("setpriv")
SHM = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()

# Never let a run touch the real ~/.cache/pcopy: every run gets this cache unless it passes --no-cache.
_CACHE_DIR = tempfile.mkdtemp(prefix="pcopy-regress-cache-")
os.chmod(_CACHE_DIR, 0o777)
atexit.register(shutil.rmtree, _CACHE_DIR, True)


def env(**extra) -> dict:
    """The environment of a pcopy run; an extra PYTHONPATH comes after this checkout (which must win)."""
    e = dict(os.environ)
    paths = [REPO, *([extra.pop("PYTHONPATH")] if "PYTHONPATH" in extra else []),
             *([e["PYTHONPATH"]] if e.get("PYTHONPATH") else [])]
    e["PYTHONPATH"] = os.pathsep.join(paths)
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    e["PCOPY_CACHE"] = os.path.join(_CACHE_DIR, "hashes.sqlite3")
    e.pop("PCOPY_START_METHOD", None)
    e.pop("PCOPY_SCHEDULER", None)
    e.update(extra)
    return e


def pcopy_cmd(*args, user: bool = False) -> list:
    cmd = [PYTHON, "-m", "pcopy", *[os.fspath(a) for a in args]]
    if user:
        cmd = [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    return cmd


def _decode(data) -> str:
    return (data or b"").decode("utf-8", "surrogateescape")


def run_pcopy(*args, timeout: float = 60, user: bool = False, env_extra: dict = None, stdout=None,
              cwd: str = "/") -> subprocess.CompletedProcess:
    """``python -m pcopy ARGS``; a hang fails the test (its process group is killed) instead of hanging it."""
    proc = subprocess.Popen(pcopy_cmd(*args, user=user), stdout=stdout if stdout is not None else subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env(**(env_extra or {})),
                            cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"pcopy {' '.join(map(str, args))} did not finish within {timeout} s; "
                    f"stderr: {_decode(err)[-2000:]!r}")
    finally:
        kill_group(proc.pid)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    result.out, result.err = _decode(out), _decode(err)
    return result


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("pcopy: error:")]


def assert_no_traceback(stderr: str) -> None:
    for word in ("Traceback", "Exception ignored", "Error:", "Broken pipe"):
        if word == "Error:":  # a Python exception line such as "AttributeError: ..."
            bad = [line for line in stderr.splitlines() if re.match(r"^\w*(Error|Exception): ", line)]
            assert not bad, f"a Python exception was printed: {bad[:3]}\n{stderr[-3000:]}"
        else:
            assert word not in stderr, f"{word!r} on stderr:\n{stderr[-3000:]}"


def wait_for(condition, timeout: float, interval: float = 0.02) -> bool:
    """Poll until condition() is true (True) or timeout seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def open_paths(pids) -> set:
    """Paths of the files that the given processes ((pid, starttime) pairs or pids) hold open."""
    out = set()
    for pid in pids:
        pid = pid[0] if isinstance(pid, tuple) else pid
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                pass
    return out


def reading_under(pid: int, root) -> bool:
    """A descendant of ``pid`` holds a file below ``root`` open (a worker is busy with it)."""
    root = os.fspath(root).rstrip("/") + "/"
    return any(p.startswith(root) for p in open_paths(descendants(pid)))


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def assert_gone(procs, within: float, what: str = "pcopy processes") -> None:
    """Every (pid, starttime) of ``procs`` has exited (zombies count as gone) within ``within`` s."""
    wait_for(lambda: not still_running(procs), within)
    left = still_running(procs)
    assert not left, f"{what} still running {within} s later: {sorted(p for p, _ in left)}"


class Running:
    """``python -m pcopy ARGS`` in its own session; its whole process group is SIGKILLed on exit."""

    def __init__(self, *args, user: bool = False, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 env_extra: dict = None, cwd: str = "/") -> None:
        self.proc = subprocess.Popen(pcopy_cmd(*args, user=user), stdout=stdout, stderr=stderr,
                                     stdin=subprocess.DEVNULL, env=env(**(env_extra or {})), cwd=cwd,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.seen: set = set()  # (pid, starttime) of every descendant noticed so far

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        kill_group(self.pid)
        for pid, _ in still_running(self.seen):
            try:
                os.kill(pid, signal.SIGKILL)  # a worker that left the group (setsid): ours all the same
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def workers(self) -> set:
        found = descendants(self.pid)
        self.seen |= found
        return found

    def wait_busy(self, root, timeout: float = 30) -> None:
        """Until a worker has a file below ``root`` open; fails the test if the run ends first."""
        ok = wait_for(lambda: self.proc.poll() is not None or (self.workers() and reading_under(self.pid, root)),
                      timeout)
        if self.proc.poll() is not None or not ok:
            pytest.fail(f"the run was not demonstrably under way (exit code {self.proc.poll()}): "
                        f"{self.stderr_text()[-2000:]!r}")
        self.workers()

    def wait(self, timeout: float):
        """The exit code, or None when it is still running after ``timeout`` s."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr_text(self) -> str:
        if self.proc.poll() is None:
            kill_group(self.pid)
            self.proc.wait(timeout=10)
        return _decode(self.proc.stderr.read()) if self.proc.stderr is not None else ""


REAPER = r"""
import ctypes, os, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come here
child = subprocess.Popen(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(child.pid))
for fd in (0, 1):
    os.close(fd)  # only pcopy holds stdout: its reader sees EOF when pcopy's processes are gone
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


class Reaped(Running):
    """pcopy started under a subreaper (in a new session): ``self.pid`` is pcopy's own pid.

    SIGKILL of pcopy alone then orphans its workers to the reaper, which reaps
    them as they exit, so "still running" is never confused with "a zombie".
    """

    def __init__(self, tmp_path, *args, stdout=subprocess.DEVNULL, env_extra: dict = None) -> None:
        pidfile = os.path.join(tmp_path, f"pcopy-{time.monotonic_ns()}.pid")
        self.reaper = subprocess.Popen([PYTHON, "-c", REAPER, pidfile, *pcopy_cmd(*args)], stdout=stdout,
                                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                       env=env(**(env_extra or {})), cwd="/", start_new_session=True)
        self.proc = self.reaper  # the group to kill and the pipes to close are the reaper's
        if not wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0, 30):
            kill_group(self.reaper.pid)
            pytest.fail("the subreaper did not start pcopy")
        with open(pidfile) as f:
            self.pcopy_pid = int(f.read())
        self.seen = set()
        self.pid = self.reaper.pid  # group leader, for kill_group

    def workers(self) -> set:
        found = descendants(self.pcopy_pid)
        self.seen |= found
        return found

    def wait_busy(self, root, timeout: float = 30) -> None:
        ok = wait_for(lambda: self.reaper.poll() is not None or (self.workers()
                                                                 and reading_under(self.pcopy_pid, root)), timeout)
        if not ok or self.reaper.poll() is not None:
            pytest.fail(f"the run was not demonstrably under way: {self.stderr_text()[-2000:]!r}")
        self.workers()


# --------------------------------------------------------------------------- privileges and trees


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


def need_setpriv() -> None:
    need_root()
    if SETPRIV is None:
        pytest.skip("setpriv is not installed: cannot run as an unprivileged user")


def _rmtree(path) -> None:
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            try:
                os.chmod(os.path.join(dirpath, name), 0o755, follow_symlinks=False)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shared_dir():
    """A fresh 0o777 directory in /dev/shm (reachable by nobody, unlike tmp_path), removed afterwards."""
    base = tempfile.mkdtemp(prefix="pcopy-regress-", dir=SHM)
    os.chmod(base, 0o777)
    try:
        yield base
    finally:
        _rmtree(base)


def sparse_file(path, size: int, marker: bytes = b"") -> None:
    """A file of ``size`` bytes that takes (almost) no space: a hole with ``marker`` at the start."""
    with open(path, "wb") as f:
        f.write(marker)
        f.truncate(size)


def chown_tree(root, uid: int = NOBODY) -> None:
    os.chown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)
