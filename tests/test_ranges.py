"""A big file split across workers (``transfer.ranges``): 4 MiB ranges of a file of 16 MiB + 3 bytes.

Real runs on real temp dirs: every backend, a real full tmpfs, a stop request in the middle of a
range, a SIGKILL of the whole run then a rerun, and --partial resuming range by range. The thread
backend runs in this process, so a patched ``os`` function sees (and counts) what the pieces do.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import xxhash
from conftest import PYTHON, temp_files
from fault_helpers import XXHSUM, assert_nothing_lost, env, tmpfs
from test_dask import cluster, needs_dask  # noqa: F401 (the module's 2-worker LocalCluster)

from pcopy.errors import Interrupted
from pcopy.fs import temps
from pcopy.model.results import DISK_FULL, FAILED
from pcopy.options import Options
from pcopy.runtime.progress import Counters
from pcopy.transfer import engine, ranges

MIB = 1 << 20
RANGE = 4 * MIB
SIZE = 4 * RANGE + 3  # five ranges, the last one 3 bytes long


@pytest.fixture(autouse=True)
def idle_machine(monkeypatch):
    """The split is for a machine with a core to spare (``ranges.spare_core``): these tests split whatever
    the load of the machine running them."""
    monkeypatch.setattr(ranges, "spare_core", lambda: True)


def _source(tmp_path, size: int = SIZE, name: str = "big") -> tuple:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    data = os.urandom(size)
    (src / name).write_bytes(data)
    os.utime(src / name, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return src, data


def _copy(src, dst, **fields):
    fields.setdefault("jobs", 2)
    hooks = {k: fields.pop(k) for k in ("counters", "stop_event", "scheduler") if k in fields}
    return engine.copy_tree(Options(str(src), str(dst), range_bytes=RANGE, **fields), keep_results=True, **hooks)


class TempOpens:
    """Records os.open calls of the temp names that were renamed into place, in this process
    (not the engine's probe files): (name, created?)."""

    def __init__(self, monkeypatch) -> None:
        self.opens: list = []
        self.renamed: set = set()
        real_open, real_rename = os.open, os.rename

        def fake_open(path, flags, *args, **kwargs):
            if isinstance(path, str) and path.startswith(temps.TMP_PREFIX):
                self.opens.append((path, bool(flags & os.O_CREAT)))
            return real_open(path, flags, *args, **kwargs)

        def fake_rename(a, b, *args, **kwargs):
            real_rename(a, b, *args, **kwargs)
            self.renamed.add(a)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "rename", fake_rename)

    @property
    def calls(self) -> list:
        return [(name, created) for name, created in self.opens if name in self.renamed]

    @property
    def created(self) -> list:
        return [name for name, created in self.calls if created]


def _manifest_line(dst, name: str) -> str:
    if XXHSUM is not None:
        return subprocess.run([XXHSUM, "-H2", name], cwd=dst, capture_output=True, text=True, check=True).stdout
    return f"{xxhash.xxh3_128_hexdigest((dst / name).read_bytes())}  {name}\n"


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_a_split_copy_is_identical_with_its_manifest_line(tmp_path, backend):
    src, data = _source(tmp_path)
    dst, manifest = tmp_path / "dst", tmp_path / "m.xxh"
    counters = Counters()
    report = _copy(src, dst, backend=backend, manifest=str(manifest), counters=counters)
    assert report.ok and report.copied == 1 and report.bytes_copied == SIZE
    assert (dst / "big").read_bytes() == data
    assert manifest.read_text() == _manifest_line(dst, "big")
    assert os.stat(dst / "big").st_mtime_ns == 1_600_000_000_000_000_000
    assert counters.bytes_done == SIZE  # ranges counted as they landed, not twice
    assert temp_files(dst) == []


def test_one_temp_is_created_and_every_range_writes_into_it(tmp_path, monkeypatch):
    src, data = _source(tmp_path)
    opens = TempOpens(monkeypatch)
    report = _copy(src, tmp_path / "dst", backend="thread")
    assert report.ok and (tmp_path / "dst" / "big").read_bytes() == data
    (tmp,) = opens.created
    assert [name for name, _ in opens.calls] == [tmp] * 7  # created, five ranges, the seal


