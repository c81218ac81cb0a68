"""The worker path: errors injected at the OS boundary become results, never leftovers.

Faults are injected by wrapping functions of the ``os`` module, so these tests
use the thread backend (a worker process would not see the patch).
"""

from __future__ import annotations

import errno
import os
import threading

import pytest
from conftest import (
    Dir,
    Link,
    big_content,
    enospc,
    fd_name,
    make_tree,
    opens_source,
    oserror,
    temp_files,
    tree_snapshot,
)

import pcopy
from pcopy.fs import beneath, temps
from pcopy.model import entries, results
from pcopy.model.entries import Batch, Task
from pcopy.options import Options
from pcopy.runtime import worker as rt_worker
from pcopy.transfer import worker as sync_worker


def _copy(src, dst, **kwargs):
    kwargs.setdefault("backend", "thread")
    kwargs.setdefault("jobs", 2)
    return pcopy.copytree(src, dst, **kwargs)


def _status(report) -> dict:
    return {r.relpath: (r.status, r.message) for r in report.results}


# --------------------------------------------------------------------------- source errors


@pytest.mark.parametrize("code, reason", [(errno.EIO, "Input/output error"),
                                          (errno.EACCES, "Permission denied")])
@pytest.mark.parametrize("size", [10, 3 << 20], ids=["small", "big"])
def test_read_error_fails_only_that_file(tmp_path, io_fault, code, reason, size):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a", "bad": big_content(size), "z/c": b"c"})
    is_bad = lambda fd, *a, **k: fd_name(fd) == "bad"  # noqa: E731
    io_fault("pread", is_bad, oserror(code))
    io_fault("preadv", is_bad, oserror(code))

    report = _copy(src, dst)

    assert io_fault.hits, "the fault was never triggered"
    assert report.failed == 1 and report.copied == 2
    assert _status(report)["bad"] == (results.FAILED, f"source: {reason}")
    assert not os.path.lexists(dst / "bad")
    assert temp_files(dst) == []
    assert (dst / "a").read_bytes() == b"a" and (dst / "z" / "c").read_bytes() == b"c"


@pytest.mark.parametrize("size", [10, 3 << 20], ids=["small", "big"])
def test_disk_full_fails_the_file_and_removes_its_temp(tmp_path, io_fault, size):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a", "victim": big_content(size), "z": b"z"})
    seen_temp_names = []

    def full(fd, data):
        name = fd_name(fd)
        if name.startswith(temps.TMP_PREFIX) and os.fstat(fd).st_size + len(data) >= size:
            seen_temp_names.append(name)
            return True  # the write that would complete "victim" fails (earlier chunks succeed)
        return False

    io_fault("write", full, enospc)

    report = _copy(src, dst, jobs=1)

    assert seen_temp_names, "no write into a temporary file was seen"
    assert report.failed == 1 and report.copied == 2
    (failure,) = report.failures
    assert failure.relpath == "victim"
    assert "disk full" in failure.message and failure.message.startswith("destination:")
    assert temp_files(dst) == []
    assert not os.path.lexists(dst / "victim")
    assert sorted(os.listdir(dst)) == ["a", "z"]


def test_disk_full_in_kernel_copy(tmp_path, io_fault):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"victim": big_content(), "ok": b"ok"})
    io_fault("copy_file_range", lambda fd, out, *a, **k: fd_name(fd) == "victim", enospc)
    report = _copy(src, dst, hash="none")
    assert io_fault.hits
    assert _status(report)["victim"][0] == results.FAILED
    assert "disk full" in _status(report)["victim"][1]
    assert temp_files(dst) == [] and sorted(os.listdir(dst)) == ["ok"]


@pytest.mark.parametrize("unavailable", [["copy_file_range"], ["copy_file_range", "sendfile"]],
                         ids=["sendfile", "read-write"])
def test_kernel_copy_falls_back(tmp_path, io_fault, unavailable):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"big": big_content(), "small": b"small", "empty": b""})
    for func in unavailable:
        io_fault(func, lambda *a, **k: True, oserror(errno.EXDEV if func == "copy_file_range" else errno.ENOSYS))
    report = _copy(src, dst, hash="none")
    assert report.failed == 0 and report.copied == 3
    assert {f for f, _ in io_fault.hits} == set(unavailable)
    assert tree_snapshot(dst) == tree_snapshot(src)


