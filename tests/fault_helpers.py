"""Helpers for the fault-injection tests (tests/test_faults_*.py, marker ``faults``).

Every fault test ends with ``assert_nothing_lost``: each file that carries its
final name in DST is byte-for-byte the SRC file (or, for sync, what DST held
before), no temp file is left unless allowed, and the sentinel directory
beside DST is untouched (nothing was written outside DST).

Fixtures defined here are imported by name into the test modules.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading

import pytest
from conftest import PYTHON, make_tree, tree_snapshot

import pcopy
from pcopy.fs import temps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(pcopy.__file__)))
NOBODY = 65534
SETPRIV = shutil.which("setpriv")
STRACE = shutil.which("strace")
XXHSUM = shutil.which("xxhsum")


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    e.pop("PCOPY_START_METHOD", None)
    return e


def pcopy_cmd(*args) -> list:
    return [PYTHON, "-m", "pcopy", *[os.fspath(a) for a in args]]


def run_pcopy(*args, timeout: float = 120, user: bool = False, extra=()) -> subprocess.CompletedProcess:
    """``python -m pcopy ARGS`` in a subprocess (as nobody with ``user=True``); text with surrogateescape."""
    cmd = pcopy_cmd(*args, *extra)
    if user:
        cmd = [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env(), cwd="/")
    proc.out = proc.stdout.decode("utf-8", "surrogateescape")
    proc.err = proc.stderr.decode("utf-8", "surrogateescape")
    return proc


def error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("pcopy: error:")]


# --------------------------------------------------------------------------- the end-of-test check


def _same_bytes(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def dst_files(dst) -> dict:
    """{relpath: kind} of everything below dst (path based; trees deeper than PATH_MAX use deep_* helpers)."""
    out = {}
    dst = os.fspath(dst)
    for dirpath, dirnames, filenames in os.walk(dst):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, dst)
            mode = os.lstat(path).st_mode
            out[rel] = "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else \
                "symlink" if stat.S_ISLNK(mode) else "special"
    return out


def is_temp(rel: str) -> bool:
    return os.path.basename(rel).startswith(temps.TMP_PREFIX)


def assert_nothing_lost(src, dst, sentinel=None, *, allow_temps: bool = False, prior: dict = None,
                        complete: bool = False) -> dict:
    """Every final-named file in DST equals SRC's (or its ``prior`` DST content: {rel: bytes-path}).

    ``complete``: DST must also hold every SRC file. Returns {relpath: kind} of DST.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    found = dst_files(dst) if os.path.isdir(dst) else {}
    temps = [rel for rel in found if is_temp(rel)]
    if not allow_temps:
        assert not temps, f"temp files left in DST: {temps}"
    for rel, kind in found.items():
        if is_temp(rel):
            continue
        d, s = os.path.join(dst, rel), os.path.join(src, rel)
        if kind == "file":
            ok = os.path.isfile(s) and not os.path.islink(s) and _same_bytes(s, d)
            if not ok and prior is not None and rel in prior:
                ok = _same_bytes(prior[rel], d)
            assert ok, f"DST file {rel!r} is neither SRC's content nor what DST held before"
        elif kind == "symlink":
            if os.path.islink(s):
                assert os.readlink(s) == os.readlink(d), rel
            else:
                assert prior is not None and rel in prior, f"unexpected symlink in DST: {rel!r}"
        elif kind == "dir":
            assert os.path.isdir(s) or (prior is not None and rel in prior), f"unexpected dir in DST: {rel!r}"
    if complete:
        for dirpath, _, filenames in os.walk(src):
            for name in filenames:
                rel = os.path.relpath(os.path.join(dirpath, name), src)
                if stat.S_ISREG(os.lstat(os.path.join(src, rel)).st_mode):
                    assert found.get(rel) == "file", f"{rel!r} missing from DST"
    if sentinel is not None:
        sentinel.check()
    return found


class Sentinel:
    """A directory beside DST (and the target of hostile links): must never change."""

    def __init__(self, path) -> None:
        self.path = os.fspath(path)
        make_tree(self.path, {"victim.txt": b"must not change\n", "sub/keep": b"keep\n", "sub/empty": b""})
        self.snap = tree_snapshot(self.path)

    def check(self) -> None:
        assert tree_snapshot(self.path) == self.snap, "something was written outside DST (sentinel changed)"


@pytest.fixture
def sentinel(tmp_path) -> Sentinel:
    return Sentinel(tmp_path / "sentinel")


