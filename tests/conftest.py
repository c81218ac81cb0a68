"""Shared helpers and fixtures for the pcopy test suite.

Helpers (import them with ``from conftest import ...``):

* ``make_tree(root, spec)`` builds a tree from a ``{relpath: node}`` mapping;
* ``tree_snapshot(root)`` maps every relpath to ``(kind, mode, mtime_ns, payload)``;
* ``temp_files(root)`` lists leftover ``temps.TMP_PREFIX`` files;
* ``io_fault`` wraps one ``os`` function so it fails for chosen calls.

Times: ``make_tree`` gives every entry an mtime far in the past and an atime one
hour in the *future*. Under ``relatime`` the kernel only bumps an atime that is
not newer than mtime/ctime, so reading the tree (our snapshots, pcopy itself)
leaves those atimes alone and they can be compared to the nanosecond.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import sys
import threading
import time
from typing import Callable, Optional

import pytest
import xxhash

from pcopy.content import digest
from pcopy.fs import temps

PYTHON = sys.executable
MTIME_NS = 1_600_000_000_123_456_789  # 2020-09-13, with a non-zero ns part
ATIME_NS = (time.time_ns() // 10**9 + 3600) * 10**9 + 987_654_321  # an hour ahead: relatime keeps it


# --------------------------------------------------------------------------- tree building


@dataclasses.dataclass(frozen=True)
class File:
    content: bytes = b""
    mode: int = 0o644
    mtime_ns: Optional[int] = None  # None: MTIME_NS plus a per-entry offset


@dataclasses.dataclass(frozen=True)
class Dir:
    mode: int = 0o755
    mtime_ns: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Link:
    target: str
    mtime_ns: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Fifo:
    mode: int = 0o644


def make_tree(root, spec: dict) -> dict:
    """Create ``spec`` under ``root`` (created if missing); return {relpath: node}.

    ``spec`` values: ``bytes`` (a 0o644 file), ``File``, ``Dir``, ``Link``, ``Fifo``.
    Parent directories are created as needed. Every entry gets a distinct,
    deterministic mtime; directory times and modes are set last, deepest
    first, so creating their contents does not disturb them.
    """
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    nodes = {rel: (File(value) if isinstance(value, (bytes, bytearray)) else value) for rel, value in spec.items()}
    dirs = {}
    for rel in sorted(nodes, key=lambda r: r.count("/")):
        node = nodes[rel]
        path = os.path.join(root, rel)
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            os.makedirs(parent)
        if isinstance(node, Dir):
            os.makedirs(path, exist_ok=True)
        elif isinstance(node, File):
            with open(path, "wb") as f:
                f.write(node.content)
            os.chmod(path, node.mode)
        elif isinstance(node, Link):
            os.symlink(node.target, path)
        elif isinstance(node, Fifo):
            os.mkfifo(path, node.mode)
        else:  # pragma: no cover - a typo in a test
            raise TypeError(f"unknown node for {rel!r}: {node!r}")
    # implicit parents become Dir() so their times are set too
    for rel in list(nodes):
        parent = os.path.dirname(rel)
        while parent and parent not in nodes:
            nodes[parent] = Dir()
            parent = os.path.dirname(parent)
    for i, rel in enumerate(sorted(nodes)):
        node = nodes[rel]
        if isinstance(node, (Dir, Fifo)):
            if isinstance(node, Dir):
                dirs[rel] = node
            continue
        mtime = node.mtime_ns if node.mtime_ns is not None else MTIME_NS + i * 1_000_001
        os.utime(os.path.join(root, rel), ns=(ATIME_NS, mtime), follow_symlinks=False)
    for i, rel in enumerate(sorted(dirs, key=lambda r: (-r.count("/"), r))):
        node = dirs[rel]
        path = os.path.join(root, rel)
        os.chmod(path, node.mode)
        mtime = node.mtime_ns if node.mtime_ns is not None else MTIME_NS - (i + 1) * 7_000_003
        os.utime(path, ns=(ATIME_NS, mtime))
    os.utime(root, ns=(ATIME_NS, MTIME_NS - 3))
    return nodes


# --------------------------------------------------------------------------- tree inspection


def kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "special"


def _payload(path: str, st: os.stat_result):
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(path)
    if stat.S_ISREG(st.st_mode):
        if st.st_size <= 4096:
            with open(path, "rb") as f:
                return f.read()
        return "xxh128:" + file_xxh128(path)
    return None


def file_xxh128(path) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while True:
            data = f.read(1 << 22)
            if not data:
                return h.hexdigest()
            h.update(data)


def walk_paths(root) -> list:
    """Every relpath below root (not root itself), parents before children."""
    root = os.fspath(root)
    out, stack = [], [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            names = sorted(de.name for de in it)
        for name in names:
            child = os.path.join(rel, name) if rel else name
            out.append(child)
            if stat.S_ISDIR(os.lstat(os.path.join(root, child)).st_mode):
                stack.append(child)
    return out


def tree_snapshot(root, atime: bool = False, ignore: Callable[[str], bool] = lambda rel: False) -> dict:
    """{relpath: (kind, mode, mtime_ns, payload)} for root (as ".") and everything below.

    payload: file content (or "xxh128:<hex>" above 4 KiB), symlink target, None otherwise.
    With ``atime=True`` each tuple also carries atime_ns.
    """
    root = os.fspath(root)
    snap = {}
    for rel in [".", *walk_paths(root)]:
        if rel != "." and ignore(rel):
            continue
        path = root if rel == "." else os.path.join(root, rel)
        st = os.lstat(path)
        item = (kind_of(st.st_mode), st.st_mode, st.st_mtime_ns, _payload(path, st))
        snap[rel] = item + ((st.st_atime_ns,) if atime else ())
    return snap


def temp_files(root) -> list:
    return [rel for rel in walk_paths(root) if os.path.basename(rel).startswith(temps.TMP_PREFIX)]


# --------------------------------------------------------------------------- fault injection


class IOFault:
    """Replace ``os.<func>`` so calls matching ``when(*args, **kwargs)`` raise ``exc``.

    The patch is on the ``os`` module itself, which is what ``pcopy.fsops``
    calls, so it reaches workers of the *thread* backend (not worker processes).
    """

    def __init__(self, monkeypatch) -> None:
        self.monkeypatch = monkeypatch
        self.hits: list = []

    def __call__(self, func: str, when: Callable, exc: Callable[[], BaseException]):
        real = getattr(os, func)
        hits = self.hits

        def fake(*args, **kwargs):
            if when(*args, **kwargs):
                hits.append((func, args))
                raise exc()
            return real(*args, **kwargs)

        self.monkeypatch.setattr(os, func, fake)
        return real


@pytest.fixture
def io_fault(monkeypatch) -> IOFault:
    return IOFault(monkeypatch)


def fd_name(fd: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return ""


def oserror(code: int) -> Callable[[], OSError]:
    return lambda: OSError(code, os.strerror(code))


def opens_source(name: str) -> Callable:
    """A predicate for os.open: a read-only open of ``name`` relative to a directory fd."""
    def when(path, flags, *args, dir_fd=None, **kwargs):
        return (path == name and dir_fd is not None and not flags & os.O_DIRECTORY
                and flags & os.O_ACCMODE == os.O_RDONLY)
    return when


# --------------------------------------------------------------------------- a rich sample tree

BIG = 3 * (1 << 20) + 12345  # > content.digest.SMALL_FILE and several CHUNKs, not chunk aligned


def big_content(size: int = BIG, seed: int = 7) -> bytes:
    block = bytes((i * 31 + seed) % 251 for i in range(65536))
    out = bytearray()
    n = 0
    while len(out) < size:
        out += n.to_bytes(8, "little") + block[8:]
        n += 1
    return bytes(out[:size])


BAD_UTF8 = os.fsdecode(b"bad\xff")


def sample_spec() -> dict:
    return {
        "empty.txt": b"",
        "hello.txt": b"hello world\n",
        "exec.sh": File(b"#!/bin/sh\necho hi\n", mode=0o755),
        "private": File(b"secret", mode=0o600),
        "odd-mode": File(b"x", mode=0o640),
        "read-only": File(b"r", mode=0o444),
        "no-access": File(b"n", mode=0o000),
        "setuid": File(b"#!/bin/true\n", mode=0o4755),
        "sticky-dir": Dir(mode=0o1777),
        "big.bin": big_content(),
        "with space.txt": b"spaces",
        "new\nline": b"newline in the name",
        "back\\slash": b"backslash",
        "naïve ☃ 日本語.txt": "unicode".encode(),
        BAD_UTF8: b"invalid utf-8 name",
        "empty-dir": Dir(),
        "ro-dir": Dir(mode=0o555),
        "ro-dir/inside": b"in a read-only directory",
        "sub/deeper/deepest/leaf": b"leaf",
        "sub/deeper/other": Dir(mode=0o700),
        "sub/link-to-hello": Link("../hello.txt"),
        "sub/dangling": Link("does/not/exist"),
        "sub/abs-link": Link("/etc/passwd"),
        "link-to-dir": Link("sub"),
    }


# --------------------------------------------------------------------------- thread-leak check


@pytest.fixture(autouse=True)
def no_thread_leak():
    """Fail a test that leaves threads behind (after giving them ~1 s to finish)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 1.0
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not extra, f"test leaked threads: {[t.name for t in extra]}"