def test_one_worker_copies_the_file_whole(tmp_path, monkeypatch):
    src, data = _source(tmp_path)
    opens = TempOpens(monkeypatch)
    report = _copy(src, tmp_path / "dst", backend="thread", jobs=1)
    assert report.ok and (tmp_path / "dst" / "big").read_bytes() == data
    assert len(opens.calls) == 1 and len(opens.created) == 1


def test_a_busy_machine_copies_the_file_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(ranges, "spare_core", lambda: False)
    src, data = _source(tmp_path)
    opens = TempOpens(monkeypatch)
    report = _copy(src, tmp_path / "dst", backend="thread")
    assert report.ok and (tmp_path / "dst" / "big").read_bytes() == data
    assert len(opens.calls) == 1 and len(opens.created) == 1


def test_a_big_file_found_in_a_batch_of_unknown_sizes_is_split_too(tmp_path, monkeypatch):
    src, data = _source(tmp_path)
    for i in range(5):
        (src / f"small{i}").write_bytes(b"%d" % i * 100)
    opens = TempOpens(monkeypatch)
    report = _copy(src, tmp_path / "dst", backend="thread")
    assert report.ok and report.copied == 6 and (tmp_path / "dst" / "big").read_bytes() == data
    assert len(opens.created) == 6 and len(opens.calls) == 5 + 7


def test_sync_over_an_older_copy_and_checksum(tmp_path):
    src, data = _source(tmp_path)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "big").write_bytes(data[:SIZE - 5] + b"old!!")
    report = _copy(src, dst, replace=True, checksum=True, manifest=str(tmp_path / "m.xxh"))
    assert report.ok and report.copied == 1 and (dst / "big").read_bytes() == data
    assert (tmp_path / "m.xxh").read_text() == _manifest_line(dst, "big")
    again = _copy(src, dst, replace=True, checksum=True)
    assert again.ok and again.copied == 0 and again.skipped == 1


def test_a_full_destination_fails_the_file_once_and_leaves_nothing(tmp_path):
    src, _ = _source(tmp_path)
    with tmpfs(tmp_path / "small", "12m") as dst:
        report = _copy(src, dst, backend="process")
        assert report.failed == 1 and [(r.relpath, r.reason) for r in report.failures] == [("big", DISK_FULL)]
        assert [r.relpath for r in report.results if r.status == FAILED] == ["big"]
        assert os.listdir(dst) == []  # no final name, no temp


def test_a_source_that_changes_mid_copy_is_copied_again_whole(tmp_path, monkeypatch):
    src, data = _source(tmp_path)
    real = os.copy_file_range
    changed = []

    def change_once(fd, out, count, offset_src=None, offset_dst=None):
        if not changed:
            changed.append(True)
            with open(src / "big", "r+b") as fh:
                fh.write(b"CHANGED")
        return real(fd, out, count, offset_src, offset_dst)

    monkeypatch.setattr(os, "copy_file_range", change_once)
    report = _copy(src, tmp_path / "dst", backend="thread", manifest=str(tmp_path / "m.xxh"))
    assert report.ok and report.copied == 1
    assert (tmp_path / "dst" / "big").read_bytes() == b"CHANGED" + data[7:]
    assert (tmp_path / "m.xxh").read_text() == _manifest_line(tmp_path / "dst", "big")
    assert temp_files(tmp_path / "dst") == []


def test_a_source_that_keeps_changing_is_not_renamed(tmp_path, monkeypatch):
    src, _ = _source(tmp_path)
    real = os.preadv

    def rewrite(fd, buffers, offset):
        n = real(fd, buffers, offset)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == "big":
            with open(src / "big", "r+b") as fh:  # written again (same size) after every read
                fh.write(os.urandom(1))
        return n

    monkeypatch.setattr(os, "preadv", rewrite)
    report = _copy(src, tmp_path / "dst", backend="thread")
    assert [(r.relpath, r.reason) for r in report.failures] == [("big", "source-changed")]
    assert os.listdir(tmp_path / "dst") == []


