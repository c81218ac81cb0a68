"""Transforms during copy: built-ins, user functions, plugins, failures, incremental runs, memory."""

from __future__ import annotations

import errno
import gzip
import lzma
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest
import xxhash
from conftest import Fifo, File, Link, big_content, fd_name, make_tree, temp_files, walk_paths

import pcopy
from pcopy.content import transforms
from pcopy.fs import temps
from pcopy.model import entries, results
from pcopy.model.entries import Entry
from pcopy.options import Options
from pcopy.transfer import plan

TESTS = os.path.dirname(os.path.abspath(__file__))
GZIP = shutil.which("gzip")
XZ = shutil.which("xz")
XXHSUM = shutil.which("xxhsum")

SPEC = {
    "a.txt": b"alpha\n" * 1000,
    "empty": b"",
    "big.bin": big_content(),
    "exec.sh": File(b"#!/bin/sh\necho hi\n", mode=0o755),
    "readonly": File(b"read only", mode=0o444),
    "with space.txt": b"spaces",
    "sub/deeper/f": File(b"deep", mode=0o600),
    "sub/link": Link("../a.txt"),
    "fifo": Fifo(),
}
REGULAR = ["a.txt", "empty", "big.bin", "exec.sh", "readonly", "with space.txt", "sub/deeper/f"]


def env_with_tests_path(extra=()) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TESTS, *extra, env.get("PYTHONPATH", "")])
    return env


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pcopy", *map(str, args)], capture_output=True,
                          env=env or env_with_tests_path(), timeout=120)


def files_in(root) -> list:
    return sorted(rel for rel in walk_paths(root) if os.path.isfile(os.path.join(root, rel))
                  and not os.path.islink(os.path.join(root, rel)))


# --------------------------------------------------------------------------- built-ins


@pytest.mark.skipif(GZIP is None, reason="needs the gzip binary")
@pytest.mark.parametrize("backend", ["process", "thread"])
def test_gzip_output_is_read_by_stock_gzip(tmp_path, backend):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, SPEC)

    report = pcopy.copytree(src, dst, backend=backend, jobs=2, transform="gzip")

    assert report.failed == 0, report.failures
    assert files_in(dst) == sorted(rel + ".gz" for rel in REGULAR)
    for rel in REGULAR:
        out = dst / (rel + ".gz")
        proc = subprocess.run([GZIP, "-d", "-c", str(out)], capture_output=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == (src / rel).read_bytes(), rel
        st_src, st_out = os.stat(src / rel), os.stat(out)
        assert stat.S_IMODE(st_out.st_mode) == stat.S_IMODE(st_src.st_mode)
        assert st_out.st_mtime_ns == st_src.st_mtime_ns
    # symlinks are copied as they are; special files are skipped, never transformed
    assert os.readlink(dst / "sub" / "link") == "../a.txt"
    assert not os.path.lexists(dst / "fifo") and not os.path.lexists(dst / "fifo.gz")
    assert temp_files(dst) == []
    assert {r.relpath for r in report.results if r.status == results.COPIED} == {
        *(rel + ".gz" for rel in REGULAR), "sub/link"}


def test_gzip_round_trip_through_gunzip(tmp_path):
    src, packed, back = tmp_path / "src", tmp_path / "packed", tmp_path / "back"
    make_tree(src, {**SPEC, "already.gz": gzip.compress(b"inner"), "plain": b"not compressed"})
    names = REGULAR + ["already.gz", "plain"]

    assert pcopy.copytree(src, packed, backend="thread", transform="gzip").failed == 0
    report = pcopy.copytree(packed, back, backend="process", jobs=2, transform="gunzip")

    assert report.failed == 0, report.failures
    assert files_in(back) == sorted(names)
    for rel in names:
        assert (back / rel).read_bytes() == (src / rel).read_bytes(), rel
        assert os.stat(back / rel).st_mtime_ns == os.stat(src / rel).st_mtime_ns


def test_gunzip_copies_other_files_unchanged_and_fails_corrupt_ones(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"good.gz": gzip.compress(b"good"), "notes": b"plain", "corrupt.gz": b"this is not gzip"})

    report = pcopy.copytree(src, dst, backend="thread", transform="gunzip")

    assert (dst / "good").read_bytes() == b"good"
    assert (dst / "notes").read_bytes() == b"plain"
    assert report.failed == 1
    failure = report.failures[0]
    assert failure.relpath == "corrupt.gz"
    assert failure.message.startswith("transform gunzip: BadGzipFile:")
    assert not os.path.lexists(dst / "corrupt") and temp_files(dst) == []


