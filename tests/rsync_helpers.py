"""Helpers for the rsync-oracle tests (tests/test_rsync_oracle*.py).

``oracle_pair`` builds one SRC tree and one initial DST state, copies that DST
state to ``r`` and ``p``; ``rsync_run`` runs rsync on ``r``, ``pcopy_run`` pcopy
on ``p``; ``assert_same_trees`` compares the results (``view``: what both tools
are asked to keep — kinds, contents, modes, owners, link targets, hard-link
counts, mtimes of files and symlinks; directory times and atimes are ignored).
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess

import pytest
import xxhash
from conftest import Dir, File, Link, make_tree
from fault_helpers import env, pcopy_cmd

RSYNC = shutil.which("rsync")
T0 = 1_600_000_000  # seconds; every tree entry gets T0 + offset, with a non-zero ns part
NS = 123_456_789


def mt(offset: int, ns: int = NS) -> int:
    """An mtime in ns: ``offset`` seconds after T0."""
    return (T0 + offset) * 10**9 + ns


def f(content: bytes, offset: int, mode: int = 0o644, ns: int = NS) -> File:
    return File(content, mode=mode, mtime_ns=mt(offset, ns))


def blob(size: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


def src_spec() -> dict:
    """SRC: files with distinct mtimes and sizes, modes, symlinks, an empty dir, nested dirs."""
    return {
        "same.txt": f(b"same\n", 10),
        "changed.txt": f(b"new content, longer\n", 20),
        "newer_in_dst.txt": f(b"src version\n", 30),
        "eq_mtime_diff_size.txt": f(b"src longer one\n", 50),
        "eq_size_diff_mtime.txt": f(b"AAAA\n", 60),
        "eq_size_newer_dst.txt": f(b"CCCC\n", 65),
        "same_meta_diff_content.txt": f(b"1234\n", 80),
        "same_content_other_mtime.txt": f(b"same!\n", 85),
        "off_by_1s.txt": f(b"xy\n", 90),
        "ns_only.txt": f(b"ns\n", 95),
        "mode600.txt": f(b"private\n", 100, mode=0o600),
        "exec.sh": f(b"#!/bin/sh\n", 110, mode=0o755),
        "tiny.bin": f(blob(100, 1), 120),
        "small.bin": f(blob(1010, 2), 125),  # <= 1K only if K is 1024
        "mid.bin": f(blob(1_040_000, 3), 130),  # <= 1M only if M is 1024*1024
        "large.bin": f(blob(1_100_000, 4), 140),
        "link": Link("same.txt", mtime_ns=mt(145)),
        "dangling": Link("nowhere", mtime_ns=mt(146)),
        "empty": Dir(),
        "nested/d.txt": f(b"d\n", 150),
        "nested/deep/c.txt": f(b"c, the new one\n", 160),
        "new_dir/new.txt": f(b"new\n", 170),
        "keep.tmp": f(b"tmp\n", 180),
        "cache/blob": f(b"blob\n", 190),
        "conflict/inside.txt": f(b"inside\n", 195),
        "hard1": f(b"hard\n", 200),
    }


def dst_spec(conflict: bool = True) -> dict:
    """The DST before the run: equal, older, newer, equal-size, extra and stale entries."""
    spec = {
        "same.txt": f(b"same\n", 10),
        "changed.txt": f(b"old\n", 5),
        "newer_in_dst.txt": f(b"dst version, newer\n", 40),
        "eq_mtime_diff_size.txt": f(b"dst\n", 50),
        "eq_size_diff_mtime.txt": f(b"BBBB\n", 55),
        "eq_size_newer_dst.txt": f(b"DDDD\n", 70),
        "same_meta_diff_content.txt": f(b"abcd\n", 80),
        "same_content_other_mtime.txt": f(b"same!\n", 84),
        "off_by_1s.txt": f(b"zw\n", 91),
        "ns_only.txt": f(b"NS\n", 95, ns=999),
        "mode600.txt": f(b"private\n", 100, mode=0o644),
        "mid.bin": f(blob(1_040_000, 9), 129),
        "extra.txt": f(b"extra\n", 3),
        "extra.tmp": f(b"extra tmp\n", 4),
        "extra_dir/x.txt": f(b"x\n", 6),
        "nested/old.txt": f(b"stale\n", 7),
        "nested/deep/c.txt": f(b"c\n", 8),
        "cache/stale": f(b"stale cache\n", 9),
    }
    if conflict:
        spec["conflict"] = f(b"a file where SRC has a directory\n", 11)
    return spec


def build(root, spec: dict, links: dict = None) -> str:
    """make_tree, plus hard links {new name: existing name}, keeping the tree's times."""
    root = os.fspath(root)
    make_tree(root, spec)
    for new, old in (links or {}).items():
        os.link(os.path.join(root, old), os.path.join(root, new))
    os.utime(root, ns=(mt(0), mt(0)))
    return root