def snapshots_equal(src, dst) -> None:
    a, b = tree_snapshot(src), tree_snapshot(dst)
    assert a == b, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}


def verify_ok(src, dst) -> None:
    proc = run_pcopy("verify", src, dst, "--no-progress", "--no-cache", "-q")
    assert proc.returncode == 0, proc.err


# --------------------------------------------------------------------------- privileges, mounts


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mount / setpriv)")


def need_setpriv() -> None:
    need_root()
    if SETPRIV is None:
        pytest.skip("setpriv is not installed: cannot run as an unprivileged user")


@contextlib.contextmanager
def tmpfs(path, size: str):
    """Mount a tmpfs of ``size`` at ``path`` (root only); unmount afterwards."""
    need_root()
    os.makedirs(path, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", os.fspath(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", os.fspath(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", os.fspath(path)], capture_output=True)


def remount(path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", os.fspath(path)], check=True, capture_output=True)


@pytest.fixture
def nobody_base():
    """A directory in /tmp owned by nobody (pytest's tmp_path is 0700 root)."""
    need_setpriv()
    base = tempfile.mkdtemp(prefix="pcopy-faults-", dir="/tmp")
    os.chmod(base, 0o755)
    os.chown(base, NOBODY, NOBODY)
    try:
        yield base
    finally:
        for dirpath, dirnames, _ in os.walk(base):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
        shutil.rmtree(base, ignore_errors=True)


def chown_tree(root, uid: int = NOBODY) -> None:
    os.chown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


# --------------------------------------------------------------------------- thread-local os.open faults


class OnceAfterSource:
    """Patch os.open so the first temp-file open following a source open of ``name`` (same thread) fails."""

    def __init__(self, monkeypatch, name: str, code: int) -> None:
        self.armed = threading.local()
        self.hits = []
        real = os.open

        def fake(path, flags, *args, dir_fd=None, **kwargs):
            if path == name and dir_fd is not None and flags & os.O_ACCMODE == os.O_RDONLY \
                    and not flags & os.O_DIRECTORY:
                self.armed.on = True
            elif getattr(self.armed, "on", False) and isinstance(path, str) and path.startswith(temps.TMP_PREFIX):
                self.armed.on = False
                self.hits.append(path)
                raise OSError(code, os.strerror(code), path)
            return real(path, flags, *args, dir_fd=dir_fd, **kwargs)

        monkeypatch.setattr(os, "open", fake)


def cli(argv) -> int:
    """pcopy's CLI in this process (so monkeypatched os functions reach thread workers)."""
    from pcopy import cli as _cli
    return _cli.main([os.fspath(a) for a in argv])


def json_out(text: str) -> dict:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert len(lines) == 1, text
    return json.loads(lines[0])


# --------------------------------------------------------------------------- trees deeper than PATH_MAX


def make_deep(root, name: str, depth: int, leaf: bytes = b"leaf\n") -> None:
    """root/name/name/... (depth levels) with a file 'leaf' at the bottom and 'mid' every 100 levels."""
    os.makedirs(root, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(depth):
            os.mkdir(name, dir_fd=fd)
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
            if i % 100 == 99:
                _write_at(fd, "mid", b"level %d\n" % (i + 1))
        _write_at(fd, "leaf", leaf)
    finally:
        os.close(fd)


def _write_at(dir_fd: int, name: str, data: bytes) -> None:
    f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
    try:
        os.write(f, data)
    finally:
        os.close(f)


def deep_listing(root) -> dict:
    """{(depth, name): bytes or 'dir'} of a tree of any depth, read with dir fds only."""
    out = {}
    stack = [(os.open(root, os.O_RDONLY | os.O_DIRECTORY), 0)]
    while stack:
        fd, depth = stack.pop()
        try:
            for name in os.listdir(fd):
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    out[(depth, name)] = "dir"
                    stack.append((os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), depth + 1))
                else:
                    f = os.open(name, os.O_RDONLY, dir_fd=fd)
                    try:
                        out[(depth, name)] = os.read(f, 1 << 20)
                    finally:
                        os.close(f)
        finally:
            os.close(fd)
    return out


def rmtree_deep(root) -> None:
    """shutil.rmtree is fd-based on Linux: fine at any depth."""
    shutil.rmtree(root, ignore_errors=True)


def zombie_pid() -> tuple:
    """(Popen, pid) of a child that has exited but is not reaped yet (a zombie)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    import time
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return proc, proc.pid
        time.sleep(0.01)
    raise AssertionError("child did not exit")


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))