def test_gunzip_output_colliding_with_a_source_file_fails_that_file(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"plain a", "a.gz": gzip.compress(b"packed a")})

    report = pcopy.copytree(src, dst, backend="thread", transform="gunzip")

    assert [(r.relpath, r.message) for r in report.failures] == [
        ("a.gz", "transform: output name 'a' is also the output of another entry")]
    assert (dst / "a").read_bytes() == b"plain a"


def test_gzip_level(tmp_path):
    data = b"compressible " * 50_000
    make_tree(tmp_path / "src", {"f": data})
    pcopy.copytree(tmp_path / "src", tmp_path / "stored", backend="thread", transform="gzip", level=0)
    pcopy.copytree(tmp_path / "src", tmp_path / "best", backend="thread", transform="gzip", level=9)
    stored, best = (tmp_path / "stored" / "f.gz").read_bytes(), (tmp_path / "best" / "f.gz").read_bytes()
    assert len(stored) > len(data) > 20 * len(best)
    assert gzip.decompress(stored) == gzip.decompress(best) == data


@pytest.mark.parametrize("level", [-1, 10])
def test_bad_level_is_a_usage_error(tmp_path, level):
    make_tree(tmp_path / "src", {"f": b"x"})
    with pytest.raises(pcopy.UsageError, match="level must be 0..9"):
        pcopy.copytree(tmp_path / "src", tmp_path / "dst", transform="gzip", level=level)
    assert not (tmp_path / "dst").exists()


def test_xz_round_trip(tmp_path):
    src, packed, back = tmp_path / "src", tmp_path / "packed", tmp_path / "back"
    make_tree(src, {"a.txt": b"x" * 100_000, "big.bin": big_content()})
    assert pcopy.copytree(src, packed, backend="process", jobs=2, transform="xz", level=1).failed == 0
    assert lzma.decompress((packed / "a.txt.xz").read_bytes()) == b"x" * 100_000
    if XZ is not None:
        proc = subprocess.run([XZ, "-d", "-c", str(packed / "big.bin.xz")], capture_output=True)
        assert proc.returncode == 0 and proc.stdout == big_content()
    assert pcopy.copytree(packed, back, backend="thread", transform="unxz").failed == 0
    assert (back / "big.bin").read_bytes() == big_content()


def test_zstd_round_trip(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    src, packed, back = tmp_path / "src", tmp_path / "packed", tmp_path / "back"
    make_tree(src, {"a.txt": b"z" * 100_000, "big.bin": big_content()})
    assert pcopy.copytree(src, packed, backend="thread", transform="zstd", level=19).failed == 0
    assert zstandard.ZstdDecompressor().decompressobj().decompress((packed / "a.txt.zst").read_bytes()) \
        == b"z" * 100_000
    assert pcopy.copytree(packed, back, backend="process", jobs=2, transform="unzstd").failed == 0
    assert (back / "big.bin").read_bytes() == big_content()


def test_zstd_without_the_package_is_a_clear_usage_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)  # makes "import zstandard" raise ImportError
    transforms._resolve_named.cache_clear()
    make_tree(tmp_path / "src", {"f": b"x"})
    try:
        with pytest.raises(pcopy.UsageError, match=r"pip install 'pcopy\[zstd\]'"):
            pcopy.copytree(tmp_path / "src", tmp_path / "dst", transform="zstd")
    finally:
        transforms._resolve_named.cache_clear()


# --------------------------------------------------------------------------- incremental runs


