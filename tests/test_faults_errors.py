"""Per-file errors (permission denied, EIO, name too long, read-only DST) and a source that changes.

Each failing entry is reported with its path and reason on one line, all the
others are copied completely, the exit code is 3; a source that changes or
vanishes mid-copy never leaves DST or the manifest inconsistent.
"""

from __future__ import annotations

import errno
import os
import threading

import pytest
from conftest import Dir, File, big_content, fd_name, file_xxh128, make_tree, opens_source, oserror
from fault_helpers import (
    OnceAfterSource,
    Sentinel,
    assert_nothing_lost,
    chown_tree,
    cli,
    error_lines,
    nobody_base,  # noqa: F401 (fixture)
    remount,
    run_pcopy,
    sentinel,  # noqa: F401 (fixture)
    snapshots_equal,
    tmpfs,
)

import pcopy
from pcopy.content.manifest import read_manifest

pytestmark = pytest.mark.faults


def _failed(err: str) -> dict:
    """{path: reason} from the 'pcopy: error: PATH: REASON' lines."""
    out = {}
    for line in error_lines(err):
        path, _, reason = line[len("pcopy: error: "):].partition(": ")
        out[path] = reason
    return out


def _manifest(path) -> dict:
    with open(path, "rb") as f:
        entries = list(read_manifest(f))
    assert all(e.error is None for e in entries), entries
    return {e.relpath: e.digest for e in entries}


# --------------------------------------------------------------------------- permission denied (real, as nobody)


def test_permission_denied_as_unprivileged_user(nobody_base):  # noqa: F811
    src, dst = os.path.join(nobody_base, "src"), os.path.join(nobody_base, "dst")
    make_tree(src, {
        "ok.txt": b"fine", "secret": File(b"no read", mode=0o000), "locked": Dir(mode=0o000),
        "ro/a": b"into a read-only DST dir", "ro/b": b"b", "sub/c": b"c" * 5000,
    })
    make_tree(dst, {"ro": Dir(mode=0o555)})
    chown_tree(src)
    chown_tree(dst)
    sent = Sentinel(os.path.join(nobody_base, "sentinel"))
    proc = run_pcopy("copy", src, dst, "--no-progress", user=True)
    assert proc.returncode == 3, proc.err
    failed = _failed(proc.err)
    assert "Permission denied" in failed.get("secret", ""), proc.err
    assert failed.get("secret", "").startswith("source"), proc.err
    assert "Permission denied" in failed.get("locked", ""), proc.err
    assert "destination: Permission denied" == failed.get("ro/a"), proc.err
    assert "destination: Permission denied" == failed.get("ro/b"), proc.err
    assert {"ok.txt", "sub/c"}.isdisjoint(failed)
    found = assert_nothing_lost(src, dst, sent)
    assert found.get("ok.txt") == "file" and found.get("sub/c") == "file"
    assert not os.path.exists(os.path.join(dst, "secret"))


# --------------------------------------------------------------------------- EIO, ENAMETOOLONG (injected)


@pytest.mark.parametrize("size", [100, 3 << 20], ids=["small", "big"])
def test_eio_on_read_of_one_file(tmp_path, sentinel, io_fault, capsys, size):  # noqa: F811
    src = tmp_path / "src"
    make_tree(src, {"a": b"a" * 10, "victim": big_content(size), "z/b": b"b"})
    dst = tmp_path / "dst"
    for func in ("pread", "preadv"):
        io_fault(func, lambda fd, *a: fd_name(fd) == "victim", oserror(errno.EIO))
    rc = cli(["copy", src, dst, "--no-progress", "--backend", "thread"])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert _failed(err) == {"victim": "source: Input/output error"}
    found = assert_nothing_lost(src, dst, sentinel)
    assert "victim" not in found and found["a"] == found["z/b"] == "file"


