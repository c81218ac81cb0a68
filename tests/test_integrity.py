"""pcopy hash / pcopy verify: sorted manifests, round trips with xxhsum, detected differences."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import threading

import pytest
import xxhash
from conftest import BAD_UTF8, PYTHON, File, Link, big_content, make_tree, opens_source, oserror

import pcopy
from pcopy import cli
from pcopy.content import cache, manifest
from pcopy.runtime.pool import BoundedPool
from pcopy.runtime.thread import ThreadBackend

XXHSUM = shutil.which("xxhsum")
SHA256SUM = shutil.which("sha256sum")
needs_xxhsum = pytest.mark.skipif(XXHSUM is None, reason="the xxhsum binary (package xxhash) is not installed")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache file, and young files may be cached."""
    path = tmp_path / "cache.sqlite3"
    monkeypatch.setenv("PCOPY_CACHE", str(path))
    monkeypatch.setattr(cache, "RACY_NS", 0)
    return path


def xxh(data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest()


SPEC = {
    "a/x": b"in a",
    "a.b": b"dot",
    "a0": b"zero",
    "a-b/y": b"dash dir",
    "B": b"upper",
    "empty": b"",
    "big.bin": big_content(),
    "with space": b"s",
    "back\\slash": b"b",
    "naïve ☃": b"u",
    BAD_UTF8: b"invalid utf-8",
    "sub/deeper/f": File(b"deep", mode=0o600),
    "sub/link": Link("../a0"),
    "link-dir": Link("sub"),
}


def hash_output(root, **kwargs) -> bytes:
    out = io.BytesIO()
    report = pcopy.hash_tree(root, out, **kwargs)
    assert report.errors == 0
    return out.getvalue()


# --------------------------------------------------------------------------- pcopy hash


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_hash_lists_regular_files_in_byte_order_of_the_path(tmp_path, backend):
    root = tmp_path / "root"
    nodes = make_tree(root, {**SPEC, "new\nline": b"nl"})
    files = [rel for rel, node in nodes.items() if isinstance(node, File)]
    expected = b"".join(manifest.manifest_line(xxh((root / rel).read_bytes()), rel)
                        for rel in sorted(files, key=os.fsencode))
    assert hash_output(root, backend=backend, cache=False) == expected
    order = [os.fsencode(rel) for rel in sorted(files, key=os.fsencode)]
    assert order.index(b"a-b/y") < order.index(b"a.b") < order.index(b"a/x") < order.index(b"a0")


def test_hash_output_inside_root_does_not_list_itself(tmp_path):
    root = tmp_path / "root"
    make_tree(root, {"f": b"f"})
    for _ in range(2):  # the second run finds the first run's manifest in ROOT
        report = pcopy.hash_tree(root, root / "MANIFEST", backend="thread")
        assert report.files == 1
    assert (root / "MANIFEST").read_bytes() == manifest.manifest_line(xxh(b"f"), "f")


@needs_xxhsum
def test_pcopy_manifest_passes_xxhsum_check(tmp_path):
    root = tmp_path / "root"
    make_tree(root, SPEC)  # no newline names: xxhsum 0.8.1 cannot read them back
    manifest = tmp_path / "MANIFEST.xxh"
    assert cli.main(["hash", str(root), "-o", str(manifest), "--no-progress", "-q"]) == 0
    proc = subprocess.run([XXHSUM, "--strict", "-c", str(manifest)], cwd=root, capture_output=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(b": OK\n") == 12
    (root / "a0").write_bytes(b"ZERO")
    proc = subprocess.run([XXHSUM, "-c", str(manifest)], cwd=root, capture_output=True)
    assert proc.returncode == 1 and b"a0: FAILED" in proc.stdout


@pytest.mark.skipif(SHA256SUM is None, reason="sha256sum not installed")
def test_sha256_manifest_passes_sha256sum_check(tmp_path):
    root = tmp_path / "root"
    make_tree(root, SPEC)
    out = hash_output(root, algo="sha256", backend="thread")
    assert len(out.splitlines()[0].split(b"  ")[0]) == 64
    proc = subprocess.run([SHA256SUM, "--strict", "-c", "-"], input=out, cwd=root, capture_output=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(b": OK\n") == 12


def test_cli_hash_prints_manifest_on_stdout_and_summary_on_stderr(tmp_path, capfdbinary):
    root = tmp_path / "root"
    make_tree(root, {"x": b"x", "y/z": b"z"})
    assert cli.main(["hash", str(root), "--no-progress", "--backend", "thread"]) == 0
    out, err = capfdbinary.readouterr()
    assert out == manifest.manifest_line(xxh(b"x"), "x") + manifest.manifest_line(xxh(b"z"), "y/z")
    assert b"hashed 2 files" in err


def test_cli_hash_missing_root_is_fatal(tmp_path, capsys):
    assert cli.main(["hash", str(tmp_path / "nope"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "nope: cannot read root" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_hash_unreadable_file_is_listed_as_error_and_exits_3(tmp_path, io_fault, capsys):
    root = tmp_path / "root"
    make_tree(root, {"ok": b"ok", "bad": b"bad"})
    io_fault("open", opens_source("bad"), oserror(5))
    code = cli.main(["hash", str(root), "--no-progress", "--backend", "thread", "--no-cache"])
    out, err = capsys.readouterr()
    assert code == 3
    assert out == "".join(f"{xxh(b'ok')}  ok\n")
    assert "pcopy: error: bad: Input/output error" in err


# --------------------------------------------------------------------------- pcopy verify --manifest


@needs_xxhsum
@pytest.mark.parametrize("form", ["plain", "dot-slash", "tag"])
def test_xxhsum_manifest_verifies(tmp_path, form):
    root = tmp_path / "root"
    make_tree(root, {k: v for k, v in SPEC.items() if k != BAD_UTF8})
    files = sorted(rel for rel in SPEC if rel != BAD_UTF8 and not isinstance(SPEC[rel], Link))
    args = [("./" + rel) if form != "plain" else rel for rel in files]
    cmd = [XXHSUM, "-H2"] + (["--tag"] if form == "tag" else [])
    manifest = subprocess.run(cmd + args, cwd=root, capture_output=True, check=True).stdout
    (tmp_path / "M").write_bytes(manifest)
    report = pcopy.verify(root, manifest=tmp_path / "M", backend="thread")
    assert (report.identical, report.exit_code) == (len(files), 0)
    (root / "sub" / "deeper" / "f").write_bytes(b"DEEP")  # same size
    os.unlink(root / "a.b")
    report = pcopy.verify(root, manifest=tmp_path / "M", backend="process")
    assert report.exit_code == 4
    assert sorted(report.differences) == [("differ", "sub/deeper/f", "contents differ"),
                                         ("missing", "a.b", "not found")]


def test_manifest_parsing_forms():
    d = "0123456789abcdef0123456789abcdef"
    parse = manifest.parse_manifest_line
    assert parse(f"{d}  ./a/b".encode()) == (0, "xxh128", d, "a/b", None)
    assert parse(f"{d} *x".encode()).relpath == "x"
    assert parse(f"XXH128 (./we) ird) = {d}".encode()).relpath == "we) ird"
    assert parse(f"\\{d}  new\\nline\\\\x".encode()).relpath == "new\nline\\x"
    assert parse(f"{d}  raw\\name".encode()).relpath == "raw\\name"
    assert parse(b"e6c632b61e964e1f  a").algo == "xxh64"
    assert parse(b"XXH3_e6c632b61e964e1f  a").algo == "xxh3"
    assert parse(b"XXH3 (a) = e6c632b61e964e1f").algo == "xxh3"
    assert parse(("a" * 64 + "  f").encode()).algo == "sha256"
    for bad in [b"nonsense", f"{d}  ../etc/passwd".encode(), f"{d}  /abs".encode(), f"{d[:-1]}  f".encode(),
                f"{d}x  f".encode(), f"{d} f".encode(), f"MD5 (f) = {d}".encode()]:
        assert parse(bad).error is not None, bad


def test_manifest_of_other_xxh_widths_and_sha256(tmp_path):
    root = tmp_path / "root"
    make_tree(root, {"a": b"a", "b": b"bb"})
    import hashlib
    lines = [f"{xxhash.xxh64(b'a').hexdigest()}  a", f"XXH3 (b) = {xxhash.xxh3_64(b'bb').hexdigest()}",
             f"{hashlib.sha256(b'bb').hexdigest()}  b", f"{xxhash.xxh32(b'a').hexdigest()}  ./a"]
    (tmp_path / "M").write_text("\n".join(lines) + "\n")
    report = pcopy.verify(root, manifest=tmp_path / "M", backend="thread")
    assert (report.identical, report.exit_code) == (4, 0)


def test_manifest_bad_lines_are_errors_and_empty_manifest_is_fatal(tmp_path, capsys):
    root = tmp_path / "root"
    make_tree(root, {"a": b"a"})
    (tmp_path / "M").write_bytes(f"{xxh(b'a')}  a\ngarbage line\n{xxh(b'a')}  ../a\n".encode())
    assert cli.main(["verify", "--manifest", str(tmp_path / "M"), str(root), "--no-progress",
                     "--backend", "thread"]) == 3
    err = capsys.readouterr().err
    assert f"{tmp_path / 'M'}:2: improperly formatted line" in err
    assert f"{tmp_path / 'M'}:3: path leaves the root (..)" in err
    (tmp_path / "E").write_bytes(b"not a manifest\n")
    assert cli.main(["verify", "--manifest", str(tmp_path / "E"), str(root), "--no-progress"]) == 1
    assert "no properly formatted checksum lines" in capsys.readouterr().err


@pytest.mark.parametrize("use_cache", [True, False])
def test_manifest_entry_that_is_a_symlink_or_dir_is_a_difference(tmp_path, use_cache):
    root = tmp_path / "root"
    make_tree(root, {"real": b"r", "l": Link("real"), "d/x": b"x"})
    (tmp_path / "M").write_bytes(f"{xxh(b'r')}  l\n{xxh(b'r')}  d\n{xxh(b'r')}  real\n".encode())
    report = pcopy.verify(root, manifest=tmp_path / "M", backend="thread", cache=use_cache)
    assert report.exit_code == 4 and report.identical == 1
    assert [(d.kind, d.path) for d in report.differences] == [("differ", "l"), ("differ", "d")]


# --------------------------------------------------------------------------- pcopy verify SRC DST


def two_trees(tmp_path, spec):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, spec)
    shutil.copytree(src, dst, symlinks=True)
    for rel, _node in spec.items():  # shutil keeps mtimes; be explicit for symlinks too
        st = os.lstat(src / rel)
        os.utime(dst / rel, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    return src, dst


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_identical_trees_exit_0(tmp_path, use_cache):
    src, dst = two_trees(tmp_path, SPEC)
    report = pcopy.verify(src, dst, backend="process", cache=use_cache)
    assert report.exit_code == 0, report.differences
    assert report.identical == 14  # 12 files and 2 symlinks (directories are not counted)
    assert report.differences == []


def flip_byte_keep_mtime(path, offset: int = 100) -> None:
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_verify_detects_every_kind_of_difference(tmp_path, use_cache):
    spec = {"flip.bin": big_content(5000), "trunc": b"0123456789", "one": b"first file", "two": b"other file",
            "gone": b"g", "same/x": b"x", "lnk": Link("one"), "big.bin": big_content()}
    src, dst = two_trees(tmp_path, spec)
    if use_cache:  # warm the cache first: the differences must still be found
        assert pcopy.verify(src, dst, backend="thread").exit_code == 0
    flip_byte_keep_mtime(dst / "flip.bin")
    flip_byte_keep_mtime(dst / "big.bin", offset=2_500_000)
    st = os.stat(dst / "trunc")
    os.truncate(dst / "trunc", 5)
    os.utime(dst / "trunc", ns=(st.st_atime_ns, st.st_mtime_ns))
    one, two = os.stat(dst / "one"), os.stat(dst / "two")
    os.rename(dst / "one", dst / "tmp")
    os.rename(dst / "two", dst / "one")
    os.rename(dst / "tmp", dst / "two")
    os.utime(dst / "one", ns=(one.st_atime_ns, one.st_mtime_ns))
    os.utime(dst / "two", ns=(two.st_atime_ns, two.st_mtime_ns))
    os.unlink(dst / "gone")
    (dst / "new").write_bytes(b"extra")
    os.mkdir(dst / "newdir")
    os.unlink(dst / "lnk")
    os.symlink("two", dst / "lnk")
    report = pcopy.verify(src, dst, backend="process", cache=use_cache)
    assert report.exit_code == 4
    assert [(d.kind, d.path) for d in report.differences] == [
        ("differ", "big.bin"), ("differ", "flip.bin"), ("missing", "gone"), ("differ", "lnk"),
        ("extra", "new"), ("extra", "newdir/"), ("differ", "one"), ("differ", "trunc"), ("differ", "two")]
    details = {d.path: d.detail for d in report.differences}
    assert details["flip.bin"] == "contents differ"
    assert details["trunc"] == "sizes differ (10 in SRC, 5 in DST)"
    assert details["lnk"] == "symlink targets differ"
    assert report.identical == 1  # same/x


def test_kind_mismatch_and_missing_directory(tmp_path):
    src, dst = two_trees(tmp_path, {"d/x": b"x", "f": b"f", "only/y": b"y"})
    shutil.rmtree(dst / "d")
    (dst / "d").write_bytes(b"now a file")
    shutil.rmtree(dst / "only")
    report = pcopy.verify(src, dst, backend="thread")
    assert [tuple(d) for d in report.differences] == [
        ("differ", "d", "directory in SRC, file in DST"), ("missing", "only/", "not in DST")]


def test_cli_verify_exit_codes_and_json(tmp_path, capsys):
    src, dst = two_trees(tmp_path, {"a": b"a", "b": b"b"})
    base = ["--no-progress", "--backend", "thread"]
    assert cli.main(["verify", str(src), str(dst), *base]) == 0
    capsys.readouterr()
    (dst / "b").write_bytes(b"B")
    assert cli.main(["verify", str(src), str(dst), *base, "--json"]) == 4
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["differ"] == 1 and data["differences"] == [{"kind": "differ", "path": "b", "detail": "contents differ"}]
    assert "pcopy: differ: b (contents differ)" in err
    assert cli.main(["verify", str(src), str(tmp_path / "none"), *base]) == 1
    assert cli.main(["verify", str(src), *base]) == 2
    assert cli.main(["verify", "--manifest", "M", str(src), str(dst), *base]) == 2


def test_verify_unreadable_file_is_an_error_exit_3(tmp_path, io_fault):
    src, dst = two_trees(tmp_path, {"a": b"a", "b": b"b"})
    io_fault("open", opens_source("b"), oserror(13))
    report = pcopy.verify(src, dst, backend="thread", cache=False)
    assert report.exit_code == 3
    assert [tuple(d) for d in report.differences] == [("error", "b", "in SRC: Permission denied")]


def test_verify_as_a_subprocess(tmp_path):
    src, dst = two_trees(tmp_path, {"a": b"a"})
    env = {**os.environ, "PCOPY_CACHE": str(tmp_path / "c.sqlite3")}
    proc = subprocess.run([PYTHON, "-m", "pcopy", "verify", str(src), str(dst)], capture_output=True, env=env)
    assert proc.returncode == 0 and proc.stdout == b""
    (dst / "a").unlink()
    proc = subprocess.run([PYTHON, "-m", "pcopy", "verify", str(src), str(dst)], capture_output=True, env=env)
    assert proc.returncode == 4 and b"pcopy: missing: a (not in DST)" in proc.stderr


# --------------------------------------------------------------------------- ordered pool


def test_map_ordered_keeps_order_and_bounds_the_window():
    release = threading.Event()
    pulled = []

    def fn(n):
        if n == 0:
            release.wait(10)
        return n * 10

    def items():
        for n in range(50):
            pulled.append(n)
            yield n, (n if n % 3 == 0 else None)

    pool = BoundedPool(ThreadBackend(2), max_in_flight=2)
    out = []
    gen = pool.map_ordered(fn, items(), window=8)
    timer = threading.Timer(0.2, release.set)
    timer.start()
    try:
        for payload, result, _exc in gen:
            out.append((payload, result))
            if payload == 0:
                assert len(pulled) <= 8  # nothing was pulled beyond the window while 0 ran
    finally:
        timer.cancel()
        release.set()
        pool.close()
    assert [p for p, _ in out] == list(range(50))
    assert all(r == (p * 10 if p % 3 == 0 else None) for p, r in out)