def test_second_run_skips_up_to_date_outputs(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a" * 100, "b": b"b" * 100, "sub/c": b"c" * 100})
    pcopy.copytree(src, dst, backend="thread", transform="gzip")
    assert os.getxattr(dst / "a.gz", transforms.SRC_SIZE_XATTR) == b"100"

    again = pcopy.copytree(src, dst, backend="thread", transform="gzip")
    assert (again.copied, again.skipped, again.failed) == (0, 3, 0)

    # a new mtime, and a new size under the *same* mtime, both make the output stale
    mtime_b = os.stat(src / "b").st_mtime_ns
    os.utime(src / "a", ns=(os.stat(src / "a").st_atime_ns, mtime_b + 5))
    (src / "b").write_bytes(b"B" * 101)
    os.utime(src / "b", ns=(mtime_b, mtime_b))
    third = pcopy.copytree(src, dst, backend="process", jobs=2, transform="gzip")
    assert sorted(r.relpath for r in third.results if r.status == results.COPIED) == ["a.gz", "b.gz"]
    assert [r.relpath for r in third.results if r.status == results.SKIPPED] == ["sub/c.gz"]
    assert gzip.decompress((dst / "b.gz").read_bytes()) == b"B" * 101

    forced = pcopy.copytree(src, dst, backend="thread", transform="gzip", force=True)
    assert forced.copied == 3


def test_output_without_the_size_record_is_rewritten(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a" * 100})
    pcopy.copytree(src, dst, backend="thread", transform="gzip")
    os.removexattr(dst / "a.gz", transforms.SRC_SIZE_XATTR)
    report = pcopy.copytree(src, dst, backend="thread", transform="gzip")
    assert report.copied == 1
    assert os.getxattr(dst / "a.gz", transforms.SRC_SIZE_XATTR) == b"100"


def test_without_xattr_support_mtime_alone_decides(tmp_path, monkeypatch):
    def unsupported(*args, **kwargs):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "setxattr", unsupported)
    monkeypatch.setattr(os, "getxattr", unsupported)
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a" * 100})
    assert pcopy.copytree(src, dst, backend="thread", transform="gzip").copied == 1
    assert pcopy.copytree(src, dst, backend="thread", transform="gzip").skipped == 1
    os.utime(src / "a", ns=(0, 5))
    assert pcopy.copytree(src, dst, backend="thread", transform="gzip").copied == 1


def test_plain_file_under_the_output_name_is_not_trusted(tmp_path):
    """A file already named like the output, with another origin, is not mistaken for it."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a" * 100})
    make_tree(dst, {"a.gz": File(b"unrelated", mtime_ns=os.stat(src / "a").st_mtime_ns)})
    report = pcopy.copytree(src, dst, backend="thread", transform="gzip")
    assert report.copied == 1
    assert gzip.decompress((dst / "a.gz").read_bytes()) == b"a" * 100


def test_manifest_hashes_the_bytes_written(tmp_path):
    src, dst, manifest = tmp_path / "src", tmp_path / "dst", tmp_path / "MANIFEST"
    make_tree(src, SPEC)
    pcopy.copytree(src, dst, backend="process", jobs=2, transform="gzip", manifest=manifest)
    expected = sorted(xxhash.xxh3_128((dst / rel).read_bytes()).hexdigest() + "  " + rel
                      for rel in files_in(dst))
    assert sorted(manifest.read_text().splitlines()) == expected
    # a rerun skips everything and still lists the outputs, hashed from DST
    rerun = pcopy.copytree(src, dst, backend="thread", transform="gzip", manifest=manifest)
    assert rerun.copied == 0
    assert sorted(manifest.read_text().splitlines()) == expected
    if XXHSUM is not None:
        proc = subprocess.run([XXHSUM, "--strict", "-c", str(manifest)], cwd=dst, capture_output=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- user transforms


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_user_transform_on_a_real_tree(tmp_path, backend):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.txt": b"hello", "sub/b.txt": b"world", "sub/c.bin": b"bytes", "big": big_content()})

    report = pcopy.copytree(src, dst, backend=backend, jobs=2, transform="transform_helpers:upper")

    assert report.failed == 0, report.failures
    assert files_in(dst) == ["a.TXT", "big", "sub/b.TXT", "sub/c.bin"]
    assert (dst / "a.TXT").read_bytes() == b"HELLO"
    assert (dst / "sub" / "b.TXT").read_bytes() == b"WORLD"
    assert (dst / "sub" / "c.bin").read_bytes() == b"BYTES"
    assert (dst / "big").read_bytes() == big_content().upper()
    assert sorted(r.relpath for r in report.results if r.kind != "dir") == ["a.TXT", "big", "sub/b.TXT", "sub/c.bin"]


def test_user_transform_function_object_and_predicted_names(tmp_path):
    import transform_helpers

    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.txt": b"hello", "b.bin": b"bytes"})
    first = pcopy.copytree(src, dst, backend="process", jobs=2, transform=transform_helpers.upper_predicted)
    assert first.copied == 2 and (dst / "a.TXT").read_bytes() == b"HELLO"
    # the function announces its output names, so the rerun finds the outputs and skips them
    again = pcopy.copytree(src, dst, backend="process", jobs=2, transform=transform_helpers.upper_predicted)
    assert (again.copied, again.skipped) == (0, 2)


def test_process_backend_refuses_an_unpicklable_transform(tmp_path):
    make_tree(tmp_path / "src", {"f": b"x"})
    with pytest.raises(pcopy.UsageError, match="pickle"):
        pcopy.copytree(tmp_path / "src", tmp_path / "dst", transform=lambda s, d, r: None)
    report = pcopy.copytree(tmp_path / "src", tmp_path / "dst", backend="thread",
                            transform=lambda s, d, r: d.write(s.read()[::-1]) and None)
    assert report.copied == 1


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_failing_transform_fails_that_file_only(tmp_path, backend):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"good": b"good content", "bad": b"bad content", "sub/bad2": b"more bad", "sub/ok": b"ok"})

    report = pcopy.copytree(src, dst, backend=backend, jobs=2, transform="transform_helpers:fail_on_bad")

    assert report.copied == 2 and report.failed == 2
    assert sorted((r.relpath, r.message) for r in report.failures) == [
        ("bad", "transform transform_helpers:fail_on_bad: ValueError: cannot handle bad"),
        ("sub/bad2", "transform transform_helpers:fail_on_bad: ValueError: cannot handle bad2"),
    ]
    assert (dst / "good").read_bytes() == b"good content"
    assert (dst / "sub" / "ok").read_bytes() == b"ok"
    assert not os.path.lexists(dst / "bad") and not os.path.lexists(dst / "sub" / "bad2")
    assert temp_files(dst) == []


def test_cli_failing_transform_exit_3_with_one_line_error(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"good": b"good content", "bad": b"bad content"})
    proc = run_cli("copy", src, dst, "--transform", "transform_helpers:fail_on_bad", "--no-progress")
    assert proc.returncode == 3
    errors = [line for line in proc.stderr.decode().splitlines() if "error" in line]
    assert errors == ["pcopy: error: bad: transform transform_helpers:fail_on_bad: ValueError: cannot handle bad"]
    assert b"Traceback" not in proc.stderr
    assert (dst / "good").read_bytes() == b"good content"


def test_cli_transform_usage_errors(tmp_path):
    make_tree(tmp_path / "src", {"f": b"x"})
    proc = run_cli("copy", tmp_path / "src", tmp_path / "dst", "--transform", "nope")
    assert proc.returncode == 2 and b"unknown transform 'nope'" in proc.stderr
    proc = run_cli("copy", tmp_path / "src", tmp_path / "dst", "--transform", "no_such_module:fn")
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        "pcopy: error: cannot import transform 'no_such_module:fn': ModuleNotFoundError: "
        "No module named 'no_such_module'"]
    proc = run_cli("copy", tmp_path / "src", tmp_path / "dst", "--level", "3")
    assert proc.returncode == 2 and b"--level needs --transform" in proc.stderr
    assert not (tmp_path / "dst").exists()


def test_cli_gzip_level_and_user_transform(tmp_path):
    src = tmp_path / "src"
    make_tree(src, {"a.txt": b"hello " * 1000})
    proc = run_cli("copy", src, tmp_path / "gz", "--transform", "gzip", "--level", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    assert gzip.decompress((tmp_path / "gz" / "a.txt.gz").read_bytes()) == b"hello " * 1000
    proc = run_cli("copy", src, tmp_path / "up", "--transform", "transform_helpers:upper", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "up" / "a.TXT").read_bytes() == b"HELLO " * 1000


def test_returned_name_outside_the_directory_fails_the_file(tmp_path):
    make_tree(tmp_path / "src", {"f": b"x"})
    report = pcopy.copytree(tmp_path / "src", tmp_path / "dst", backend="thread",
                            transform="transform_helpers:escape_dir")
    assert report.failed == 1
    assert "must stay in the file's directory" in report.failures[0].message
    assert not (tmp_path / "outside").exists() and temp_files(tmp_path / "dst") == []


def test_disk_full_under_a_transform_is_a_destination_error(tmp_path, monkeypatch):
    """Even a transform that swallows its stream's error cannot turn a short write into success."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"f": big_content(), "g": b"small"})
    real_write = os.write

    def full(fd, data):
        if len(data) > 100 and fd_name(fd).startswith(temps.TMP_PREFIX):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    report = pcopy.copytree(src, dst, backend="thread", transform="transform_helpers:swallow_errors")
    assert [(r.relpath, r.message) for r in report.failures] == [
        ("f", "destination: no space left on device (disk full)")]
    assert (dst / "g").read_bytes() == b"small"
    assert temp_files(dst) == []


# --------------------------------------------------------------------------- plugins


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A directory holding an installed-looking distribution that registers two transforms."""
    site = tmp_path / "site"
    info = site / "pcopy_test_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pcopy-test-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [pcopy.transforms]
        reverse = transform_helpers:Reverse
        rot13 = transform_helpers:rot13
        """))
    monkeypatch.syspath_prepend(str(site))
    transforms._resolve_named.cache_clear()
    yield site
    transforms._resolve_named.cache_clear()


