"""verify on the one march: DST listed by the forked lister, the cache asked per directory, listings stored whole."""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import sqlite3

import pytest
import xxhash
from conftest import Link, big_content, make_tree

import pcopy
from pcopy.content import cache
from pcopy.content.cache import HashCache, listing_fingerprint, unpack
from pcopy.fs import march as march_module
from pcopy.integrity import worker
from pcopy.model.batching import ALONE_BYTES


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    path = tmp_path / "cache.sqlite3"
    monkeypatch.setenv("PCOPY_CACHE", str(path))
    monkeypatch.setattr(cache, "RACY_NS", 0)
    return path


def listings(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM listings").fetchone()[0]


def many_dirs(tmp_path, dirs: int = 30):
    spec = {f"d{i:02d}/f{j}": f"file {i} {j}".encode() for i in range(dirs) for j in range(4)}
    spec.update({f"d{i:02d}/sub/g": b"deeper" for i in range(0, dirs, 3)})
    spec["d05/link"] = Link("f0")
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, spec)
    shutil.copytree(src, dst, symlinks=True)
    return src, dst


def damage(dst) -> list:
    """Differences spread over the tree, with DST-only directories between the SRC ones (the lister skips them)."""
    (dst / "d01" / "f2").write_bytes(b"FILE 1 2")  # same size, other content
    (dst / "d04" / "f0").write_bytes(b"longer than before")
    (dst / "d07" / "f3").unlink()
    make_tree(dst, {"d07x/only": b"dst only dir", "d07/new": b"extra", "d12/sub/extra/e": b"deeper extra"})
    shutil.rmtree(dst / "d09")
    shutil.rmtree(dst / "d15" / "sub")
    (dst / "d15" / "sub").write_bytes(b"a file where SRC has a directory")
    os.unlink(dst / "d05" / "link")
    os.symlink("f1", dst / "d05" / "link")
    (dst / "d29" / "f1").write_bytes(b"file 29 X")
    return [("differ", "d01/f2"), ("differ", "d04/f0"), ("differ", "d05/link"), ("extra", "d07/new"),
            ("missing", "d07/f3"), ("extra", "d07x/"), ("missing", "d09/"), ("extra", "d12/sub/extra/"),
            ("differ", "d15/sub"), ("differ", "d29/f1")]


def found(report) -> list:
    return sorted((d.kind, d.path) for d in report.differences)


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_lister_reports_every_difference_as_the_in_process_march_does(tmp_path, monkeypatch, use_cache):
    src, dst = many_dirs(tmp_path)
    if use_cache:
        assert pcopy.verify(src, dst, backend="process").exit_code == 0
        assert pcopy.verify(src, dst, backend="process").exit_code == 0  # now the listings are stored too
    expected = sorted(damage(dst))
    started = []
    real = march_module._Lister.__init__

    def spy(self, *args):
        started.append(args[0])
        real(self, *args)
    monkeypatch.setattr(march_module._Lister, "__init__", spy)
    forked = pcopy.verify(src, dst, backend="process", cache=use_cache)
    assert started == [str(dst)]
    assert found(forked) == expected and forked.exit_code == 4
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    in_process = pcopy.verify(src, dst, backend="thread", cache=use_cache)
    assert len(started) == 1  # no lister this time
    assert found(in_process) == expected
    assert [tuple(d) for d in in_process.differences] == [tuple(d) for d in forked.differences]
    assert in_process.identical == forked.identical


def random_keys(rng, n):
    keys = []
    for i in range(n):
        ino = rng.randrange(1, 1 << 64) if i % 7 == 0 else rng.randrange(1, 10_000_000)
        keys.append((rng.choice([64769, (1 << 64) - 5]), ino, rng.randrange(0, 1 << 40),
                     rng.randrange(-10**18, 10**18), rng.randrange(0, 1 << 61)))
    return keys