def clone(src: str, dst: str) -> str:
    """An exact copy of a DST state (cp -a keeps modes, times, owners, hard links)."""
    subprocess.run(["cp", "-a", src, dst], check=True)
    return dst


def oracle_pair(tmp_path, src: dict = None, dst: dict = None, src_links: dict = None) -> tuple:
    """(SRC, rsync's DST, pcopy's DST): one SRC tree and two identical DST states."""
    s = build(tmp_path / "src", src_spec() if src is None else src, {"hard2": "hard1"} if src_links is None
              else src_links)
    base = build(tmp_path / "dst0", dst_spec() if dst is None else dst)
    os.chmod(base, 0o700)  # rsync -a SRC/ DST/ gives DST SRC's mode; so must pcopy
    return s, clone(base, str(tmp_path / "r")), clone(base, str(tmp_path / "p"))


def need_rsync() -> None:
    if RSYNC is None:
        pytest.skip("rsync is not installed (Debian package rsync)")


def rsync_run(args, src: str, dst: str, archive: str = "-aH", ns: bool = True) -> subprocess.CompletedProcess:
    """``rsync -aH --modify-window=-1 ARGS SRC/ DST/``: -1 compares ns, as pcopy does (``ns=False``, or a
    window in ARGS, leaves rsync's default: whole seconds)."""
    need_rsync()
    ns = ns and not any(a.startswith("--modify-window") for a in args)
    window = ["--modify-window=-1"] if ns else []
    cmd = [RSYNC, archive, *window, *args, src.rstrip("/") + "/", dst.rstrip("/") + "/"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def pcopy_run(*args, cwd: str = "/", timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m pcopy ARGS`` in a subprocess, output as text."""
    return subprocess.run(pcopy_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env(), cwd=cwd)


@functools.lru_cache(maxsize=None)
def rsync_keeps_ns() -> bool:
    """rsync ≥ 3.1 on Linux keeps ns mtimes; compare at the resolution it has."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        build(os.path.join(tmp, "s"), {"x": f(b"x", 1)})
        assert rsync_run([], os.path.join(tmp, "s"), os.path.join(tmp, "d")).returncode == 0
        return os.lstat(os.path.join(tmp, "d", "x")).st_mtime_ns == mt(1)


def view(root, ignore=(), dirs_below: str = "") -> dict:
    """{relpath: what both tools must agree on} for root (".") and everything below, minus ``ignore``
    (and minus the directories below ``dirs_below``: their files are still compared)."""
    root = os.fspath(root)
    ns = rsync_keeps_ns() if RSYNC else True
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames] if dirpath == root else [*dirnames, *filenames]:
            path = os.path.join(dirpath, name) if name else root
            rel = os.path.relpath(path, root)
            if rel in ignore or (dirs_below and _below(rel, dirs_below) and os.path.isdir(path)):
                continue
            out[rel] = _entry(path, ns)
    return out


def _below(rel: str, top: str) -> bool:
    return rel == top or rel.startswith(top + os.sep)


def _entry(path: str, ns: bool) -> tuple:
    st = os.lstat(path)
    mtime = st.st_mtime_ns if ns else st.st_mtime_ns // 10**9
    if stat.S_ISLNK(st.st_mode):
        return ("symlink", os.readlink(path), mtime, st.st_uid, st.st_gid)
    owner = (oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid)
    if stat.S_ISDIR(st.st_mode):
        return ("dir", *owner)
    with open(path, "rb") as fh:
        data = fh.read()
    shown = data if len(data) < 200 else f"{len(data)} bytes, xxh3 {xxhash.xxh3_64_hexdigest(data)}"
    return ("file", shown, mtime, *owner, f"nlink {st.st_nlink}")


def assert_same_trees(rsync_dst, pcopy_dst, ignore=(), dirs_below: str = "") -> None:
    a, b = view(rsync_dst, ignore, dirs_below), view(pcopy_dst, ignore, dirs_below)
    diff = {rel: {"rsync": a.get(rel), "pcopy": b.get(rel)} for rel in sorted(set(a) | set(b))
            if a.get(rel) != b.get(rel)}
    assert not diff, f"pcopy's DST differs from rsync's: {diff}"


def dirs_in(root, top: str) -> set:
    """The directories at and below root/top, as relpaths."""
    root = os.fspath(root)
    return {os.path.relpath(d, root) for d, _, _ in os.walk(os.path.join(root, top))}


def content(root, rel: str):
    """The bytes of root/rel, "<dir>", "-> target", or None when absent."""
    path = os.path.join(root, rel)
    if os.path.islink(path):
        return "-> " + os.readlink(path)
    if os.path.isdir(path):
        return "<dir>"
    if not os.path.exists(path):
        return None
    with open(path, "rb") as fh:
        return fh.read()
