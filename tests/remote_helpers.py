"""What every host:path test file shares: running pcopy against the module's private sshd (the
``server`` fixture in conftest.py) and ``rsync -anic`` through the same sshd."""

from __future__ import annotations

import subprocess
import time

import sshd_helpers as sshd
from fault_helpers import env, pcopy_cmd

H = sshd.HOST


def pcopy(server, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(pcopy_cmd(*args, *server.args()), capture_output=True, timeout=timeout, env=env(),
                          cwd="/")
    proc.out = proc.stdout.decode("utf-8", "surrogateescape")  # type: ignore[attr-defined]
    proc.err = proc.stderr.decode("utf-8", "surrogateescape")  # type: ignore[attr-defined]
    return proc


def rsync_diff(server, src, dst, *extra) -> str:
    """What ``rsync -anic`` (through the same sshd) would still change: empty when DST is SRC's copy."""
    proc = subprocess.run(["rsync", "-e", server.rsh, "-anic", *extra, f"{src}/", f"{H}:{dst}/"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode("utf-8", "surrogateescape")


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def ssh_children(pid: int) -> list:
    """The ssh clients below ``pid`` (a run's sessions), to kill the transport mid-run."""
    from conftest import children

    found = []
    for child, _ in children(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as fh:
                if fh.read().split(b"\0")[0].endswith(b"ssh"):
                    found.append(child)
        except OSError:
            pass
    return found