def test_packed_and_listing_lookups_answer_as_per_file_lookup(tmp_path):
    rng = random.Random(13)
    db = HashCache(tmp_path / "c.sqlite3")
    keys = random_keys(rng, 700)  # more than one query of lookup_packed
    stored = keys[::2]
    for key in stored:
        assert db.put("xxh128", key, f"{key[1] % 997:032x}", now_ns=1 << 62)
    db.flush()
    probe = list(keys)
    probe[10] = probe[10][:4] + (probe[10][4] + 1,)  # one field off: a miss
    probe[12] = probe[12][:2] + (probe[12][2] + 1,) + probe[12][3:]
    per_file = db.lookup("xxh128", probe)
    packed = [v for i, key in enumerate(probe) for v in (i, *key)]
    hits, text = db.lookup_packed("xxh128", packed)
    assert unpack(text) == {i: per_file[key] for i, key in enumerate(probe) if key in per_file}
    assert hits == len(per_file) == len(stored) - 2
    hits2, text2, fingerprint = db.lookup_listing("xxh128", packed)
    assert (hits2, unpack(text2)) == (hits, unpack(text)) and fingerprint is not None
    db.put_listing("xxh128", fingerprint, text)
    db.flush()
    again = db.lookup_listing("xxh128", packed)
    assert again[0] == hits and unpack(again[1]) == unpack(text) and again[2] is None
    assert db.lookup_listing("sha256", packed)[2] is not None  # listings are per algorithm
    changed = list(packed)
    changed[6 * 3 + 4] += 1  # one file's mtime moved: the listing no longer matches
    assert listing_fingerprint("xxh128", changed) != fingerprint
    assert db.lookup_listing("xxh128", changed)[2] is not None


def test_listings_are_stored_once_every_file_is_known_and_used_until_one_changes(tmp_path, private_cache):
    src, dst = many_dirs(tmp_path, 6)
    first = pcopy.verify(src, dst, backend="thread")  # every file read with the key it was listed with
    assert first.hashed == 2 * 26 and listings(private_cache) == 2 * 8  # 6 dirs with files, 2 sub dirs, both sides
    with sqlite3.connect(private_cache) as db:
        db.execute("DELETE FROM listings")
    second = pcopy.verify(src, dst, backend="thread")  # every file hits one by one: listings stored again
    assert (second.hashed, second.cache_hits) == (0, 52)
    assert listings(private_cache) == 2 * 8
    third = pcopy.verify(src, dst, backend="process")
    assert (third.hashed, third.cache_hits, third.identical, third.exit_code) == (0, 52, 27, 0)
    assert third.workers_started is False
    target = dst / "d03" / "f1"
    st = os.stat(target)
    target.write_bytes(b"FILE 3 1")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back: only ctime tells
    fourth = pcopy.verify(src, dst, backend="process")
    assert [tuple(d) for d in fourth.differences] == [("differ", "d03/f1", "contents differ")]
    assert (fourth.hashed, fourth.cache_hits) == (1, 51)


def test_young_files_make_no_listing(tmp_path, private_cache, monkeypatch):
    monkeypatch.setattr(cache, "RACY_NS", 3600 * 10**9)
    src, dst = many_dirs(tmp_path, 2)
    for _ in range(2):
        assert pcopy.verify(src, dst, backend="thread").exit_code == 0
    assert listings(private_cache) == 0


def test_a_file_changed_between_listing_and_hashing(tmp_path, monkeypatch, private_cache):
    src, dst = many_dirs(tmp_path, 3)
    target = dst / "d01" / "f2"
    real = worker._digest_side
    calls = []

    def change_then_read(root, reldir, names, hasher, max_size):
        if reldir == "d01" and not calls:
            calls.append(reldir)
            target.write_bytes(b"FILE 1 2")  # after both trees were listed, before anything is read
        return real(root, reldir, names, hasher, max_size)
    monkeypatch.setattr(worker, "_digest_side", change_then_read)
    report = pcopy.verify(src, dst, backend="thread")
    assert calls == ["d01"]
    assert [tuple(d) for d in report.differences] == [("differ", "d01/f2", "contents differ")]
    assert listings(private_cache) == 2 * 4 - 1  # 3 dirs and d00/sub, both sides, but DST d01: changed
    again = pcopy.verify(src, dst, backend="thread")  # what the cache kept belongs to what was read
    assert [tuple(d) for d in again.differences] == [("differ", "d01/f2", "contents differ")]
    assert again.hashed == 0
    target.write_bytes(b"file 1 2")
    assert pcopy.verify(src, dst, backend="thread").exit_code == 0


