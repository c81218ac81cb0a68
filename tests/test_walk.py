"""The walker: one Listing per directory, parents first, errors as data.

Most tests run on pyfakefs (the ``fs`` fixture); the symlink-following ones use
real directories because they depend on inode identity.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

import pytest
from conftest import Dir, File, Link, fail_stat_of_entry, make_tree

from pcopy.fs import scan
from pcopy.model import entries
from pcopy.model.entries import DIR, FILE, SPECIAL, SYMLINK


def _build(fs):
    fs.create_file("/src/b.txt", contents="bb")
    fs.create_file("/src/a.txt", contents="a")
    fs.create_file("/src/zdir/inner/deep.txt", contents="deep")
    fs.create_file("/src/adir/x", contents="")
    fs.create_dir("/src/adir/empty")
    fs.create_symlink("/src/link", "a.txt")
    fs.create_symlink("/src/zdir/dangling", "/nowhere")
    os.utime("/src/a.txt", ns=(5, 123456789))


def test_walk_yields_parents_before_children_with_sorted_entries(fs):
    _build(fs)
    listings = list(scan.walk("/src"))

    order = [listing.reldir for listing in listings]
    assert order == ["", "adir", "adir/empty", "zdir", "zdir/inner"]
    for i, reldir in enumerate(order):
        if reldir:
            assert os.path.dirname(reldir) in order[:i]
    for listing in listings:
        assert listing.error is None
        names = [e.name for e in listing.entries]
        assert names == sorted(names)

    root = {e.name: e for e in listings[0].entries}
    assert list(root) == ["a.txt", "adir", "b.txt", "link", "zdir"]
    assert {n: e.kind for n, e in root.items()} == {
        "a.txt": FILE, "adir": DIR, "b.txt": FILE, "link": SYMLINK, "zdir": DIR}
    assert root["a.txt"].size == 1 and root["b.txt"].size == 2
    assert root["a.txt"].mtime_ns == 123456789
    assert stat.S_ISLNK(root["link"].mode)  # lstat, not followed
    deep = {listing.reldir: listing for listing in listings}
    assert [e.name for e in deep["zdir"].entries] == ["dangling", "inner"]
    assert deep["adir/empty"].entries == []


def test_walk_follow_symlinks_reports_targets(fs):
    _build(fs)
    root = {e.name: e for e in scan.walk("/src", follow_symlinks=True).__next__().entries}
    assert root["link"].kind == FILE and root["link"].size == 1
    zdir = next(lst for lst in scan.walk("/src", follow_symlinks=True) if lst.reldir == "zdir")
    assert {e.name: e.kind for e in zdir.entries}["dangling"] == SYMLINK  # kept as a link


def test_walk_without_stat_still_knows_kinds(fs):
    """Directories that need no stat (a fresh DST) still report every kind; sizes may be unknown."""
    _build(fs)
    asked = []
    listings = {lst.reldir: lst for lst in scan.walk("/src", stat_files=lambda d: asked.append(d) or False)}
    assert sorted(asked) == ["", "adir", "adir/empty", "zdir", "zdir/inner"]
    assert {e.name: e.kind for e in listings[""].entries} == {
        "a.txt": FILE, "adir": DIR, "b.txt": FILE, "link": SYMLINK, "zdir": DIR}


def test_walk_is_lazy(fs, monkeypatch):
    """Directories are read as the consumer pulls, never all up front."""
    _build(fs)
    scanned = []
    real = os.scandir

    def spy(path="."):
        scanned.append(path)
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    it = scan.walk("/src")
    next(it)
    assert len(scanned) == 1
    next(it)
    assert len(scanned) == 2


def test_unreadable_directory_is_a_listing_with_error(fs, monkeypatch):
    _build(fs)
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("adir"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    listings = list(scan.walk("/src"))
    by_dir = {listing.reldir: listing for listing in listings}
    assert isinstance(by_dir["adir"].error, PermissionError)
    assert by_dir["adir"].entries == []
    assert "adir/empty" not in by_dir  # its children are unknown
    assert [lst.reldir for lst in listings] == ["", "adir", "zdir", "zdir/inner"]  # the walk went on


@pytest.mark.parametrize("fs", [[None, None, None, False]], indirect=True)
def test_unreadable_directory_as_non_root_user(fs):
    _build(fs)
    os.chmod("/src/adir", 0)
    listings = list(scan.walk("/src"))
    by_dir = {listing.reldir: listing for listing in listings}
    assert isinstance(by_dir["adir"].error, PermissionError)
    assert by_dir["zdir/inner"].error is None
    assert [e.name for e in by_dir["zdir/inner"].entries] == ["deep.txt"]


def test_unreadable_root(fs):
    listings = list(scan.walk("/does-not-exist"))
    assert len(listings) == 1
    assert listings[0].reldir == "" and isinstance(listings[0].error, FileNotFoundError)


def test_entry_vanishing_between_readdir_and_stat_is_dropped(fs, monkeypatch):
    _build(fs)
    fail_stat_of_entry(monkeypatch, "b.txt", lambda: FileNotFoundError(errno.ENOENT, "gone"))
    root = next(scan.walk("/src"))
    assert root.error is None
    assert [e.name for e in root.entries] == ["a.txt", "adir", "link", "zdir"]


def test_entry_whose_stat_fails_is_not_dropped_silently(fs, monkeypatch):
    _build(fs)
    fail_stat_of_entry(monkeypatch, "b.txt", lambda: OSError(errno.EIO, "Input/output error"))
    root = next(scan.walk("/src"))
    assert root.error is None and "b.txt" not in [e.name for e in root.entries]
    assert [(name, exc.errno) for name, exc in root.entry_errors] == [("b.txt", errno.EIO)]


def _stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def test_deep_tree_does_not_recurse(fs):
    depth = 250
    path = "/src/" + "/".join(["d"] * depth)
    fs.create_file(path + "/leaf")
    # a recursive walker would need one frame per level: leave far fewer than that
    limit = _stack_depth() + 60
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        listings = list(scan.walk("/src"))
    finally:
        sys.setrecursionlimit(old)
    assert len(listings) == depth + 1
    assert listings[-1].entries[0].name == "leaf"


def test_kind_of():
    assert entries.kind_of(stat.S_IFREG | 0o644) == FILE
    assert entries.kind_of(stat.S_IFDIR | 0o755) == DIR
    assert entries.kind_of(stat.S_IFLNK | 0o777) == SYMLINK
    for fmt in (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK):
        assert entries.kind_of(fmt | 0o600) == SPECIAL


def test_scan_dir_accepts_a_directory_fd(tmp_path):
    make_tree(tmp_path, {"b": b"bb", "a": Dir(), "c": Link("b")})
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        entries = scan.scan_dir(fd)
    finally:
        os.close(fd)
    assert [(e.name, e.kind) for e in entries] == [("a", DIR), ("b", FILE), ("c", SYMLINK)]


# --------------------------------------------------------------------------- following symlinks (real fs)


def test_follow_symlinks_detects_a_real_loop(tmp_path):
    make_tree(tmp_path / "src", {"d/f": b"f", "d/up": Link("..")})
    listings = list(scan.walk(str(tmp_path / "src"), follow_symlinks=True))
    assert len(listings) < 10  # it terminates
    errors = [lst for lst in listings if lst.error is not None]
    assert [lst.reldir for lst in errors] == ["d/up"]


def test_follow_symlinks_to_a_sibling_is_not_a_loop(tmp_path):
    make_tree(tmp_path / "src", {"real/f": b"f", "alias": Link("real")})
    listings = list(scan.walk(str(tmp_path / "src"), follow_symlinks=True))
    assert [lst.error for lst in listings] == [None, None, None]
    assert {lst.reldir for lst in listings} == {"", "alias", "real"}


def test_follow_symlinks_one_bad_link_does_not_hide_the_directory(tmp_path):
    make_tree(tmp_path / "src", {"f": b"f", "selfloop": Link("selfloop"), "g": File(b"g")})
    (root,) = [lst for lst in scan.walk(str(tmp_path / "src"), follow_symlinks=True) if lst.reldir == ""]
    assert root.error is None
    assert [e.name for e in root.entries if e.kind == FILE] == ["f", "g"]