def test_source_vanishing_is_a_skip(tmp_path, io_fault):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"gone": b"g", "kept": b"k"})
    io_fault("open", opens_source("gone"), oserror(errno.ENOENT))
    report = _copy(src, dst)
    assert _status(report)["gone"] == (results.SKIPPED, "vanished before it could be copied")
    assert report.failed == 0 and report.copied == 1
    assert os.listdir(dst) == ["kept"]


def test_rename_failure_removes_temp(tmp_path, io_fault):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"f": b"data", "l": Link("f")})
    io_fault("rename", lambda *a, **k: True, oserror(errno.EROFS))
    report = _copy(src, dst)
    assert report.failed == 2
    assert {r.message for r in report.failures} == {"destination: read-only file system"}
    assert temp_files(dst) == [] and os.listdir(dst) == []


# --------------------------------------------------------------------------- source changing under us


def _grow_on_read(io_fault, name: str, times: int):
    """Append to ``name`` while pcopy reads it, the first ``times`` reads."""
    count = [0]

    def when(fd, *args, **kwargs):
        if fd_name(fd) == name and count[0] < times:
            count[0] += 1
            path = os.readlink(f"/proc/self/fd/{fd}")
            with open(path, "ab") as f:
                f.write(b"+more")
        return False  # never raise: only change the file

    io_fault("pread", when, lambda: AssertionError)
    io_fault("preadv", when, lambda: AssertionError)
    return count


@pytest.mark.parametrize("size", [100, 3 << 20], ids=["small", "big"])
def test_source_changed_once_is_retried(tmp_path, io_fault, size):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"moving": big_content(size)})
    count = _grow_on_read(io_fault, "moving", times=1)
    report = _copy(src, dst)
    assert count[0] == 1
    assert report.copied == 1 and report.failed == 0
    assert (dst / "moving").read_bytes() == (src / "moving").read_bytes()
    assert (dst / "moving").read_bytes().endswith(b"+more")
    assert temp_files(dst) == []


def test_source_that_keeps_changing_fails(tmp_path, io_fault):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"moving": b"x" * 100, "still": b"s"})
    _grow_on_read(io_fault, "moving", times=1000)
    report = _copy(src, dst)
    assert _status(report)["moving"][0] == results.FAILED
    assert "changed" in _status(report)["moving"][1]
    assert temp_files(dst) == [] and os.listdir(dst) == ["still"]


# --------------------------------------------------------------------------- DST safety


def test_symlinked_directory_in_dst_is_not_followed(tmp_path):
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    make_tree(src, {"sub/f": b"payload", "top": b"t"})
    outside.mkdir()
    dst.mkdir()
    os.symlink(outside, dst / "sub")

    report = _copy(src, dst)

    assert os.listdir(outside) == []  # nothing was written through the link
    assert (dst / "sub").is_symlink()
    assert (dst / "top").read_bytes() == b"t"
    assert report.failed >= 1
    failed = {r.relpath for r in report.failures}
    assert "sub" in failed


def test_symlink_in_dst_is_replaced_not_written_through(tmp_path):
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside.txt"
    make_tree(src, {"f": b"new content"})
    outside.write_bytes(b"precious")
    dst.mkdir()
    os.symlink(outside, dst / "f")
    report = _copy(src, dst)
    assert report.copied == 1
    assert outside.read_bytes() == b"precious"
    assert not (dst / "f").is_symlink() and (dst / "f").read_bytes() == b"new content"


def _conflict_tree(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"was-file/inner": b"i", "was-dir": b"now a file", "fine": b"f"})
    make_tree(dst, {"was-file": b"a file in dst", "was-dir": Dir(), "was-dir/keep": b"k"})
    return src, dst


def test_conflicts_between_files_and_directories(tmp_path):
    src, dst = _conflict_tree(tmp_path)
    report = _copy(src, dst)
    messages = {}
    for r in report.results:
        messages.setdefault(r.relpath, []).append((r.status, r.message))
    assert (results.FAILED, "cannot overwrite non-directory with directory (use sync to replace it)") \
        in messages["was-file"]
    assert messages["was-dir"] == [
        (results.FAILED, "cannot overwrite directory with non-directory (use sync to replace it)")]
    assert messages["fine"][0][0] == results.COPIED
    assert (dst / "was-file").read_bytes() == b"a file in dst"  # untouched
    assert (dst / "was-dir" / "keep").read_bytes() == b"k"
    assert temp_files(dst) == []