def test_entry_point_transforms(tmp_path, plugin_path):
    assert {"reverse", "rot13"} <= set(transforms.available())
    src = tmp_path / "src"
    make_tree(src, {"f": b"abc", "sub/g": b"hello"})

    report = pcopy.copytree(src, tmp_path / "rev", backend="process", jobs=2, transform="reverse")
    assert report.failed == 0, report.failures
    assert (tmp_path / "rev" / "f.rev").read_bytes() == b"cba"
    assert (tmp_path / "rev" / "sub" / "g.rev").read_bytes() == b"olleh"

    assert pcopy.copytree(src, tmp_path / "rot", backend="thread", transform="rot13").failed == 0
    assert (tmp_path / "rot" / "sub" / "g").read_bytes() == b"uryyb"
    with pytest.raises(pcopy.UsageError, match="takes no level"):
        pcopy.copytree(src, tmp_path / "x", transform="rot13", level=3)


def test_entry_point_transform_from_the_cli(tmp_path, plugin_path):
    src = tmp_path / "src"
    make_tree(src, {"f": b"abc"})
    proc = run_cli("copy", src, tmp_path / "dst", "--transform", "reverse", "-q",
                   env=env_with_tests_path([str(plugin_path)]))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dst" / "f.rev").read_bytes() == b"cba"


