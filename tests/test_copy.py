"""End-to-end copies on real temporary directories, through ``pcopy.copytree``."""

from __future__ import annotations

import errno
import multiprocessing
import os
import stat

import pytest
import xxhash
from conftest import (
    ATIME_NS,
    BAD_UTF8,
    Dir,
    Fifo,
    File,
    Link,
    big_content,
    fail_stat_of_entry,
    make_tree,
    opens_source,
    temp_files,
    tree_snapshot,
)

import pcopy
from pcopy.model import entries, results
from pcopy.runtime import process

BACKENDS = ("process", "thread")


@pytest.mark.parametrize("backend", BACKENDS)
def test_copy_reproduces_the_tree(tmp_path, sample_src, backend):
    dst = tmp_path / "dst"
    before = tree_snapshot(sample_src, atime=True)

    report = pcopy.copytree(sample_src, dst, backend=backend, jobs=2)

    assert report.failed == 0, report.failures
    paths = [r.relpath for r in report.results if r.status != "created"]
    assert len(paths) == len(set(paths)), "a path was reported twice"
    assert tree_snapshot(dst, atime=True) == before
    assert tree_snapshot(sample_src, atime=True) == before  # the source is untouched
    assert temp_files(dst) == []
    regular = [rel for rel, item in before.items() if item[0] == "file"]
    links = [rel for rel, item in before.items() if item[0] == "symlink"]
    assert (report.copied, report.symlinks) == (len(regular), len(links))
    assert report.skipped == 0
    # symlinks count their target's length, as rsync does
    assert report.bytes_copied == sum(os.lstat(sample_src / rel).st_size for rel in regular + links)


def test_copied_metadata_in_detail(tmp_path, sample_src):
    """The same facts as the snapshot comparison, spelled out one by one."""
    dst = tmp_path / "dst"
    pcopy.copytree(sample_src, dst, backend="thread", jobs=2)

    exe = os.stat(dst / "exec.sh")
    assert stat.S_IMODE(exe.st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dst / "private").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(dst / "ro-dir").st_mode) == 0o555
    assert (dst / "ro-dir" / "inside").read_bytes() == b"in a read-only directory"
    for rel in ("exec.sh", "big.bin", "sub/deeper", "sub", "."):
        s, d = os.lstat(sample_src / rel), os.lstat(dst / rel)
        assert (d.st_mtime_ns, d.st_atime_ns) == (s.st_mtime_ns, s.st_atime_ns), rel
    assert os.lstat(dst / "big.bin").st_atime_ns == ATIME_NS

    dangling = dst / "sub" / "dangling"
    assert dangling.is_symlink() and not dangling.exists()
    assert os.readlink(dangling) == "does/not/exist"
    assert os.lstat(dangling).st_mtime_ns == os.lstat(sample_src / "sub" / "dangling").st_mtime_ns
    assert os.readlink(dst / "link-to-dir") == "sub"
    assert (dst / "link-to-dir").is_symlink()  # not followed: copied as a link

    assert (dst / "empty-dir").is_dir() and os.listdir(dst / "empty-dir") == []
    assert (dst / "empty.txt").read_bytes() == b""
    assert (dst / "big.bin").read_bytes() == big_content()
    assert (dst / "new\nline").read_bytes() == b"newline in the name"
    assert (dst / BAD_UTF8).read_bytes() == b"invalid utf-8 name"
    assert os.fsencode(BAD_UTF8) in os.listdir(os.fsencode(dst))


@pytest.mark.parametrize("backend", BACKENDS)
def test_digests_are_xxh128_of_content(tmp_path, sample_src, backend):
    report = pcopy.copytree(sample_src, tmp_path / "dst", backend=backend, jobs=2)
    files = {r.relpath: r for r in report.results if r.kind == entries.FILE}
    assert files, "no file results"
    for rel, result in files.items():
        assert result.status == results.COPIED
        assert result.digest == xxhash.xxh3_128((sample_src / rel).read_bytes()).hexdigest(), rel
        assert result.size == os.path.getsize(sample_src / rel)
    links = [r for r in report.results if r.kind == entries.SYMLINK]
    assert links and all(r.digest is None for r in links)