def test_each_failed_path_is_reported_once(tmp_path):
    src, dst = _conflict_tree(tmp_path)
    report = _copy(src, dst)
    paths = [r.relpath for r in report.failures]
    assert len(paths) == len(set(paths)), paths


# --------------------------------------------------------------------------- helpers of fsops


def test_open_dir_beneath_refuses_symlinks(tmp_path):
    (tmp_path / "real" / "deeper").mkdir(parents=True)
    os.symlink("real", tmp_path / "link")
    fd = beneath.open_dir_beneath(str(tmp_path), os.path.join("real", "deeper"))
    try:
        assert os.path.samefile(f"/proc/self/fd/{fd}", tmp_path / "real" / "deeper")
    finally:
        os.close(fd)
    with pytest.raises(OSError) as info:
        beneath.open_dir_beneath(str(tmp_path), os.path.join("link", "deeper"))
    assert info.value.errno in (errno.ELOOP, errno.ENOTDIR)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        beneath.open_dir_beneath(str(tmp_path), "missing/x")
    assert len(os.listdir("/proc/self/fd")) == before  # no fd leaked on failure


def test_remove_temp_files_removes_only_this_runs(tmp_path):
    (tmp_path / "d").mkdir()
    mine = [f"{temps.TMP_PREFIX}tok1-1-0", f"{temps.TMP_PREFIX}tok1-1-1"]
    others = [f"{temps.TMP_PREFIX}tok2-1-0", "regular", f"x{temps.TMP_PREFIX}tok1-1-2"]
    for name in mine + others:
        (tmp_path / "d" / name).write_bytes(b"")
    (tmp_path / mine[0]).write_bytes(b"")
    removed = temps.remove_temp_files(str(tmp_path), {"d", "missing"}, "tok1")
    assert removed == 2
    assert sorted(os.listdir(tmp_path / "d")) == sorted(others)
    assert os.path.exists(tmp_path / mine[0])  # "" was not in the list of directories


def test_run_batch_reports_each_task(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"d/a": b"a", "d/l": Link("a")})
    (dst / "d").mkdir(parents=True)
    options = Options(src=str(src), dst=str(dst), token="t0")
    batch = Batch("d", (Task(entries.COPY, "a", 1), Task(entries.LINK, "l", 1), Task(entries.COPY, "nope", 3)))
    got = sync_worker.run_batch(options, batch)
    assert [(r.relpath, r.status, r.kind) for r in got] == [
        (os.path.join("d", "a"), results.COPIED, entries.FILE),
        (os.path.join("d", "l"), results.COPIED, entries.SYMLINK),
        (os.path.join("d", "nope"), results.SKIPPED, entries.FILE),
    ]
    assert (dst / "d" / "a").read_bytes() == b"a" and os.readlink(dst / "d" / "l") == "a"


def test_run_batch_missing_destination_directory(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"d/a": b"a", "d/b": b"b"})
    dst.mkdir()
    options = Options(src=str(src), dst=str(dst), token="t0")
    got = sync_worker.run_batch(options, Batch("d", (Task(entries.COPY, "a", 1), Task(entries.COPY, "b", 1))))
    assert [r.status for r in got] == [results.FAILED, results.FAILED]
    assert all(r.message == "destination directory: No such file or directory" for r in got)


def test_run_batch_after_stop_cancels_remaining_tasks(tmp_path):
    """Workers drop their work once the stop flag is up (run in a thread: the flag is thread-local)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a", "b": big_content()})
    dst.mkdir()
    options = Options(src=str(src), dst=str(dst), token="t0")
    stop = threading.Event()
    stop.set()
    out = []

    def worker():
        rt_worker.init(stop, False)
        out.extend(sync_worker.run_batch(options, Batch("", (Task(entries.COPY, "a", 1),
                                                       Task(entries.COPY, "b", len(big_content()))))))

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert [r.status for r in out] == [results.CANCELLED, results.CANCELLED]
    assert os.listdir(dst) == []
