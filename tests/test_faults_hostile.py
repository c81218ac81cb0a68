"""A hostile destination: symlinks planted in DST (before or during the run) must never lead a write outside.

The link targets are the sentinel directory beside DST, which must stay
byte-for-byte unchanged. ``copy`` reports a link where SRC has a directory
(exit 3); ``sync`` replaces it with a real directory.
"""

from __future__ import annotations

import os

import pytest
from conftest import Link, make_tree
from fault_helpers import (
    assert_nothing_lost,
    cli,
    error_lines,
    run_pcopy,
    sentinel,  # noqa: F401 (fixture)
    snapshots_equal,
)

import pcopy
from pcopy.fs import beneath, scan, temps

pytestmark = pytest.mark.faults

SRC_SPEC = {
    "top.txt": b"top",
    "d/victim.txt": b"pcopy wrote this",
    "d/new.txt": b"new",
    "a/b/victim.txt": b"deep write",
    "a/b/keep": b"overwritten?",
    "a/ok.txt": b"ok",
    "f.txt": b"file content",
}


def _plant(dst, sent):
    s = sent.path
    make_tree(dst, {"d": Link(s), "a/b": Link(os.path.join(s, "sub")), "f.txt": Link(os.path.join(s, "victim.txt"))})


def test_copy_reports_planted_links_and_writes_nothing_outside(tmp_path, sentinel):  # noqa: F811
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, SRC_SPEC)
    _plant(dst, sentinel)
    proc = run_pcopy("copy", src, dst, "--no-progress")
    assert proc.returncode == 3, proc.err
    lines = error_lines(proc.err)
    assert any(line.startswith("pcopy: error: d: cannot overwrite non-directory with directory") for line in lines)
    assert any(line.startswith("pcopy: error: a/b: cannot overwrite non-directory with directory") for line in lines)
    sentinel.check()
    # the link at a file's final name is replaced by the file (rename replaces the link, not its target)
    assert not os.path.islink(dst / "f.txt") and (dst / "f.txt").read_bytes() == b"file content"
    assert os.path.islink(dst / "d") and os.path.islink(dst / "a" / "b")
    os.unlink(dst / "d")
    os.unlink(dst / "a" / "b")
    assert_nothing_lost(src, dst, sentinel)


@pytest.mark.parametrize("delete", [False, True])
def test_sync_replaces_planted_links_with_directories(tmp_path, sentinel, delete):  # noqa: F811
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, SRC_SPEC)
    _plant(dst, sentinel)
    make_tree(dst, {"extra-link": Link(sentinel.path), "x/inner-link": Link(os.path.join(sentinel.path, "sub"))})
    proc = run_pcopy("sync", src, dst, "--no-progress", *(["--delete"] if delete else []))
    assert proc.returncode == 0, proc.err
    sentinel.check()
    for rel in ("d", "a/b"):
        assert os.path.isdir(dst / rel) and not os.path.islink(dst / rel)
    if delete:
        assert not os.path.lexists(dst / "extra-link") and not os.path.lexists(dst / "x")
        snapshots_equal(src, dst)
    assert_nothing_lost(src, dst, sentinel, complete=True,
                        prior=None if delete else {"extra-link": None, "x": None, "x/inner-link": None})


def _swap_for_link(path, target) -> None:
    os.rename(path, str(path) + ".moved")
    os.symlink(target, path)


@pytest.mark.parametrize("reldir", ["d", "a/b", "a"])
def test_link_swapped_in_just_before_the_worker_opens_the_directory(tmp_path, sentinel, monkeypatch, reldir):  # noqa: F811
    """Deterministic race: DST/<reldir> becomes a link to the outside right before a worker opens it."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, SRC_SPEC)
    real = beneath.DirCache.acquire
    swapped = []

    def racing(cache, rel):
        if cache.root == str(dst) and rel.startswith(reldir) and not swapped:
            swapped.append(rel)
            _swap_for_link(dst / reldir, os.path.join(sentinel.path, "sub"))
        return real(cache, rel)

    monkeypatch.setattr(beneath.DirCache, "acquire", racing)
    report = pcopy.copytree(src, dst, backend="thread", jobs=1)
    assert swapped
    assert not report.ok
    assert all("symbolic links" in r.message or "Not a directory" in r.message for r in report.failures), \
        report.failures
    sentinel.check()
    os.unlink(dst / reldir)
    os.rename(str(dst / reldir) + ".moved", dst / reldir)
    assert_nothing_lost(src, dst, sentinel)


def test_link_swapped_in_after_the_directory_was_opened(tmp_path, sentinel, monkeypatch):  # noqa: F811
    """The worker already holds DST/d open: its files land in the real directory (now DST/d.moved), not outside."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, SRC_SPEC)
    real_open = os.open
    swapped = []

    def racing(path, flags, *args, dir_fd=None, **kwargs):
        fd = real_open(path, flags, *args, dir_fd=dir_fd, **kwargs)
        if (not swapped and isinstance(path, str) and path.startswith(temps.TMP_PREFIX) and dir_fd is not None
                and os.readlink(f"/proc/self/fd/{dir_fd}") == str(dst / "d")):
            swapped.append(path)
            _swap_for_link(dst / "d", sentinel.path)
        return fd

    monkeypatch.setattr(os, "open", racing)
    report = pcopy.copytree(src, dst, backend="thread", jobs=1)
    monkeypatch.undo()
    assert swapped
    sentinel.check()
    assert (dst / "d.moved" / "victim.txt").read_bytes() == b"pcopy wrote this"
    # finishing the directory metadata refuses to go through the link
    assert [r.relpath for r in report.failures] == ["d"], report.failures
    os.unlink(dst / "d")
    os.rename(dst / "d.moved", dst / "d")
    assert_nothing_lost(src, dst, sentinel, complete=True)


def test_sync_delete_never_deletes_through_a_link_swapped_in(tmp_path, sentinel, monkeypatch):  # noqa: F811
    """DST/extra (a directory to delete) becomes a link to the outside before pcopy lists it for deletion."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"keep.txt": b"keep"})
    make_tree(dst, {"extra/one": b"1", "extra/two": b"2", "extra/sub/victim.txt": b"v"})
    real_walk = scan.walk
    swapped = []

    def racing(*args, **kwargs):
        start = kwargs.get("start", args[4] if len(args) > 4 else "")
        if args[0] == str(dst) and start == "extra" and not swapped:
            swapped.append(start)
            _swap_for_link(dst / "extra", sentinel.path)
        return real_walk(*args, **kwargs)

    monkeypatch.setattr(scan, "walk", racing)
    report = pcopy.sync(src, dst, delete=True, backend="thread")
    monkeypatch.undo()
    assert swapped
    sentinel.check()
    assert not report.ok  # the deletions that would go through the link fail, and are reported
    assert (dst / "keep.txt").read_bytes() == b"keep"


def test_cli_hostile_file_link_with_sync(tmp_path, sentinel, capsys):  # noqa: F811
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"f.txt": b"new content", "g": b"g"})
    make_tree(dst, {"f.txt": Link(os.path.join(sentinel.path, "victim.txt")), "g": Link("/etc/passwd")})
    assert cli(["sync", src, dst, "--no-progress", "--backend", "thread"]) == 0, capsys.readouterr().err
    sentinel.check()
    assert_nothing_lost(src, dst, sentinel, complete=True)
    assert not os.path.islink(dst / "g")