def test_name_too_long_on_the_temp_open(tmp_path, sentinel, monkeypatch, capsys):  # noqa: F811
    src = tmp_path / "src"
    make_tree(src, {"a": b"a", "long-one": b"x" * 100, "b": b"b"})
    dst = tmp_path / "dst"
    fault = OnceAfterSource(monkeypatch, "long-one", errno.ENAMETOOLONG)
    rc = cli(["copy", src, dst, "--no-progress", "--backend", "thread"])
    err = capsys.readouterr().err
    assert fault.hits and rc == 3, err
    assert _failed(err) == {"long-one": "destination: file name too long"}
    found = assert_nothing_lost(src, dst, sentinel)
    assert found.get("a") == found.get("b") == "file" and "long-one" not in found


# --------------------------------------------------------------------------- read-only destination


def test_read_only_mount_inside_destination(tmp_path, sentinel):  # noqa: F811
    src = tmp_path / "src"
    make_tree(src, {"a": b"a", "rofs/x": b"x", "rofs/y": b"y" * 3000, "z/b": b"b"})
    dst = tmp_path / "dst"
    (dst / "rofs").mkdir(parents=True)
    with tmpfs(dst / "rofs", "1m"):
        remount(dst / "rofs", "ro")
        proc = run_pcopy("copy", src, dst, "--no-progress")
        assert proc.returncode == 3, proc.err
        failed = _failed(proc.err)
        assert failed.get("rofs/x") == failed.get("rofs/y") == "destination: read-only file system", proc.err
        found = assert_nothing_lost(src, dst, sentinel)
        assert found["a"] == found["z/b"] == "file"
        remount(dst / "rofs", "rw")
        proc = run_pcopy("copy", src, dst, "--no-progress")
        assert proc.returncode == 0, proc.err
        assert_nothing_lost(src, dst, sentinel, complete=True)


def test_read_only_destination_as_unprivileged_user(nobody_base):  # noqa: F811
    src, dst = os.path.join(nobody_base, "src"), os.path.join(nobody_base, "dst")
    make_tree(src, {"a": b"a", "d/b": b"b"})
    os.mkdir(dst, 0o555)
    chown_tree(src)
    chown_tree(dst)
    sent = Sentinel(os.path.join(nobody_base, "sentinel"))
    proc = run_pcopy("copy", src, dst, "--no-progress", user=True)
    assert proc.returncode == 3, proc.err
    failed = _failed(proc.err)
    assert "Permission denied" in failed.get("a", ""), proc.err
    assert "Permission denied" in failed.get("d", ""), proc.err
    assert "Traceback" not in proc.err
    assert_nothing_lost(src, dst, sent)
    assert os.listdir(dst) == []


# --------------------------------------------------------------------------- the source changes while copied


def test_file_appended_during_read_is_recopied_consistently(tmp_path, sentinel, monkeypatch):  # noqa: F811
    src = tmp_path / "src"
    make_tree(src, {"grow.bin": big_content(3 << 20), "other": b"o"})
    real = os.preadv
    fired = []

    def preadv(fd, buffers, offset):
        n = real(fd, buffers, offset)
        if not fired and fd_name(fd) == "grow.bin":
            fired.append(n)
            with open(src / "grow.bin", "ab") as f:
                f.write(b"appended while being copied\n" * 1000)
        return n

    monkeypatch.setattr(os, "preadv", preadv)
    dst, manifest = tmp_path / "dst", tmp_path / "manifest"
    report = pcopy.copytree(src, dst, backend="thread", manifest=manifest)
    assert fired and report.ok, report.failures
    assert (dst / "grow.bin").read_bytes() == (src / "grow.bin").read_bytes()
    digests = _manifest(manifest)
    assert digests["grow.bin"] == file_xxh128(dst / "grow.bin")
    assert_nothing_lost(src, dst, sentinel, complete=True)