def test_copy_into_existing_empty_dst(tmp_path, sample_src):
    dst = tmp_path / "dst"
    dst.mkdir(mode=0o700)
    report = pcopy.copytree(sample_src, dst, backend="thread")
    assert report.failed == 0
    assert tree_snapshot(dst) == tree_snapshot(sample_src)


def test_dst_parents_are_created(tmp_path, sample_src):
    dst = tmp_path / "a" / "b" / "dst"
    report = pcopy.copytree(sample_src, dst, backend="thread")
    assert report.failed == 0
    assert tree_snapshot(dst) == tree_snapshot(sample_src)


def test_directory_metadata_is_set_after_contents(tmp_path, monkeypatch):
    """A read-only directory gets its mode only after its files are in (else writes fail)."""
    src = tmp_path / "src"
    make_tree(src, {
        "locked": Dir(mode=0o500),
        "locked/a": File(b"a", mode=0o664),  # group-writable: the umask (022) forces an fchmod
        "locked/inner": Dir(mode=0o500),
        "locked/inner/b": File(b"b", mode=0o666),
    })
    # root can write into 0o500 directories anyway, so watch the order of chmod calls instead
    order = []
    real_fchmod = os.fchmod

    def spy(fd, mode):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.dirname(path) != str(dst) or os.path.isdir(path):  # not the probe file in DST's root
            order.append((path, mode))
        return real_fchmod(fd, mode)

    dst = tmp_path / "dst"
    monkeypatch.setattr(os, "fchmod", spy)
    report = pcopy.copytree(src, dst, backend="thread", jobs=1)
    monkeypatch.undo()
    assert report.failed == 0
    assert tree_snapshot(dst) == tree_snapshot(src)
    first_dir_chmod = next(i for i, (path, _) in enumerate(order) if os.path.isdir(path))
    file_chmods = [i for i, (path, _) in enumerate(order) if not os.path.isdir(path)]
    assert len(file_chmods) == 2 and max(file_chmods) < first_dir_chmod
    dir_paths = [path for path, _ in order if os.path.isdir(path)]
    assert dir_paths == [str(dst / "locked" / "inner"), str(dst / "locked"), str(dst)]  # deepest first


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_run_skips_everything(tmp_path, sample_src, backend):
    dst = tmp_path / "dst"
    first = pcopy.copytree(sample_src, dst, backend=backend, jobs=2)
    snap = tree_snapshot(dst, atime=True)
    inodes = {rel: os.lstat(dst / rel).st_ino for rel in snap if rel != "."}

    second = pcopy.copytree(sample_src, dst, backend=backend, jobs=2)

    assert second.copied == 0 and second.failed == 0
    assert second.skipped == first.copied + first.symlinks
    assert all(r.status == results.SKIPPED and r.reason == results.UNCHANGED for r in second.results)
    assert tree_snapshot(dst, atime=True) == snap
    assert {rel: os.lstat(dst / rel).st_ino for rel in inodes} == inodes  # nothing rewritten


def test_force_rewrites(tmp_path, sample_src):
    dst = tmp_path / "dst"
    first = pcopy.copytree(sample_src, dst, backend="thread")
    ino = os.stat(dst / "hello.txt").st_ino
    forced = pcopy.copytree(sample_src, dst, backend="thread", force=True)
    assert forced.copied == first.copied and forced.skipped == 0
    assert os.stat(dst / "hello.txt").st_ino != ino  # a new file was renamed into place
    assert tree_snapshot(dst) == tree_snapshot(sample_src)


