"""``--partial`` resumes a big file after a kill; holes in a source file stay holes (as cp --sparse=auto).

The resume test kills a real ``python -m pcopy copy --partial`` (slowed by
--bwlimit so the kill lands half way) with SIGKILL, then reruns the copy in
this process with the thread backend while counting what is read from the
source and written to DST: the kept half is read once for the check and
only the rest is written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import xxhash
from conftest import make_tree
from fault_helpers import env, pcopy_cmd

import pcopy
from pcopy.fs import temps

MIB = 1 << 20


def _big(path, size: int) -> bytes:
    block = os.urandom(MIB)
    data = b"".join(block[i % 7:] + block[:i % 7] for i in range(size // MIB))
    path.write_bytes(data)
    return data


def _partial(dst) -> list:
    return [n for n in os.listdir(dst) if temps.is_partial_name(n)]


def _kill_mid_copy(src, dst, size: int) -> int:
    """Start a --partial copy slowed to ~8 MiB/s and SIGKILL its whole group once about half is written."""
    proc = subprocess.Popen(pcopy_cmd("copy", src, dst, "--partial", "--bwlimit", "8M", "-j", "1", "-q",
                                      "--no-progress"), env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kept = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            names = _partial(dst) if os.path.isdir(dst) else []
            if names:
                kept = os.path.getsize(os.path.join(dst, names[0]))
                if kept >= size // 2:
                    break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    return kept


@pytest.mark.faults
def test_partial_resumes_after_sigkill_and_writes_only_the_rest(tmp_path, monkeypatch):
    size = 48 * MIB
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    data = _big(src / "big.bin", size)
    os.utime(src / "big.bin", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    kept = _kill_mid_copy(src, dst, size)
    assert size // 4 <= kept < size, f"the kill did not land mid-copy ({kept} bytes kept)"
    assert not (dst / "big.bin").exists()  # never a half file under the final name
    (name,) = _partial(dst)

    written, read = [0], [0]
    real_write, real_preadv = os.write, os.preadv

    def counting_write(fd, data_):
        n = real_write(fd, data_)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == name:
            written[0] += n
        return n

    def counting_preadv(fd, buffers, offset):
        n = real_preadv(fd, buffers, offset)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == "big.bin":
            read[0] += n
        return n

    monkeypatch.setattr(os, "write", counting_write)
    monkeypatch.setattr(os, "preadv", counting_preadv)
    report = pcopy.copytree(src, dst, partial=True, backend="thread", jobs=1)
    monkeypatch.undo()
    assert report.ok and report.copied == 1, report.failures
    assert (dst / "big.bin").read_bytes() == data
    assert _partial(dst) == []
    kept_now = size - written[0]
    assert kept_now >= kept - 8 * MIB, f"wrote {written[0]} of {size} bytes: the kept part was not reused"
    assert read[0] == size, f"read {read[0]} bytes of the source: the kept part must be read once, the rest once"


def test_partial_whose_prefix_is_not_the_source_starts_over(tmp_path):
    size = 6 * MIB
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    data = _big(src / "f", size)
    (dst / temps.partial_name("f")).write_bytes(b"not the source's bytes" * 1000)
    report = pcopy.copytree(src, dst, partial=True, backend="thread")
    assert report.ok and (dst / "f").read_bytes() == data
    assert _partial(dst) == []


def test_a_run_without_partial_removes_kept_partial_files(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"f": b"x"})
    make_tree(dst, {})
    (dst / temps.partial_name("gone")).write_bytes(b"half")
    report = pcopy.sync(src, dst, backend="thread")
    assert report.ok and _partial(dst) == []


def test_partial_files_are_never_taken_for_a_dead_writers_temp(tmp_path):
    """A partial name has no pid: a name like 'x-1-y' must not look like '<token>-<pid>-<n>'."""
    assert temps.writer_pid(temps.partial_name("a-1-b")) == -1
    assert not temps.is_stale_temp(temps.partial_name("a-1-b"))


def _sparse(path, size: int, data_at: tuple) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in data_at:
            f.seek(offset)
            f.write(b"DATA" * 1024)


@pytest.mark.parametrize("hash_", ["xxh128", "none"])
def test_holes_stay_holes_by_default(tmp_path, hash_):
    size = 64 * MIB
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    _sparse(src / "holey", size, (0, 10 * MIB, size - 4096))
    (src / "dense").write_bytes(os.urandom(2 * MIB))
    manifest = tmp_path / "m.xxh" if hash_ != "none" else None
    report = pcopy.copytree(src, dst, hash=hash_, manifest=manifest)
    assert report.ok
    for name in ("holey", "dense"):
        assert (dst / name).read_bytes() == (src / name).read_bytes()
    src_blocks, dst_blocks = os.stat(src / "holey").st_blocks, os.stat(dst / "holey").st_blocks
    assert dst_blocks <= src_blocks + 64, f"holes were filled: {dst_blocks} blocks for {src_blocks} in SRC"
    assert os.stat(dst / "dense").st_blocks * 512 >= 2 * MIB
    if manifest is not None:
        line = next(x for x in manifest.read_text().splitlines() if x.endswith("  holey"))
        assert line.split()[0] == xxhash.xxh3_128((src / "holey").read_bytes()).hexdigest()  # zeros hashed too


def test_a_file_that_is_all_hole(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    with open(src / "empty-but-big", "wb") as f:
        f.truncate(8 * MIB)
    report = pcopy.copytree(src, dst)
    assert report.ok and os.path.getsize(dst / "empty-but-big") == 8 * MIB
    assert os.stat(dst / "empty-but-big").st_blocks == 0
    assert (dst / "empty-but-big").read_bytes() == bytes(8 * MIB)
