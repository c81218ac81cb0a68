"""The SQLite hash cache: hits only when every key field matches; damage is never trusted or fatal."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time

import pytest
from conftest import make_tree

import pcopy
from pcopy import cli
from pcopy.content import cache
from pcopy.content.cache import HashCache


@pytest.fixture(autouse=True)
def young_files_may_be_cached(monkeypatch):
    monkeypatch.setattr(cache, "RACY_NS", 0)


@pytest.fixture
def cache_file(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "hashes.sqlite3"
    monkeypatch.setenv("PCOPY_CACHE", str(path))
    return path


def trees(tmp_path, n: int = 5):
    src, dst = tmp_path / "src", tmp_path / "dst"
    spec = {f"d/f{i}": f"content {i}".encode() for i in range(n)}
    make_tree(src, spec)
    shutil.copytree(src, dst)
    return src, dst


def ctime_changes(path, change) -> None:
    """Apply ``change`` and make sure the kernel's ctime moved (clock ticks are coarse)."""
    before = os.stat(path).st_ctime_ns
    for _ in range(200):
        change()
        if os.stat(path).st_ctime_ns != before:
            return
        time.sleep(0.005)
    raise AssertionError("ctime did not change")


def test_second_run_reads_nothing_and_starts_no_worker(tmp_path, cache_file):
    src, dst = trees(tmp_path)
    first = pcopy.verify(src, dst, backend="process")
    assert (first.hashed, first.cache_hits, first.exit_code) == (10, 0, 0)
    assert cache_file.exists()
    second = pcopy.verify(src, dst, backend="process")
    assert (second.hashed, second.cache_hits, second.identical, second.exit_code) == (0, 10, 5, 0)
    assert second.workers_started is False
    # pcopy hash of the same tree uses the same entries
    third = pcopy.hash_tree(src, None, backend="process")
    assert (third.hashed, third.cache_hits, third.workers_started) == (0, 5, False)


def test_no_cache_neither_reads_nor_writes_it(tmp_path, cache_file):
    src, dst = trees(tmp_path)
    report = pcopy.verify(src, dst, backend="thread", cache=False)
    assert (report.hashed, report.cache_hits) == (10, 0)
    assert not cache_file.exists()
    assert cli.main(["verify", str(src), str(dst), "--no-cache", "--no-progress", "--backend", "thread"]) == 0
    assert not cache_file.exists()


def test_explicit_cache_path(tmp_path, cache_file):
    src, dst = trees(tmp_path, 2)
    other = tmp_path / "elsewhere.sqlite3"
    pcopy.verify(src, dst, backend="thread", cache=other)
    assert other.exists() and not cache_file.exists()
    assert pcopy.verify(src, dst, backend="thread", cache=other).cache_hits == 4


def test_miss_after_touch(tmp_path, cache_file):
    src, dst = trees(tmp_path)
    pcopy.verify(src, dst, backend="thread")
    target = dst / "d" / "f1"
    ctime_changes(target, lambda: os.utime(target))
    report = pcopy.verify(src, dst, backend="thread")
    assert (report.hashed, report.cache_hits, report.exit_code) == (1, 9, 0)


def test_miss_after_content_change_with_mtime_restored(tmp_path, cache_file):
    src, dst = trees(tmp_path)
    pcopy.verify(src, dst, backend="thread")
    target = dst / "d" / "f1"
    st = os.stat(target)

    def rewrite():
        target.write_bytes(b"CONTENT 1")  # same size
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    ctime_changes(target, rewrite)
    after = os.stat(target)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    report = pcopy.verify(src, dst, backend="thread")
    assert report.hashed == 1 and report.exit_code == 4
    assert [tuple(d) for d in report.differences] == [("differ", "d/f1", "contents differ")]


def test_miss_after_inode_change(tmp_path, cache_file):
    src, dst = trees(tmp_path)
    pcopy.verify(src, dst, backend="thread")
    target = dst / "d" / "f2"
    st = os.stat(target)
    shutil.copy2(target, dst / "d" / "tmp")
    os.replace(dst / "d" / "tmp", target)
    after = os.stat(target)
    assert after.st_ino != st.st_ino and after.st_mtime_ns == st.st_mtime_ns and after.st_size == st.st_size
    report = pcopy.verify(src, dst, backend="thread")
    assert (report.hashed, report.cache_hits, report.exit_code) == (1, 9, 0)


