"""Manifests: the ``xxhsum -H2`` line format, streamed as results arrive."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import xxhash
from conftest import BAD_UTF8, File, Link, big_content, make_tree, walk_paths

import pcopy
from pcopy import cli
from pcopy.content import digest, manifest

XXHSUM = shutil.which("xxhsum")
needs_xxhsum = pytest.mark.skipif(XXHSUM is None, reason="the xxhsum binary (package xxhash) is not installed")


def expected_line(root, rel: str) -> bytes:
    digest = xxhash.xxh3_128((root / rel).read_bytes()).hexdigest()
    return digest.encode() + b"  " + os.fsencode(rel) + b"\n"


def regular_files(root) -> list:
    return [rel for rel in walk_paths(root) if os.path.isfile(root / rel) and not os.path.islink(root / rel)]


SPEC = {
    "a.txt": b"alpha",
    "empty": b"",
    "big.bin": big_content(),
    "with space": b"s",
    "back\\slash": b"b",
    "naïve ☃": b"u",
    BAD_UTF8: b"invalid utf-8",
    "sub/deeper/f": File(b"deep", mode=0o600),
    "sub/link": Link("../a.txt"),
}


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_manifest_lines_are_xxh128_and_relpath(tmp_path, backend):
    src, dst, manifest = tmp_path / "src", tmp_path / "dst", tmp_path / "MANIFEST"
    make_tree(src, SPEC)
    report = pcopy.copytree(src, dst, backend=backend, manifest=manifest)
    assert report.failed == 0
    lines = manifest.read_bytes().splitlines(keepends=True)
    files = regular_files(src)
    assert len(files) == 8
    assert sorted(lines) == sorted(expected_line(src, rel) for rel in files)
    assert not os.path.exists(str(manifest) + ".pcopy-tmp")


def test_manifest_lists_skipped_files_on_rerun(tmp_path):
    src, dst, manifest = tmp_path / "src", tmp_path / "dst", tmp_path / "MANIFEST"
    make_tree(src, SPEC)
    pcopy.copytree(src, dst, backend="thread", manifest=manifest)
    first = sorted(manifest.read_bytes().splitlines())
    (src / "a.txt").write_bytes(b"alpha, changed")

    report = pcopy.copytree(src, dst, backend="thread", manifest=manifest)

    assert report.copied == 1 and report.skipped == 8  # 7 unchanged files + the symlink
    second = sorted(manifest.read_bytes().splitlines())
    assert len(second) == len(first) == 8
    assert sorted(second) == sorted(expected_line(dst, rel).rstrip(b"\n") for rel in regular_files(dst))
    assert set(first) - set(second) == {expected_line_for(b"alpha", "a.txt")}


def expected_line_for(content: bytes, rel: str) -> bytes:
    return xxhash.xxh3_128(content).hexdigest().encode() + b"  " + os.fsencode(rel)


def test_manifest_hashes_what_dst_holds_for_skipped_files(tmp_path):
    """A skipped file's line is the digest of the DST copy (what `xxhsum -c` will read)."""
    src, dst, manifest = tmp_path / "src", tmp_path / "dst", tmp_path / "MANIFEST"
    make_tree(src, {"f": File(b"AAAA", mtime_ns=4_000_000_000_000_000_000)})
    make_tree(dst, {"f": File(b"BBBB", mtime_ns=4_000_000_000_000_000_000)})
    report = pcopy.copytree(src, dst, backend="thread", manifest=manifest)
    assert report.skipped == 1
    assert manifest.read_bytes() == expected_line_for(b"BBBB", "f") + b"\n"


@needs_xxhsum
@pytest.mark.parametrize("rerun", [False, True], ids=["fresh", "rerun"])
def test_xxhsum_checks_the_manifest(tmp_path, rerun):
    src, dst, manifest = tmp_path / "src", tmp_path / "dst", tmp_path / "MANIFEST"
    make_tree(src, SPEC)
    pcopy.copytree(src, dst, backend="process", manifest=manifest)
    if rerun:
        pcopy.copytree(src, dst, backend="process", manifest=manifest)
    proc = subprocess.run([XXHSUM, "--strict", "-c", str(manifest)], cwd=dst, capture_output=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(b": OK\n") == 8
    # and it does catch a difference
    (dst / "sub" / "deeper" / "f").write_bytes(b"DEEP")
    proc = subprocess.run([XXHSUM, "-c", str(manifest)], cwd=dst, capture_output=True)
    assert proc.returncode == 1 and b"sub/deeper/f: FAILED" in proc.stdout


@needs_xxhsum
def test_cli_manifest_inside_dst_checks(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"x": b"x", "y/z": b"z"})
    assert cli.main(["copy", str(src), str(dst), "--no-progress", "--backend", "thread",
                     "--manifest", str(dst / "MANIFEST.xxh")]) == 0
    proc = subprocess.run([XXHSUM, "--strict", "-c", "MANIFEST.xxh"], cwd=dst, capture_output=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(b": OK\n") == 2


def test_manifest_line_plain():
    digest = "0123456789abcdef0123456789abcdef"
    assert manifest.manifest_line(digest, "a b/c\\d") == (digest + "  a b/c\\d\n").encode()
    assert manifest.manifest_line(digest, BAD_UTF8) == digest.encode() + b"  bad\xff\n"


def test_manifest_line_escapes_newlines_with_leading_backslash():
    digest = "0123456789abcdef0123456789abcdef"
    line = manifest.manifest_line(digest, "dir/new\nline\\back\rcr")
    assert line == b"\\" + digest.encode() + b"  dir/new\\nline\\\\back\\rcr\n"
    assert line.count(b"\n") == 1


def test_newline_name_in_copy_manifest(tmp_path):
    src, dst, manifest = tmp_path / "src", tmp_path / "dst", tmp_path / "MANIFEST"
    make_tree(src, {"new\nline": b"n", "plain": b"p"})
    pcopy.copytree(src, dst, backend="thread", manifest=manifest)
    lines = sorted(manifest.read_bytes().splitlines())
    digest = xxhash.xxh3_128(b"n").hexdigest().encode()
    assert lines == sorted([b"\\" + digest + b"  new\\nline", expected_line_for(b"p", "plain")])


def test_manifest_is_not_left_behind_when_the_run_fails_to_start(tmp_path):
    manifest = tmp_path / "MANIFEST"
    with pytest.raises(pcopy.PcopyError):
        pcopy.copytree(tmp_path / "missing", tmp_path / "dst", manifest=manifest)
    assert not manifest.exists() and not os.path.exists(str(manifest) + ".pcopy-tmp")


def test_hash_algorithm_choices():
    assert digest.algo("xxh128").new is xxhash.xxh3_128
    assert digest.algo("xxh128").once(b"abc") == xxhash.xxh3_128_hexdigest(b"abc")
    with pytest.raises(ValueError):
        digest.algo("md5")


def test_manifest_inside_dst_keeps_root_mtime(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a", "d/b": b"b"})
    report = pcopy.copytree(src, dst, backend="thread", manifest=dst / "MANIFEST")
    assert report.failed == 0
    assert (dst / "MANIFEST").exists()
    assert os.stat(dst).st_mtime_ns == os.stat(src).st_mtime_ns
    assert os.stat(dst / "d").st_mtime_ns == os.stat(src / "d").st_mtime_ns
