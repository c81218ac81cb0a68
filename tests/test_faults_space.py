"""A full destination: a real small tmpfs (root only) and a deterministic injected ENOSPC.

Design choice under test: on a full destination pcopy stops handing out new
work, lets in-flight files finish or fail, reports the rest as not attempted
(``stopped_early``), exits 3, or 1 when nothing at all could be written.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time

import pytest
from conftest import fd_name, make_tree, temp_files
from fault_helpers import (
    assert_nothing_lost,
    cli,
    env,
    error_lines,
    json_out,
    pcopy_cmd,
    remount,
    run_pcopy,
    sentinel,  # noqa: F401 (fixture)
    snapshots_equal,
    tmpfs,
)

from pcopy.fs import temps
from pcopy.model.batching import BATCH_FILES
from pcopy.runtime.pool import IN_FLIGHT_PER_WORKER

pytestmark = pytest.mark.faults


def _pattern(n: int, size: int) -> bytes:
    return (b"%06d" % n * (size // 6 + 1))[:size]


def _check_disk_full_output(proc, expect_rc: int) -> dict:
    assert proc.returncode == expect_rc, proc.err
    lines = [line for line in error_lines(proc.err) if "disk full" in line]
    assert lines, proc.err
    for line in lines:  # "pcopy: error: <path>: destination: no space left on device (disk full)"
        path = line[len("pcopy: error: "):].split(":", 1)[0]
        assert path, line
    report = json_out(proc.out)
    assert report["stopped_early"] is True
    assert "stopped handing out work" in proc.err
    return report


def test_file_that_cannot_fit_exits_1_then_completes_on_a_bigger_disk(tmp_path, sentinel):  # noqa: F811
    src = tmp_path / "src"
    make_tree(src, {"huge.bin": _pattern(1, 3 << 20)})
    mnt = tmp_path / "mnt"
    with tmpfs(mnt, "2m"):
        dst = mnt / "dst"
        proc = run_pcopy("copy", src, dst, "--no-progress", "--json")
        report = _check_disk_full_output(proc, 1)  # nothing could be written at all
        assert report["copied"] == 0
        assert any("huge.bin" in line and "disk full" in line for line in error_lines(proc.err))
        assert_nothing_lost(src, dst, sentinel)
        assert not (dst / "huge.bin").exists()
        remount(mnt, "size=8m")
        proc = run_pcopy("copy", src, dst, "--no-progress")
        assert proc.returncode == 0, proc.err
        assert_nothing_lost(src, dst, sentinel, complete=True)
        snapshots_equal(src, dst)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_tree_where_some_fit_exits_3_then_completes(tmp_path, sentinel, jobs):  # noqa: F811
    src = tmp_path / "src"
    # more files than the pool keeps in flight (bundles of up to BATCH_FILES), ~6 MiB in all
    spec = {f"d{d:03d}/f{i}": _pattern(d * 100 + i, 2 << 10) for d in range(100) for i in range(30)}
    spec["d0/small"] = b"small"
    make_tree(src, spec)
    mnt = tmp_path / "mnt"
    with tmpfs(mnt, "2m"):
        dst = mnt / "dst"
        proc = run_pcopy("copy", src, dst, "--no-progress", "--json", "-j", jobs)
        report = _check_disk_full_output(proc, 3)
        assert report["copied"] > 0
        found = assert_nothing_lost(src, dst, sentinel)  # no temp file, every final-named file complete
        copied = {rel for rel, kind in found.items() if kind == "file"}
        failed = {f["path"] for f in report["failures"]}
        assert copied and failed and not copied & failed
        assert len(copied) + len(failed) < len(spec), "the rest was not attempted"
        remount(mnt, "size=16m")
        proc = run_pcopy("copy", src, dst, "--no-progress", "--json")
        assert proc.returncode == 0, proc.err
        assert json_out(proc.out)["stopped_early"] is False
        assert_nothing_lost(src, dst, sentinel, complete=True)
        snapshots_equal(src, dst)


def test_disk_full_with_kernel_copy(tmp_path, sentinel):  # noqa: F811
    """--hash none copies with copy_file_range: ENOSPC there is handled the same way."""
    src = tmp_path / "src"
    make_tree(src, {"a.bin": _pattern(1, 1 << 20), "b.bin": _pattern(2, 3 << 20)})
    mnt = tmp_path / "mnt"
    with tmpfs(mnt, "2m"):
        dst = mnt / "dst"
        proc = run_pcopy("copy", src, dst, "--no-progress", "--json", "--hash", "none", "-j", "1")
        _check_disk_full_output(proc, 3)
        assert_nothing_lost(src, dst, sentinel)
        assert (dst / "a.bin").exists() and not (dst / "b.bin").exists()


def test_watch_retries_what_a_full_destination_left_undone(tmp_path, sentinel):  # noqa: F811
    """Nothing in SRC changes after the initial sync filled DST: once space is freed, watch still
    converges (it retries with a back-off instead of waiting for the next event)."""
    src = tmp_path / "src"
    spec = {f"d{d:02d}/f{i}": _pattern(d * 10 + i, 100 << 10) for d in range(24) for i in range(2)}
    make_tree(src, spec)
    mnt = tmp_path / "mnt"
    with tmpfs(mnt, "2m"):
        dst = mnt / "dst"
        errfile = open(tmp_path / "watch.err", "w+b")
        proc = subprocess.Popen(pcopy_cmd("watch", src, dst, "--no-progress", "--debounce", "0.05"),
                                stdout=subprocess.DEVNULL, stderr=errfile, env=env(), cwd="/")
        try:
            _wait(lambda: b"stopped handing out work" in (tmp_path / "watch.err").read_bytes(), "DST full")
            remount(mnt, "size=16m")
            _wait(lambda: _complete(src, dst), "DST to converge without any change in SRC")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
            errfile.close()
        assert proc.returncode in (0, 3, 130)
        assert_nothing_lost(src, dst, sentinel, complete=True)


def _complete(src, dst) -> bool:
    try:
        return sorted(os.listdir(dst)) == sorted(os.listdir(src)) and all(
            sorted(os.listdir(dst / d)) == sorted(os.listdir(src / d)) for d in os.listdir(src)) \
            and not temp_files(dst)
    except FileNotFoundError:
        return False


def _wait(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --------------------------------------------------------------------------- deterministic: os.write fails


def _enospc_after(monkeypatch, allowed_writes: int) -> list:
    """os.write into temp files raises ENOSPC after ``allowed_writes`` calls (thread backend only)."""
    real = os.write
    calls = []

    def fake(fd, data):
        if fd_name(fd).startswith(temps.TMP_PREFIX):
            calls.append(fd)
            if len(calls) > allowed_writes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", fake)
    return calls


def test_injected_enospc_stops_handing_out_work(tmp_path, sentinel, monkeypatch, capsys):  # noqa: F811
    src = tmp_path / "src"
    spec = {f"d{d:03d}/f{i}": _pattern(d * 100 + i, 100 + i) for d in range(120) for i in range(15)}
    make_tree(src, spec)
    dst = tmp_path / "dst"
    _enospc_after(monkeypatch, 4)
    rc = cli(["copy", src, dst, "--no-progress", "--json", "--backend", "thread", "-j", "1"])
    out, err = capsys.readouterr()
    assert rc == 3, err
    report = json_out(out)
    assert report["stopped_early"] is True and report["copied"] == 4
    assert any("disk full" in line for line in error_lines(err))
    found = assert_nothing_lost(src, dst, sentinel)
    # bundles already in flight (IN_FLIGHT_PER_WORKER) were tried; later directories were not attempted
    attempted = {rel for rel, kind in found.items() if kind == "file"} | {f["path"] for f in report["failures"]}
    assert 4 < len(attempted) <= (IN_FLIGHT_PER_WORKER + 1) * BATCH_FILES < len(spec), len(attempted)
    assert not any(rel.startswith("d119/") for rel in attempted)
    monkeypatch.undo()
    assert cli(["copy", src, dst, "--no-progress"]) == 0
    assert_nothing_lost(src, dst, sentinel, complete=True)
    snapshots_equal(src, dst)


def test_injected_enospc_on_every_write_exits_1(tmp_path, sentinel, monkeypatch, capsys):  # noqa: F811
    src = tmp_path / "src"
    make_tree(src, {f"f{i}": _pattern(i, 5000) for i in range(5)})
    dst = tmp_path / "dst"
    _enospc_after(monkeypatch, 0)
    rc = cli(["copy", src, dst, "--no-progress", "--json", "--backend", "thread"])
    out, err = capsys.readouterr()
    assert rc == 1, err
    assert json_out(out)["stopped_early"] is True
    assert any("disk full" in line and line.startswith("pcopy: error: f") for line in err.splitlines())
    assert temp_files(dst) == []
    assert_nothing_lost(src, dst, sentinel)
    monkeypatch.undo()
    assert cli(["copy", src, dst, "--no-progress"]) == 0
    assert_nothing_lost(src, dst, sentinel, complete=True)