def test_lookup_needs_every_key_field(tmp_path):
    db = HashCache(tmp_path / "c.sqlite3")
    key = (66, 2**64 - 5, 100, 1_600_000_000_000_000_001, 1_600_000_000_000_000_002)  # ino above 2**63
    assert db.put("xxh128", key, "ab" * 16, now_ns=key[4] + 1)
    db.flush()
    assert db.lookup("xxh128", [key]) == {key: "ab" * 16}
    for i in range(5):
        other = key[:i] + (key[i] + 1,) + key[i + 1:]
        assert db.lookup("xxh128", [other]) == {}, f"field {i} was not checked"
    assert db.lookup("sha256", [key]) == {}
    db.close()


def test_young_files_are_not_stored(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "RACY_NS", 2_000_000_000)
    db = HashCache(tmp_path / "c.sqlite3")
    now = 10_000_000_000_000
    young = (1, 2, 3, now - 10, now - 1_000_000_000)
    old = (1, 3, 3, now - 10, now - 3_000_000_000)
    assert db.put("xxh128", young, "00" * 16, now_ns=now) is False
    assert db.put("xxh128", old, "11" * 16, now_ns=now) is True
    db.flush()
    assert db.lookup("xxh128", [young, old]) == {old: "11" * 16}
    db.close()


def test_corrupt_cache_file_is_rebuilt_with_a_warning(tmp_path, cache_file, capsys):
    src, dst = trees(tmp_path)
    cache_file.parent.mkdir()
    cache_file.write_bytes(b"this is not an SQLite database" * 100)
    code = cli.main(["verify", str(src), str(dst), "--no-progress", "--backend", "thread"])
    err = capsys.readouterr().err
    assert code == 0
    assert "pcopy: warning: cache" in err and "rebuilding it" in err
    report = pcopy.verify(src, dst, backend="thread")
    assert report.cache_hits == 10 and report.warnings == []


def test_damaged_pages_are_never_trusted(tmp_path, cache_file):
    src, dst = trees(tmp_path, 300)
    pcopy.verify(src, dst, backend="thread")
    size = cache_file.stat().st_size
    assert size > 4 * 4096
    with open(cache_file, "r+b") as f:  # keep the header page, smash the rest
        f.seek(4096)
        f.write(b"\xff" * (size - 4096))
    (dst / "d" / "f7").write_bytes(b"changed!!")  # a real difference must still be found
    report = pcopy.verify(src, dst, backend="thread")
    assert report.warnings, "damage went unnoticed"
    assert report.exit_code == 4 and [d.path for d in report.differences] == ["d/f7"]
    assert report.identical == 299


def test_locked_cache_is_bypassed_with_a_warning(tmp_path, cache_file, monkeypatch):
    src, dst = trees(tmp_path)
    pcopy.verify(src, dst, backend="thread")
    monkeypatch.setattr(cache, "BUSY_TIMEOUT", 0.05)
    holder = sqlite3.connect(cache_file, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        (dst / "d" / "f3").write_bytes(b"CONTENT 3")  # same size: only the content tells
        report = pcopy.verify(src, dst, backend="thread")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert report.warnings and "locked" in report.warnings[0]
    assert report.cache_hits == 0 and report.hashed == 10  # not trusted: everything was read
    assert report.exit_code == 4
    assert cache_file.exists()  # a lock is not damage: the file is kept
    assert pcopy.verify(src, dst, backend="thread").cache_hits == 9


def test_unusable_cache_location_is_not_fatal(tmp_path, monkeypatch):
    src, dst = trees(tmp_path, 2)
    (tmp_path / "blocker").write_bytes(b"a file where a directory should be")
    report = pcopy.verify(src, dst, backend="thread", cache=tmp_path / "blocker" / "c.sqlite3")
    assert report.exit_code == 0 and report.warnings and report.hashed == 4