def test_file_appended_by_a_writer_thread_during_copy(tmp_path, sentinel):  # noqa: F811
    """A real concurrent appender: DST holds a state the file had, or the file is reported as changed."""
    src = tmp_path / "src"
    src.mkdir()
    path = src / "log.bin"
    base = big_content(64 << 20)
    path.write_bytes(base)
    chunk = b"0123456789abcdef" * 4096  # 64 KiB
    stop = threading.Event()

    def append():
        with open(path, "ab", buffering=0) as f:
            while not stop.is_set():
                f.write(chunk)
                stop.wait(0.002)

    writer = threading.Thread(target=append)
    writer.start()
    dst, manifest = tmp_path / "dst", tmp_path / "manifest"
    try:
        report = pcopy.copytree(src, dst, backend="thread", manifest=manifest)
    finally:
        stop.set()
        writer.join()
    final = path.read_bytes()
    if report.ok:
        copied = (dst / "log.bin").read_bytes()
        # a state the file had: the base plus a whole number of appended chunks, a prefix of the final content
        assert final.startswith(copied) and len(copied) >= len(base) and (len(copied) - len(base)) % len(chunk) == 0
        assert _manifest(manifest)["log.bin"] == file_xxh128(dst / "log.bin")
    else:
        assert [(r.relpath, r.message) for r in report.failures] == [
            ("log.bin", "source changed while being copied (tried 3 times)")]
        assert not (dst / "log.bin").exists()
        assert "log.bin" not in _manifest(manifest)
    # DST's copy is an earlier state of a file that kept growing (checked above); nothing else is there
    assert [n for n in os.listdir(dst) if n != "log.bin"] == []
    sentinel.check()


def test_in_place_rewrite_with_restored_mtime_is_detected(tmp_path, sentinel, monkeypatch):  # noqa: F811
    src = tmp_path / "src"
    old = b"A" * (3 << 20)
    make_tree(src, {"db": old})
    st = os.stat(src / "db")
    real = os.preadv
    fired = []

    def preadv(fd, buffers, offset):
        n = real(fd, buffers, offset)
        if not fired and fd_name(fd) == "db":  # after the first 1 MiB was read: rewrite the whole file
            fired.append(n)
            (src / "db").write_bytes(b"B" * (3 << 20))
            os.utime(src / "db", ns=(st.st_atime_ns, st.st_mtime_ns))
        return n

    monkeypatch.setattr(os, "preadv", preadv)
    dst, manifest = tmp_path / "dst", tmp_path / "manifest"
    report = pcopy.copytree(src, dst, backend="thread", manifest=manifest)
    monkeypatch.undo()
    copied = (dst / "db").read_bytes() if (dst / "db").exists() else None
    if copied is not None:
        assert _manifest(manifest)["db"] == file_xxh128(dst / "db")  # holds even with the bug
    assert copied in (None, old, b"B" * (3 << 20)), "DST holds a mix of two versions"
    assert report.ok or "source changed" in report.failures[0].message
    sentinel.check()


def test_file_deleted_between_walk_and_copy_is_a_skip(tmp_path, sentinel, io_fault, monkeypatch, capsys):  # noqa: F811
    src = tmp_path / "src"
    make_tree(src, {"a": b"a", "gone": b"will vanish", "z/b": b"b"})
    real_open = os.open

    def unlink_then_open(path, flags, *args, **kwargs):
        if opens_source("gone")(path, flags, *args, **kwargs) and (src / "gone").exists():
            os.unlink(src / "gone")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", unlink_then_open)
    dst = tmp_path / "dst"
    report = pcopy.copytree(src, dst, backend="thread")
    assert report.ok and report.failed == 0
    gone = [r for r in report.results if r.relpath == "gone"]
    assert [(r.status, r.message) for r in gone] == [("skipped", "vanished before it could be copied")]
    assert_nothing_lost(src, dst, sentinel, complete=True)
    # the same through the CLI: exit 0
    (src / "gone").write_bytes(b"again")
    rc = cli(["sync", src, tmp_path / "dst2", "--no-progress", "--backend", "thread", "-v"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "skipping gone: vanished before it could be copied" in err.splitlines()
    assert_nothing_lost(src, tmp_path / "dst2", sentinel, complete=True)


def test_snapshot_helper_sanity(tmp_path):
    """The end-of-test check itself catches a torn file, a stray file and a temp file."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"abc"})
    make_tree(dst, {"a": b"abX"})
    with pytest.raises(AssertionError):
        assert_nothing_lost(src, dst)
    make_tree(dst, {"a": b"abc", ".pcopy-tmp-x-1-2": b""})
    with pytest.raises(AssertionError):
        assert_nothing_lost(src, dst)
    assert_nothing_lost(src, dst, allow_temps=True)
    snapshots_equal(src, src)
