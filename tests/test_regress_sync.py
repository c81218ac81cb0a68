"""Regression tests: what copy/sync put in DST (black box, ``python -m pcopy`` in subprocesses).

Covers:

* defect 3: when the first name of a hard-linked group cannot be copied, the
  other names must not be linked to whatever DST already held under it;
* defect 7: ``sync --delete`` that cannot list a DST directory it should empty
  is a failure naming that directory (exit 3), not an "excluded files" warning;
* defect 9: a file rewritten in place while it is copied is copied as a version
  that existed (all old or all new bytes) or reported as changed, never torn;
* defect 10: ``sync`` as root repairs the owner and group of files and symlinks
  whose size, mtime and mode match, and says so (``.f....og...`` / ``.L....og...``).

Unprivileged cases run as nobody (setpriv) on trees in a fresh 0o777
directory in /dev/shm.
"""

from __future__ import annotations

import os
import re
import shutil
import threading

import pytest
from conftest import Link, make_tree
from regress_helpers import (
    chown_tree,
    error_lines,
    need_root,
    need_setpriv,
    run_pcopy,
    shared_dir,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.faults

NEW, OLD = b"the content SRC has now\n", b"old\n"


# --------------------------------------------------------------------------- defect 3


def test_failed_first_name_of_a_hard_link_group_is_not_linked_to_old_dst_content(shared_dir):  # noqa: F811
    """SRC d1/a and d2/b are one inode; DST/d1 is not writable by the user and holds an old ``a``.

    Copying d1/a fails (no temp file can be made in DST/d1). d2/b must then
    be copied on its own or fail, never become a hard link to DST/d1/a,
    whose content SRC does not have.
    """
    need_setpriv()
    src, dst = os.path.join(shared_dir, "src"), os.path.join(shared_dir, "dst")
    make_tree(src, {"d1/a": NEW})
    os.makedirs(os.path.join(src, "d2"))
    os.link(os.path.join(src, "d1", "a"), os.path.join(src, "d2", "b"))
    make_tree(dst, {"d1/a": OLD, "d2/keep": b"k"})
    chown_tree(dst)  # the user's own DST (so it may link DST/d1/a: protected_hardlinks) ...
    os.chown(os.path.join(dst, "d1"), 0, 0)  # ... except d1: root's, read-only for the user
    os.chmod(os.path.join(dst, "d1"), 0o555)

    proc = run_pcopy("sync", src, dst, "--no-progress", "-v", user=True)

    b = os.path.join(dst, "d2", "b")
    if os.path.lexists(b):
        with open(b, "rb") as f:
            got = f.read()
        assert got == NEW, f"DST d2/b holds {got!r}: linked to the old DST/d1/a instead of SRC's content"
    with open(os.path.join(dst, "d1", "a"), "rb") as f:
        assert f.read() == OLD
    assert proc.returncode == 3, proc.err
    assert any(line.startswith("pcopy: error: d1/a: ") for line in error_lines(proc.err)), proc.err


# --------------------------------------------------------------------------- defect 7


def test_sync_delete_reports_a_dst_directory_it_cannot_list(shared_dir):  # noqa: F811
    """DST/gone (not in SRC) holds gone/locked, which the user cannot list: exit 3 naming it, no filter talk."""
    need_setpriv()
    src, dst = os.path.join(shared_dir, "src"), os.path.join(shared_dir, "dst")
    make_tree(src, {"sub/keep": b"keep\n"})
    shutil.copytree(src, dst, copy_function=shutil.copy2)  # same sizes and mtimes: nothing to copy
    make_tree(os.path.join(dst, "gone"), {"locked/stale": b"stale\n"})
    chown_tree(dst)
    locked = os.path.join(dst, "gone", "locked")
    os.chown(locked, 0, 0)
    os.chmod(locked, 0o700)  # root's: nobody can neither list nor empty it

    proc = run_pcopy("sync", src, dst, "--delete", "--no-progress", user=True)

    assert "excluded" not in proc.err, f"no filter was given, yet pcopy talks of excluded files: {proc.err!r}"
    assert any(line.startswith("pcopy: error: gone/locked: ") for line in error_lines(proc.err)), \
        f"no error line names the directory that could not be read: {proc.err!r}"
    assert proc.returncode == 3, proc.err
    assert os.path.exists(os.path.join(locked, "stale"))


# --------------------------------------------------------------------------- defect 9

SIZES = {"one-mib": 1 << 20, "four-mib": 4 << 20}
ITERATIONS = 16


class InPlaceWriter:
    """Threads rewriting each file whole with pwrite, alternating all-'A' and all-'B', no truncation.

    Every write updates mtime/ctime *before* copying its bytes, and a writer
    preempted mid-write leaves the file half old, half new with timestamps
    that no longer move: the case a copier must not mistake for a finished
    version. All the writers and pcopy share one CPU, so preemption mid-write
    is frequent (it happens at random on any busy machine).
    """

    def __init__(self, paths, cpu: int) -> None:
        self.stop = threading.Event()
        self.writes = 0
        self.cpu = cpu
        self.threads = [threading.Thread(target=self._run, args=(p, SIZES[os.path.basename(p)]), daemon=True)
                        for p in paths]

    def _run(self, path: str, size: int) -> None:
        os.sched_setaffinity(0, {self.cpu})  # this thread only
        versions = (b"A" * size, b"B" * size)
        fd = os.open(path, os.O_WRONLY)
        try:
            i = 0
            while not self.stop.is_set():
                os.pwrite(fd, versions[i % 2], 0)
                i += 1
                self.writes += 1
        finally:
            os.close(fd)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


def test_file_rewritten_during_copy_is_never_copied_torn(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, size in SIZES.items():
        (src / name).write_bytes(b"A" * size)
    cpu = min(os.sched_getaffinity(0))
    torn, reported = [], 0
    saved = os.sched_getaffinity(0)
    with InPlaceWriter([str(src / name) for name in SIZES], cpu) as writer:
        os.sched_setaffinity(0, {cpu})  # this (main) thread only: pcopy inherits it
        try:
            for i in range(ITERATIONS):
                dst = tmp_path / f"dst{i}"
                proc = run_pcopy("copy", src, dst, "--no-progress", "-q", timeout=60)
                assert proc.returncode in (0, 3), proc.err
                for name, size in SIZES.items():
                    if re.search(rf"^pcopy: error: {name}: .*changed while being copied", proc.err, re.M):
                        reported += 1
                        assert proc.returncode == 3
                        continue
                    data = (dst / name).read_bytes()
                    if data not in (b"A" * size, b"B" * size):
                        torn.append(f"run {i}: {name}: {data.count(b'A')} A + {data.count(b'B')} B")
                shutil.rmtree(dst)
        finally:
            os.sched_setaffinity(0, saved)
    assert writer.writes > ITERATIONS, "the writers hardly ran: nothing was tested"
    assert not torn, f"{len(torn)} torn copies reported as copied ({reported} reported as changed): {torn[:4]}"


# --------------------------------------------------------------------------- defect 10


def test_sync_as_root_repairs_owner_and_group(tmp_path):
    need_root()
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"alpha\n", "sub/b": b"bravo\n", "l": Link("a")})
    proc = run_pcopy("copy", src, dst, "--no-progress", "-q")
    assert proc.returncode == 0, proc.err
    for rel in ("a", "sub/b", "l"):
        os.chown(dst / rel, 1234, 4321, follow_symlinks=False)  # mtime, size and mode stay as they were

    proc = run_pcopy("sync", src, dst, "--no-progress", "-v")

    assert proc.returncode == 0, proc.err
    for rel in ("a", "sub/b", "l"):
        want, got = os.lstat(src / rel), os.lstat(dst / rel)
        assert (got.st_uid, got.st_gid) == (want.st_uid, want.st_gid), f"{rel}: owner not repaired"
    lines = proc.err.splitlines()
    for pattern in (r"^\.f\.\.\.\.og\.\.\. a$", r"^\.f\.\.\.\.og\.\.\. sub/b$", r"^\.L\.\.\.\.og\.\.\. l( -> a)?$"):
        assert any(re.match(pattern, line) for line in lines), f"no itemized line like {pattern!r}: {lines}"