def test_no_cache_big_file_in_a_shared_batch_runs_alone(tmp_path):
    big = big_content(ALONE_BYTES + 4096)
    spec = {"d/a": b"a", "d/big": big, "d/z": b"z", "d/zz": b"zz"}
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, spec)
    shutil.copytree(src, dst)
    assert pcopy.verify(src, dst, backend="process", cache=False).identical == 4
    with open(dst / "d" / "big", "r+b") as f:
        f.seek(ALONE_BYTES + 100)
        f.write(b"!")
    (dst / "d" / "zz").write_bytes(b"ZZ")
    report = pcopy.verify(src, dst, backend="process", cache=False)
    assert [tuple(d) for d in report.differences] == [("differ", "d/big", "contents differ"),
                                                      ("differ", "d/zz", "contents differ")]
    assert report.identical == 2 and report.bytes_hashed == 2 * (len(big) + 4)


def test_a_version_1_cache_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        for algo in cache.DIGESTS:
            db.execute(f"CREATE TABLE digests_{algo} (dev INTEGER NOT NULL, ino INTEGER NOT NULL, "
                       "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, "
                       "digest TEXT NOT NULL, PRIMARY KEY (dev, ino)) WITHOUT ROWID")
        db.execute("INSERT INTO digests_xxh128 VALUES (1, 2, 3, 4, 5, ?)", ("ab" * 16,))
        db.execute("PRAGMA user_version = 1")
    warnings = []
    upgraded = HashCache(path, warnings.append)
    assert warnings == [] and upgraded.lookup("xxh128", [(1, 2, 3, 4, 5)]) == {(1, 2, 3, 4, 5): "ab" * 16}
    upgraded.close()
    assert listings(path) == 0


@pytest.mark.parametrize("young_ns", [0, 10**18], ids=["all-old", "all-young"])
def test_digest_names_answers_as_digest_open_file(tmp_path, monkeypatch, young_ns):
    from pcopy.content import digest as digests

    monkeypatch.setattr(digests, "YOUNG_NS", young_ns)  # 0: every file old, the inlined read is taken
    make_tree(tmp_path, {"small": b"small file", "big": big_content(), "empty": b"", "link": Link("small")})
    os.mkfifo(tmp_path / "fifo")
    names = ["small", "big", "empty", "link", "fifo", "gone"]
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        batch = digests.digest_names(fd, names, digests.XXH128)
        for name, item in zip(names, batch, strict=True):
            try:
                one = os.open(name, digests.READ_FLAGS, dir_fd=fd)
                try:
                    single = digests.digest_open_file(one, digests.XXH128, None, -1, False)
                finally:
                    os.close(one)
            except digests.FAILURES as exc:
                assert type(item) is type(exc), name
                continue
            assert (item.digest, item.stat.st_ino, item.confirmed) == (single.digest, single.stat.st_ino,
                                                                      single.confirmed), name
            assert item.confirmed is (young_ns == 0)
        assert [type(x).__name__ for x in batch[3:]] == ["OSError", "NotRegular", "FileNotFoundError"]
        assert batch[0].digest == xxhash.xxh3_128(b"small file").hexdigest()
        too_big = digests.digest_names(fd, ["big", "small"], digests.XXH128, None, 1000)
        assert type(too_big[0]) is digests.TooBig and too_big[1].digest == batch[0].digest
    finally:
        os.close(fd)