def test_changed_files_are_recopied(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"same": b"same", "size": b"short", "mtime": b"AAAA", "link": Link("x")})
    pcopy.copytree(src, dst, backend="thread")

    (src / "size").write_bytes(b"much longer now")
    st = os.stat(src / "mtime")
    (src / "mtime").write_bytes(b"BBBB")  # same size, new mtime
    os.utime(src / "mtime", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    os.unlink(src / "link")
    os.symlink("y", src / "link")
    os.utime(src / "link", ns=(1, 2), follow_symlinks=False)

    report = pcopy.copytree(src, dst, backend="thread", keep_results=True)
    status = {r.relpath: r.status for r in report.results}
    assert status == {"same": "skipped", "size": "copied", "mtime": "copied", "link": "copied"}
    assert (dst / "size").read_bytes() == b"much longer now"
    assert (dst / "mtime").read_bytes() == b"BBBB"
    assert os.readlink(dst / "link") == "y"
    assert tree_snapshot(dst) == tree_snapshot(src)


def test_file_with_same_size_and_mtime_is_trusted(tmp_path):
    """The quick check is size + mtime (like rsync); --force is the way out."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"f": File(b"AAAA", mtime_ns=5_000_000_000_000_000_123)})
    make_tree(dst, {"f": File(b"BBBB", mtime_ns=5_000_000_000_000_000_123)})
    assert pcopy.copytree(src, dst, backend="thread").skipped == 1
    assert (dst / "f").read_bytes() == b"BBBB"
    assert pcopy.copytree(src, dst, backend="thread", force=True).copied == 1
    assert (dst / "f").read_bytes() == b"AAAA"


def test_fifo_is_skipped_and_never_opened(tmp_path, io_fault):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"pipe": Fifo(), "plain": b"plain"})
    # opening a FIFO for reading would block forever: make any attempt fail loudly instead
    io_fault("open", lambda path, *a, **k: os.path.basename(os.fsdecode(path)) == "pipe",
             lambda: AssertionError("the FIFO was opened"))

    report = pcopy.copytree(src, dst, backend="thread")

    assert io_fault.hits == []
    assert report.failed == 0 and report.copied == 1 and report.skipped == 1
    (fifo,) = [r for r in report.results if r.relpath == "pipe"]
    assert fifo.status == results.SKIPPED and fifo.kind == entries.SPECIAL and "FIFO" in fifo.message
    assert not os.path.lexists(dst / "pipe")
    assert (dst / "plain").read_bytes() == b"plain"


@pytest.mark.parametrize("backend", BACKENDS)
def test_hash_none_copies_correctly(tmp_path, sample_src, backend):
    dst = tmp_path / "dst"
    report = pcopy.copytree(sample_src, dst, backend=backend, hash="none")
    assert report.failed == 0
    assert all(r.digest is None for r in report.results)
    assert tree_snapshot(dst, atime=True) == tree_snapshot(sample_src, atime=True)
    assert temp_files(dst) == []


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_process_backend_start_methods(tmp_path, monkeypatch, method):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a", "d/b": big_content(1 << 16), "d/e/c": b"c", "l": Link("a")})
    monkeypatch.setenv("PCOPY_START_METHOD", method)
    asked = []
    real_get_context = multiprocessing.get_context

    def spy(name=None):
        asked.append(name)
        return real_get_context(name)

    monkeypatch.setattr(process.multiprocessing, "get_context", spy)
    parent = os.getpid()
    seen_pids = set()
    report = pcopy.copytree(src, dst, backend="process", jobs=2,
                            on_result=lambda r: seen_pids.add(os.getpid()))
    assert asked == [method]
    assert report.failed == 0 and (report.copied, report.symlinks) == (3, 1)
    assert tree_snapshot(dst) == tree_snapshot(src)
    assert seen_pids == {parent}  # results are consumed in the parent


def test_unknown_start_method_is_rejected(tmp_path, monkeypatch):
    make_tree(tmp_path / "src", {"a": b"a"})
    monkeypatch.setenv("PCOPY_START_METHOD", "teleport")
    with pytest.raises(ValueError):
        pcopy.copytree(tmp_path / "src", tmp_path / "dst", backend="process")


@pytest.mark.parametrize("backend", BACKENDS)
def test_big_file_among_small_ones_is_copied_once(tmp_path, backend):
    """A file above the batch byte limit, found in a batch of small files, still gets copied exactly once."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    huge = big_content((17 << 20) + 5, seed=3)
    make_tree(src, {"a": b"a", "huge": huge, "z": b"z", "sub/huge2": huge[:-1], "sub/b": b"b"})
    report = pcopy.copytree(src, dst, backend=backend, jobs=2)
    copied = sorted(r.relpath for r in report.results if r.status == results.COPIED)
    assert copied == ["a", "huge", "sub/b", "sub/huge2", "z"]
    assert report.copied == 5 and report.bytes_copied == 2 * len(huge) - 1 + 3
    assert (dst / "huge").read_bytes() == huge
    assert tree_snapshot(dst) == tree_snapshot(src)


def test_many_files_span_several_batches(tmp_path):
    """More files than a batch holds, in several directories: each copied once."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    spec = {f"d{d}/f{i:03d}": f"{d}-{i}".encode() for d in range(3) for i in range(300)}
    make_tree(src, spec)
    report = pcopy.copytree(src, dst, backend="process", jobs=2)
    assert report.copied == len(spec) and report.failed == 0
    assert sorted(r.relpath for r in report.results if r.status == results.COPIED) == sorted(spec)
    assert tree_snapshot(dst) == tree_snapshot(src)


def test_usage_errors_from_the_api(tmp_path):
    make_tree(tmp_path / "src", {"a": b"a"})
    dst = tmp_path / "dst"
    for kwargs in ({"backend": "bogus"}, {"hash": "md5"}, {"jobs": 0},
                   {"hash": "none", "manifest": tmp_path / "m"}):
        with pytest.raises(pcopy.UsageError) as info:
            pcopy.copytree(tmp_path / "src", dst, **kwargs)
        assert info.value.exit_code == 2
    assert not dst.exists()


def test_source_file_unreadable_is_a_result(tmp_path, io_fault):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a", "secret": b"s", "z/b": b"b"})
    io_fault("open", opens_source("secret"), lambda: PermissionError(13, "Permission denied"))

    report = pcopy.copytree(src, dst, backend="thread", jobs=2)

    assert report.failed == 1 and report.copied == 2
    (failure,) = report.failures
    assert failure.relpath == "secret" and failure.status == results.FAILED
    assert failure.message == "source: Permission denied"
    assert not os.path.lexists(dst / "secret")
    assert (dst / "a").read_bytes() == b"a" and (dst / "z" / "b").read_bytes() == b"b"
    assert temp_files(dst) == []
    # the next run, with the fault gone, completes the work
    io_fault.monkeypatch.undo()
    again = pcopy.copytree(src, dst, backend="thread")
    assert again.copied == 1 and again.skipped == 2 and again.failed == 0
    assert tree_snapshot(dst) == tree_snapshot(src)



def test_entry_whose_stat_fails_is_reported(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a", "victim": b"v", "z": b"z"})
    make_tree(dst, {"other": b"o"})  # DST exists: its entries and SRC's are stat'ed
    fail_stat_of_entry(monkeypatch, "victim", lambda: OSError(errno.EIO, "Input/output error"))
    report = pcopy.copytree(src, dst, backend="thread")
    assert (dst / "a").exists() and (dst / "z").exists()
    assert [r.relpath for r in report.failures] == ["victim"]
    assert "Input/output error" in report.failures[0].message
    assert not (dst / "victim").exists()


def test_unreadable_source_directory_is_a_result(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a", "locked/secret": b"s", "open/b": b"b"})
    real = os.scandir
    locked = str(src / "locked")

    def scandir(path="."):
        where = os.readlink(f"/proc/self/fd/{path}") if isinstance(path, int) else os.fspath(path)
        if where == locked:
            raise PermissionError(errno.EACCES, "Permission denied", where)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = pcopy.copytree(src, dst, backend="thread")
    assert [(r.relpath, r.message) for r in report.failures] == [
        ("locked", "cannot read directory: Permission denied")]
    assert (dst / "a").read_bytes() == b"a" and (dst / "open" / "b").read_bytes() == b"b"
    assert not (dst / "locked" / "secret").exists()


def test_follow_symlinks_copies_what_links_point_to(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"real/f": b"f", "alias": Link("real"), "lf": Link("real/f"),
                    "dangling": Link("nowhere"), "selfloop": Link("selfloop"), "d/up": Link("..")})
    report = pcopy.copytree(src, dst, backend="thread", follow_symlinks=True)
    assert (dst / "alias").is_dir() and not (dst / "alias").is_symlink()
    assert (dst / "alias" / "f").read_bytes() == b"f" and (dst / "real" / "f").read_bytes() == b"f"
    assert not (dst / "lf").is_symlink() and (dst / "lf").read_bytes() == b"f"
    assert os.readlink(dst / "dangling") == "nowhere"  # nothing to follow: kept as a link
    assert os.readlink(dst / "selfloop") == "selfloop"
    # the only failure is the real loop (d/up leads back to an ancestor)
    assert [r.relpath for r in report.failures] == [os.path.join("d", "up")]
    assert "symbolic link" in report.failures[0].message
