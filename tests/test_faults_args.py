"""Bad arguments (exit 1, one ``pcopy: error:`` line, nothing written) and --fsync."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from conftest import make_tree, tree_snapshot
from fault_helpers import (
    STRACE,
    Sentinel,
    assert_nothing_lost,
    env,
    nobody_base,  # noqa: F401 (fixture)
    pcopy_cmd,
    run_pcopy,
    sentinel,  # noqa: F401 (fixture)
    snapshots_equal,
)

pytestmark = pytest.mark.faults

CASES = {
    # name: (command, src relative to base, dst relative to base)
    "src-missing": (["copy"], "nope", "dst"),
    "file-into-a-missing-directory": (["copy"], "src/a", "nodir/a"),
    "several-srcs-into-a-file": (["copy"], "src/a", "src/d file"),
    "src-equals-dst": (["copy"], "src", "src"),
    "src-equals-dst-via-symlink": (["sync"], "src", "alias"),
    "dst-inside-src": (["copy"], "src", "src/d/dst"),
    "dst-inside-src-via-symlink": (["sync"], "src", "alias/new"),
    "src-inside-dst-with-delete": (["sync", "--delete"], "outer/src", "outer"),
    "dst-is-a-file": (["copy"], "src", "file"),
}


def _one_error_line(proc) -> str:
    lines = proc.err.splitlines()
    assert len(lines) == 1, proc.err
    assert lines[0].startswith("pcopy: error: "), proc.err
    assert "Traceback" not in proc.err
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_arguments_exit_1_and_write_nothing(tmp_path, case):
    base = tmp_path / "base"
    make_tree(base, {"src/a": b"a", "src/d/b": b"b", "outer/src/c": b"c", "outer/keep": b"keep", "file": b"f"})
    os.symlink("src", base / "alias")
    sent = Sentinel(tmp_path / "sentinel")
    before = tree_snapshot(base)
    command, src, dst = CASES[case]
    *more, dst = dst.split()  # "src/d file": SRC src/a and src/d, DST file
    proc = run_pcopy(command[0], base / src, *[base / m for m in more], base / dst, *command[1:], "--no-progress")
    assert proc.returncode == 1, proc.err
    line = _one_error_line(proc)
    assert str(base) in line  # names the path
    assert tree_snapshot(base) == before, "something was written"
    sent.check()


def test_unwritable_dst_parent_as_unprivileged_user(nobody_base):  # noqa: F811
    src, parent = os.path.join(nobody_base, "src"), os.path.join(nobody_base, "parent")
    make_tree(src, {"a": b"a"})
    os.mkdir(parent, 0o555)
    os.chown(src, 65534, 65534)
    sent = Sentinel(os.path.join(nobody_base, "sentinel"))
    proc = run_pcopy("copy", src, os.path.join(parent, "dst"), "--no-progress", user=True)
    assert proc.returncode == 1, proc.err
    line = _one_error_line(proc)
    assert "cannot create destination" in line and "Permission denied" in line and parent in line
    assert os.listdir(parent) == []
    sent.check()


def test_fsync_copies_identically_and_fsyncs_every_file_and_directory(tmp_path, sentinel):  # noqa: F811
    src, dst = tmp_path / "src", tmp_path / "dst"
    spec = {f"d{d}/e/f{i}": b"%d-%d " % (d, i) * (i * 100 + 1) for d in range(3) for i in range(5)}
    spec.update({"top": b"top", "big": os.urandom(3 << 20), "empty-dir/.keep": b""})
    make_tree(src, spec)
    n_files = len(spec)
    dirs = {"."} | {os.path.dirname(rel) for rel in spec} | {rel.split("/")[0] for rel in spec if "/" in rel}
    dirs.discard("")
    if STRACE is None:
        proc = run_pcopy("copy", src, dst, "--no-progress", "--fsync")
        assert proc.returncode == 0, proc.err
        snapshots_equal(src, dst)
        pytest.skip("strace is not installed: cannot count the fsync calls (the copy itself passed)")
    log = tmp_path / "strace.log"
    proc = subprocess.run([STRACE, "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync", "-o", str(log),
                           *pcopy_cmd("copy", src, dst, "--no-progress", "--fsync")],
                          capture_output=True, env=env(), timeout=120)
    if b"ptrace" in proc.stderr and proc.returncode != 0:
        pytest.skip(f"strace cannot trace here: {proc.stderr[-200:]!r}")
    assert proc.returncode == 0, proc.stderr
    snapshots_equal(src, dst)
    assert_nothing_lost(src, dst, sentinel, complete=True)
    synced = re.findall(r"f(?:data)?sync\(\d+<([^>]*)>", log.read_text(errors="replace"))
    temps = {p for p in synced if os.path.basename(p).startswith(".pcopy-tmp-")}
    assert len(temps) == n_files, (len(temps), n_files)  # each file before its rename
    synced_dirs = {os.path.relpath(p, dst) for p in synced if p == str(dst) or p.startswith(str(dst) + os.sep)} - {
        os.path.relpath(p, dst) for p in temps}
    assert dirs <= synced_dirs, dirs - synced_dirs  # each directory after its entries