def test_a_stop_in_the_middle_of_a_range_leaves_no_file(tmp_path, monkeypatch):
    src, _ = _source(tmp_path)
    stop = threading.Event()
    real = os.copy_file_range

    def stop_now(*args):
        stop.set()  # as Ctrl-C does, while a range is being copied
        return real(*args)

    monkeypatch.setattr(os, "copy_file_range", stop_now)
    with pytest.raises(Interrupted):
        _copy(src, tmp_path / "dst", backend="thread", stop_event=stop)
    assert os.listdir(tmp_path / "dst") == []


def test_partial_resume_writes_only_what_is_missing(tmp_path, monkeypatch):
    src, data = _source(tmp_path)
    dst = tmp_path / "dst"
    dst.mkdir()
    name = temps.partial_name("big")
    kept = bytearray(data[:3 * RANGE])  # ranges 0 and 2 complete, 1 half written, 3 and 4 missing
    kept[RANGE + 2 * MIB:2 * RANGE] = bytes(2 * MIB)
    (dst / name).write_bytes(kept)
    written = []
    real_write, real_range = os.write, os.copy_file_range

    def counting_write(fd, data_):
        n = real_write(fd, data_)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == name:
            written.append(n)
        return n

    def counting_range(fd, out, *args):
        n = real_range(fd, out, *args)
        written.append(n)
        return n

    monkeypatch.setattr(os, "write", counting_write)
    monkeypatch.setattr(os, "copy_file_range", counting_range)
    report = _copy(src, dst, backend="thread", partial=True)
    assert report.ok and (dst / "big").read_bytes() == data
    assert sum(written) == 2 * MIB + RANGE + 3  # the rest of range 1, ranges 3 and 4
    assert os.listdir(dst) == ["big"]


SCRIPT = """
import sys
from pcopy.options import Options
from pcopy.transfer import engine, ranges
ranges.spare_core = lambda: True  # split whatever the load of the machine
engine.copy_tree(Options(sys.argv[1], sys.argv[2], jobs=2, range_bytes=int(sys.argv[3]), partial=sys.argv[4] == "1"))
"""


def _kill_mid_range(src, dst, partial: bool) -> bool:
    """Run a split copy in its own session; SIGKILL the group once its temp holds data. True if it did."""
    proc = subprocess.Popen([PYTHON, "-c", SCRIPT, str(src), str(dst), str(RANGE), "1" if partial else "0"],
                            env=env(), start_new_session=True, stderr=subprocess.DEVNULL)
    hit = False
    try:
        deadline = time.monotonic() + 60
        while not hit and time.monotonic() < deadline and proc.poll() is None:
            try:
                hit = any(n.startswith(temps.TMP_PREFIX) and os.path.getsize(dst / n) > 0 for n in os.listdir(dst))
            except OSError:
                pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    return hit


@pytest.mark.faults
@pytest.mark.parametrize("partial", [False, True], ids=["temp", "partial"])
def test_sigkill_mid_range_then_rerun_converges(tmp_path, partial):
    src, data = _source(tmp_path, 16 * RANGE + 3)
    dst = tmp_path / "dst"
    try:
        hit = _kill_mid_range(src, dst, partial)
        assert_nothing_lost(src, dst, allow_temps=True)  # a final name only ever holds the whole file
        print(f"killed mid-copy: {hit}; left: {temp_files(dst) if dst.is_dir() else None}")
        report = _copy(src, dst, backend="process", partial=partial)
        assert report.ok and (dst / "big").read_bytes() == data
        assert temp_files(dst) == []
    finally:
        shutil.rmtree(dst, ignore_errors=True)


@needs_dask
def test_the_dask_backend_splits_too(tmp_path, monkeypatch, cluster):  # noqa: F811 (fixture)
    src, data = _source(tmp_path)
    seen = []
    real = ranges.Splitter.consume

    def counting(self, piece, *args):
        seen.append(piece.part)
        return real(self, piece, *args)

    monkeypatch.setattr(ranges.Splitter, "consume", counting)
    report = _copy(src, tmp_path / "dst", manifest=str(tmp_path / "m.xxh"), scheduler=cluster.scheduler_address)
    assert report.ok and (tmp_path / "dst" / "big").read_bytes() == data
    assert (tmp_path / "m.xxh").read_text() == _manifest_line(tmp_path / "dst", "big")
    assert sorted(seen) == ["hash"] + ["range"] * 5 + ["seal"]