@pytest.fixture(autouse=True)
def settled_files(monkeypatch):
    """Files a test has just made are seconds old, so pcopy would read each of them twice
    (``content.digest.is_young``). In-process runs treat them as settled; runs in a subprocess
    (the CLI tests, the fault suites) see the real rule."""
    monkeypatch.setattr(digest, "YOUNG_NS", 0)


@pytest.fixture
def sample_src(tmp_path):
    src = tmp_path / "src"
    make_tree(src, sample_spec())
    return src


def enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# --------------------------------------------------------------------------- processes (via /proc)


def _stat_fields(pid: int):
    """(state, ppid, starttime) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return rest[0], int(rest[1]), int(rest[19])


def children(pid: int) -> set:
    """{(pid, starttime)} of the live direct children of ``pid``."""
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields and fields[1] == pid and fields[0] != "Z":
                out.add((int(name), fields[2]))
    return out


def descendants(pid: int) -> set:
    found, todo = set(), [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child[0])
    return found


def still_running(procs) -> set:
    """Those of ``procs`` ((pid, starttime) pairs) that are alive and not zombies."""
    alive = set()
    for pid, start in procs:
        fields = _stat_fields(pid)
        if fields and fields[2] == start and fields[0] != "Z":
            alive.add((pid, start))
    return alive


# --------------------------------------------------------------------------- directory entries whose stat fails


class _FailingEntry:
    """Wraps an os.DirEntry; its stat() raises (as on a flaky disk, or after a concurrent delete)."""

    def __init__(self, de, exc_factory):
        self._de, self._exc = de, exc_factory
        self.name, self.path = de.name, de.path

    def stat(self, follow_symlinks=True):
        raise self._exc()

    def is_symlink(self):
        return self._de.is_symlink()

    def is_file(self, follow_symlinks=True):
        raise self._exc()

    def is_dir(self, follow_symlinks=True):
        raise self._exc()

    def inode(self):
        return self._de.inode()


class _ScandirWrapper:
    def __init__(self, it, name, exc_factory):
        self._it, self._name, self._exc = it, name, exc_factory

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._it.close()

    def close(self):
        self._it.close()

    def __iter__(self):
        for de in self._it:
            yield _FailingEntry(de, self._exc) if de.name == self._name else de


def fail_stat_of_entry(monkeypatch, name: str, exc_factory) -> None:
    """Make os.scandir yield ``name`` with a stat() that raises ``exc_factory()``."""
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": _ScandirWrapper(real(path), name, exc_factory))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A private sshd on 127.0.0.1 for one test module (tests/sshd_helpers.py), stopped by its pid."""
    import sshd_helpers

    handle = sshd_helpers.start(str(tmp_path_factory.mktemp("sshd")))
    try:
        yield handle
    finally:
        sshd_helpers.stop(handle)