# --------------------------------------------------------------------------- planner


def test_planner_compares_against_the_output_name():
    options = Options(src="s", dst="d", transform="gzip")
    src = [Entry("a", entries.FILE, 10, 5, 5, 0o100644), Entry("d", entries.DIR, 0, 0, 0, 0o40755),
           Entry("x", entries.FILE, 10, 5, 5, 0o100644)]
    # DST holds a plain "a" identical to the source (from an earlier copy without a transform)
    # and a directory where "x.gz" would go
    dst = {"a": Entry("a", entries.FILE, 10, 5, 5, 0o100644), "x.gz": Entry("x.gz", entries.DIR, 0, 0, 0, 0o40755)}
    result = plan.plan_directory("", src, dst, options)
    assert [t.name for t in result.tasks] == ["a"]  # not skipped: "a.gz" is what counts
    assert [(r.relpath, r.status) for r in result.results] == [("x", results.FAILED)]
    assert [e.name for e, _why in result.subdirs] == ["d"]


# --------------------------------------------------------------------------- memory

LARGE_SCRIPT = r"""
import os, sys, time
import pcopy

def peak_rss_kib():
    # VmHWM, not ru_maxrss: ru_maxrss survives execve, so it would report the parent pytest's peak
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1])

src, packed, back, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
os.makedirs(src)
with open(os.path.join(src, "large"), "wb") as f:   # sparse: costs no disk, still read byte by byte
    f.truncate(size)
    f.seek(size // 2)
    f.write(b"a marker in the middle")
base = peak_rss_kib()
t0 = time.monotonic()
r1 = pcopy.copytree(src, packed, backend="thread", jobs=1, transform="gzip", level=1)
t1 = time.monotonic()
r2 = pcopy.copytree(packed, back, backend="thread", jobs=1, transform="gunzip", hash="none")
t2 = time.monotonic()
peak = peak_rss_kib()
print(base, peak, r1.failed, r2.failed, os.path.getsize(os.path.join(packed, "large.gz")),
      os.path.getsize(os.path.join(back, "large")), round(t1 - t0, 2), round(t2 - t1, 2))
"""


def test_large_file_streams_in_bounded_memory(tmp_path):
    """gzip then gunzip one large file in this process: peak RSS must not grow with its size.

    512 MiB by default (PCOPY_LARGE_MIB=2048 for the full 2 GiB case); the
    bound (64 MiB over the start) is far below the file's size.
    """
    size = int(os.environ.get("PCOPY_LARGE_MIB", "512")) << 20
    proc = subprocess.run([sys.executable, "-c", LARGE_SCRIPT, str(tmp_path / "src"), str(tmp_path / "packed"),
                           str(tmp_path / "back"), str(size)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    base_kib, peak_kib, failed1, failed2, packed_size, back_size, t_gzip, t_gunzip = proc.stdout.split()
    print(f"large file {size >> 20} MiB: peak RSS {int(peak_kib) >> 10} MiB (start {int(base_kib) >> 10} MiB), "
          f"gzip {t_gzip} s, gunzip {t_gunzip} s")
    assert failed1 == failed2 == "0"
    assert int(back_size) == size and 0 < int(packed_size) < size // 100
    assert int(peak_kib) - int(base_kib) < 64 * 1024, "memory grew with the file size"
    with open(tmp_path / "back" / "large", "rb") as f:
        f.seek(size // 2)
        assert f.read(22) == b"a marker in the middle"
