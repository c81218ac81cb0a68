"""One pcopy process tree under a subreaper: exit status, hangs, orphans, signals, clean-up.

Why a subreaper: this machine's pid 1 does not reap orphans, so a killed worker would stay
a zombie and a worker whose parent died would be re-parented out of sight. The reaper
(prctl PR_SET_CHILD_SUBREAPER) adopts them, reaps them, and reports the exit of pcopy's
own process with a CLOCK_MONOTONIC time stamp, so "alive 3 s after the parent exited" is
measured from the real moment. pcopy runs in a session of its own (pgid == pid).
Processes are tracked as (pid, starttime) so a reused pid is never mistaken for a worker.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Optional

REAPER = r"""
import ctypes, json, os, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
env_file, out, err, cwd = sys.argv[1:5]
with open(env_file) as f:
    env = json.load(f)
with open(out, "wb") as o, open(err, "wb") as e:
    child = subprocess.Popen(sys.argv[5:], env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                             start_new_session=True)
print("pid", child.pid, flush=True)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if pid == child.pid:
        child.returncode = os.waitstatus_to_exitcode(status)
        print("exit", child.returncode, time.monotonic(), flush=True)
print("done", flush=True)
"""

SAMPLE_EVERY = 0.05


def _stat(pid: int):
    """(state, ppid, starttime) or None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()
        return rest[0].decode(), int(rest[1]), int(rest[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> set:
    """{(pid, starttime)} below pid, via /proc/PID/task/*/children (cheap enough every 50 ms)."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            for kid in kids:
                st = _stat(kid)
                if st and (kid, st[2]) not in found:
                    found.add((kid, st[2]))
                    todo.append(kid)
    return found


def alive(procs) -> set:
    """Those (pid, starttime) that still run (zombies count as gone)."""
    out = set()
    for pid, start in procs:
        st = _stat(pid)
        if st and st[2] == start and st[0] not in ("Z", "X"):
            out.add((pid, start))
    return out


def with_token(token: str, exclude=()) -> set:
    """Live processes whose command line contains token (the run's unique path)."""
    needle, out = token.encode(), set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if needle not in f.read():
                    continue
        except OSError:
            continue
        st = _stat(int(name))
        if st and st[0] not in ("Z", "X"):
            out.add((int(name), st[2]))
    return out


def describe(procs) -> list:
    out = []
    for pid, _ in sorted(procs):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = "?"
        out.append(f"{pid}: {cmd[:160]}")
    return out


class Run:
    """``argv`` started under the reaper with exactly ``env``; stdout/stderr go to files."""

    def __init__(self, argv: list, env: dict, cwd: str, logbase: str, token: str) -> None:
        self.token, self.out_path, self.err_path = token, logbase + ".out", logbase + ".err"
        with open(logbase + ".env.json", "w") as f:
            json.dump(env, f)
        clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PCOPY_FAULTS")}
        self.reaper = subprocess.Popen([sys.executable, "-I", "-c", REAPER, logbase + ".env.json", self.out_path,
                                        self.err_path, cwd, *argv], stdout=subprocess.PIPE, env=clean,
                                       start_new_session=True)
        self._buf = b""
        self.pid: Optional[int] = None
        self.exit_code: Optional[int] = None
        self.exit_time: Optional[float] = None
        self.done = False
        self.started = time.monotonic()
        self._last_sample = 0.0
        self.seen: set = set()
        while self.pid is None and time.monotonic() - self.started < 30 and not self.done:
            self._read(0.1)
        if self.pid is None:
            self.reaper.kill()
            raise RuntimeError("the reaper did not start pcopy")
        st = _stat(self.pid)
        if st:
            self.seen.add((self.pid, st[2]))

    def _read(self, timeout: float) -> None:
        fd = self.reaper.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            return
        chunk = os.read(fd, 4096)
        if not chunk:
            self.done = True
        self._buf += chunk
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            word, *rest = line.decode().split()
            if word == "pid":
                self.pid = int(rest[0])
            elif word == "exit":
                self.exit_code, self.exit_time = int(rest[0]), float(rest[1])
            elif word == "done":
                self.done = True

    def sample(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_sample >= SAMPLE_EVERY:
            self._last_sample = now
            self.seen |= descendants(self.reaper.pid)

    def poll(self) -> Optional[int]:
        self.sample()
        if self.exit_time is None and not self.done:
            self._read(0)
        return self.exit_code

    def wait(self, timeout: float) -> Optional[int]:
        deadline = time.monotonic() + timeout
        while self.exit_time is None and not self.done and time.monotonic() < deadline:
            self.sample()
            self._read(min(SAMPLE_EVERY, max(0.0, deadline - time.monotonic())))
        return self.exit_code

    def send(self, kind: str) -> None:
        """kill-parent / kill-group (SIGKILL), sigint (to the group, as Ctrl-C), sigterm (to pcopy)."""
        how = {"kill-parent": (os.kill, signal.SIGKILL), "kill-group": (os.killpg, signal.SIGKILL),
               "sigint": (os.killpg, signal.SIGINT), "sigterm": (os.kill, signal.SIGTERM)}[kind]
        self.sample(force=True)
        try:
            how[0](self.pid, how[1])
        except (ProcessLookupError, PermissionError):
            pass

    def orphans(self, grace: float = 3.0) -> list:
        """Descriptions of this run's processes still running ``grace`` s after pcopy exited."""
        deadline = (self.exit_time or time.monotonic()) + grace
        parent = {p for p in self.seen if p[0] == self.pid}
        mine = {os.getpid(), self.reaper.pid}
        while True:
            self.sample(force=True)
            left = alive(self.seen - parent) | with_token(self.token, exclude=mine)
            if not left or time.monotonic() >= deadline:
                return describe(left)
            time.sleep(SAMPLE_EVERY)

    def kill_all(self) -> None:
        """SIGKILL the group, every process seen, every process naming the token; reap the reaper."""
        for _ in range(3):
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.sample(force=True)
            targets = alive(self.seen) | with_token(self.token, exclude={os.getpid(), self.reaper.pid})
            for pid, _ in targets:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if not targets:
                break
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while not self.done and time.monotonic() < deadline:
            self._read(0.1)
        if self.reaper.poll() is None:
            self.reaper.kill()
        self.reaper.wait(timeout=10)
        self.reaper.stdout.close()

    def texts(self) -> tuple:
        def read(path):
            try:
                with open(path, "rb") as f:
                    return f.read().decode("utf-8", "surrogateescape")
            except OSError:
                return ""
        return read(self.out_path), read(self.err_path)

