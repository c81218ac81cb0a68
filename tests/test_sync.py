"""pcopy sync: incremental copies, --delete, filters, dry run, hard links, --link-dest."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile

import pytest
from conftest import Dir, File, Link, make_tree, temp_files, tree_snapshot, walk_paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcopy
from pcopy import cli
from pcopy.errors import PcopyError


def sync(src, dst, **kw):
    kw.setdefault("backend", "thread")
    kw.setdefault("jobs", 2)
    return pcopy.sync(src, dst, **kw)


def inode_groups(root) -> set:
    """The hard-link structure: sets of relpaths that share an inode (only groups of 2+)."""
    groups: dict = {}
    for rel in walk_paths(root):
        st_ = os.lstat(os.path.join(root, rel))
        if stat.S_ISREG(st_.st_mode):
            groups.setdefault((st_.st_dev, st_.st_ino), set()).add(rel)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def assert_same_tree(src, dst):
    assert tree_snapshot(dst) == tree_snapshot(src)
    assert inode_groups(dst) == inode_groups(src)
    assert temp_files(dst) == []


@pytest.fixture
def trees(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.txt": b"alpha", "d/b.txt": b"beta", "d/e/c.txt": b"gamma", "link": Link("a.txt")})
    return src, dst


def test_first_sync_copies_and_second_is_a_no_op(trees):
    src, dst = trees
    report = sync(src, dst)
    assert (report.copied, report.symlinks, report.failed) == (3, 1, 0)
    assert_same_tree(src, dst)
    again = sync(src, dst)
    assert (again.copied, again.skipped, again.deleted) == (0, 4, 0)


def test_changed_file_is_recopied_with_itemized_reason(trees):
    src, dst = trees
    sync(src, dst)
    with open(src / "d" / "b.txt", "ab") as fh:
        fh.write(b" more")
    report = sync(src, dst)
    copied = [r for r in report.results if r.status == "copied"]
    assert [(r.relpath, r.item) for r in copied] == [("d/b.txt", ">f.st......")]
    assert (dst / "d" / "b.txt").read_bytes() == b"beta more"


def test_delete_removes_extraneous_entries_after_copying(trees):
    src, dst = trees
    sync(src, dst)
    make_tree(dst, {"old.txt": b"x", "olddir/deep/f": b"y"})
    kept = sync(src, dst)
    assert (dst / "old.txt").exists() and kept.deleted == 0
    report = sync(src, dst, delete=True)
    assert sorted(r.relpath for r in report.results if r.status == "deleted") == [
        "old.txt", "olddir", "olddir/deep", "olddir/deep/f"]
    assert report.deleted == 4
    assert_same_tree(src, dst)


def test_max_delete_refuses_before_deleting_anything(trees, capsys):
    src, dst = trees
    sync(src, dst)
    make_tree(dst, {"x1": b"1", "x2": b"2", "x3": b"3"})
    with pytest.raises(PcopyError, match="refusing to delete 3 entries"):
        sync(src, dst, delete=True, max_delete=2)
    assert all((dst / name).exists() for name in ("x1", "x2", "x3"))
    assert cli.main(["sync", str(src), str(dst), "--delete", "--max-delete", "2", "-q"]) == 1
    assert "more than --max-delete 2" in capsys.readouterr().err
    assert sync(src, dst, delete=True, max_delete=3).deleted == 3


def test_deletions_are_skipped_when_a_copy_failed(trees, io_fault):
    src, dst = trees
    sync(src, dst)
    (dst / "extra").write_bytes(b"keep me while something failed")
    (src / "a.txt").write_bytes(b"changed")
    io_fault("open", lambda path, flags, *a, dir_fd=None, **k: path == "a.txt" and dir_fd is not None
             and not flags & os.O_DIRECTORY and flags & os.O_ACCMODE == os.O_RDONLY,
             lambda: PermissionError(13, "Permission denied"))
    report = sync(src, dst, delete=True)
    assert report.failed == 1 and report.deleted == 0
    assert (dst / "extra").exists()
    assert any("deletions skipped" in w for w in report.warnings)


def test_file_replaced_by_directory_and_back(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"thing": b"a file"})
    sync(src, dst)
    os.unlink(src / "thing")
    make_tree(src, {"thing/inner": b"now a directory"})
    sync(src, dst, delete=True)
    assert (dst / "thing" / "inner").read_bytes() == b"now a directory"
    shutil.rmtree(src / "thing")
    make_tree(src, {"thing": b"a file again"})
    sync(src, dst, delete=True)
    assert (dst / "thing").read_bytes() == b"a file again"
    assert_same_tree(src, dst)


def test_symlink_planted_where_source_has_a_directory_is_replaced_not_followed(tmp_path):
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    make_tree(src, {"d/f": b"payload"})
    outside.mkdir()
    dst.mkdir()
    os.symlink(outside, dst / "d")
    report = sync(src, dst)
    assert report.failed == 0
    assert not os.path.islink(dst / "d") and (dst / "d" / "f").read_bytes() == b"payload"
    assert os.listdir(outside) == []


def test_copy_reports_a_planted_symlink_instead_of_writing_through_it(tmp_path):
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    make_tree(src, {"d/f": b"payload"})
    outside.mkdir()
    dst.mkdir()
    os.symlink(outside, dst / "d")
    report = pcopy.copytree(src, dst, backend="thread")
    assert report.failed >= 1
    assert os.listdir(outside) == [] and os.path.islink(dst / "d")


def test_dry_run_changes_nothing_and_lists_every_action(trees):
    src, dst = trees
    sync(src, dst)
    make_tree(dst, {"extra/x": b"x"})
    (src / "a.txt").write_bytes(b"alpha changed")
    make_tree(src, {"new/n.txt": b"new"})
    before = tree_snapshot(dst, atime=True)
    report = sync(src, dst, delete=True, dry_run=True)
    assert tree_snapshot(dst, atime=True) == before
    lines = {(r.item, r.relpath) for r in report.results if r.status in ("copied", "deleted", "created")}
    assert lines == {(">f.st......", "a.txt"), ("cd+++++++++", "new"), (">f+++++++++", "new/n.txt"),
                     ("*deleting  ", "extra/x"), ("*deleting  ", "extra")}
    assert report.dry_run and report.copied == 2 and report.deleted == 2


def test_dry_run_into_missing_destination_creates_nothing(trees, capsys):
    src, dst = trees
    assert cli.main(["sync", str(src), str(dst), "-n", "-v"]) == 0
    assert not dst.exists()
    err = capsys.readouterr().err
    assert ">f+++++++++ d/e/c.txt" in err and "cd+++++++++ d/" in err and "dry run" in err


def test_excluded_paths_are_neither_copied_nor_deleted(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"keep.txt": b"k", "x.log": b"log", "build/out": b"o", "sub/important.log": b"!"})
    make_tree(dst, {"old.log": b"dst-only log", "cache/c": b"c"})
    report = sync(src, dst, delete=True, exclude=["*.log", "build/", "cache/"], include=["important.log"])
    assert sorted(walk_paths(dst)) == ["cache", "cache/c", "keep.txt", "old.log", "sub", "sub/important.log"]
    assert report.failed == 0
    sync(src, dst, delete=True, exclude=["*.log", "build/", "cache/"], include=["important.log"],
         delete_excluded=True)
    assert sorted(walk_paths(dst)) == ["keep.txt", "sub", "sub/important.log"]


def test_exclude_from_file_and_cli_order(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.tmp": b"", "b.tmp": b"", "c.txt": b""})
    rules = tmp_path / "rules"
    rules.write_text("# temporary files\n*.tmp\n")
    assert cli.main(["sync", str(src), str(dst), "--exclude-from", str(rules), "--include", "b.tmp", "-q"]) == 0
    assert sorted(os.listdir(dst)) == ["b.tmp", "c.txt"]
    with pytest.raises(SystemExit) as exc:
        cli.main(["sync", str(src), str(dst), "--exclude-from", str(tmp_path / "missing")])
    assert exc.value.code == 2
    assert "cannot read pattern file" in capsys.readouterr().err


def test_checksum_finds_content_change_that_size_and_mtime_hide(trees):
    src, dst = trees
    sync(src, dst)
    target = dst / "d" / "b.txt"
    st_ = os.stat(target)
    target.write_bytes(b"BETA")  # same size
    os.utime(target, ns=(st_.st_atime_ns, st_.st_mtime_ns))
    assert sync(src, dst).copied == 0  # the quick check is fooled
    report = sync(src, dst, checksum=True)
    assert [(r.relpath, r.item) for r in report.results if r.status == "copied"] == [("d/b.txt", ">fc........")]
    assert target.read_bytes() == b"beta"
    assert sync(src, dst, checksum=True).copied == 0


def test_hard_links_stay_hard_links(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"shared", "d/other": b"x"})
    os.link(src / "a", src / "d" / "b")
    report = sync(src, dst)
    assert report.linked == 1
    assert os.stat(dst / "a").st_ino == os.stat(dst / "d" / "b").st_ino
    assert sync(src, dst).linked == 0  # already in place
    off = sync(src, tmp_path / "flat", hard_links=False)
    assert off.linked == 0
    assert os.stat(tmp_path / "flat" / "a").st_ino != os.stat(tmp_path / "flat" / "d" / "b").st_ino


def test_link_dest_shares_inodes_of_unchanged_files(tmp_path):
    src = tmp_path / "src"
    make_tree(src, {"same.txt": b"unchanged", "changes.txt": b"v1", "d/deep.txt": b"deep"})
    snap1, snap2 = tmp_path / "snap1", tmp_path / "snap2"
    sync(src, snap1)
    (src / "changes.txt").write_bytes(b"version 2")
    report = sync(src, snap2, link_dest=["../snap1"])  # relative to DST, like rsync
    assert report.linked == 2 and report.copied == 1
    assert os.stat(snap1 / "same.txt").st_ino == os.stat(snap2 / "same.txt").st_ino
    assert os.stat(snap1 / "d" / "deep.txt").st_ino == os.stat(snap2 / "d" / "deep.txt").st_ino
    assert os.stat(snap1 / "changes.txt").st_ino != os.stat(snap2 / "changes.txt").st_ino
    assert (snap2 / "changes.txt").read_bytes() == b"version 2"
    assert (snap1 / "changes.txt").read_bytes() == b"v1"


def test_link_dest_missing_directory_is_fatal(trees):
    src, dst = trees
    with pytest.raises(PcopyError, match="--link-dest directory does not exist"):
        sync(src, dst, link_dest=["/nonexistent/pcopy-snapshot"])
    assert not dst.exists()


def test_source_inside_destination_with_delete_is_refused(tmp_path):
    outer = tmp_path / "outer"
    make_tree(outer, {"inner/f": b"f", "g": b"g"})
    with pytest.raises(PcopyError, match="source is inside the destination"):
        sync(outer / "inner", outer, delete=True)
    assert (outer / "g").exists()


def test_log_file_json_and_verbose(trees, tmp_path, capsys):
    src, dst = trees
    log = tmp_path / "sync.log"
    assert cli.main(["sync", str(src), str(dst), "-v", "--json", "--log-file", str(log)]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert (data["copied"], data["symlinks"], data["failed"], data["failures"]) == (3, 1, 0, [])
    assert ">f+++++++++ d/e/c.txt" in err and "cL+++++++++ link" in err
    text = log.read_text()
    assert ">f+++++++++ a.txt" in text and "pcopy: copied 3 files (19 B), 1 symlink" in text
    assert cli.main(["sync", str(src), str(dst), "-q", "--log-file", str(log)]) == 0
    assert capsys.readouterr().err == ""
    assert log.read_text().count("pcopy sync") == 2  # appended, not overwritten


def test_nothing_to_do_starts_no_worker_process(trees, monkeypatch):
    src, dst = trees
    sync(src, dst, backend="process")
    from pcopy.runtime import process

    def refuse(*args, **kwargs):
        raise AssertionError("a worker pool was started for a no-op sync")

    monkeypatch.setattr(process.ProcessBackend, "submit", refuse)
    report = sync(src, dst, backend="process", delete=True)
    assert report.copied == 0 and report.skipped == 4


# --------------------------------------------------------------------------- property test

NAMES = st.sampled_from(["a", "b", "c", "d"])


@st.composite
def changes(draw):
    """A random edit of the source tree: (kind, path, payload)."""
    depth = draw(st.integers(1, 3))
    path = "/".join(draw(NAMES) for _ in range(depth))
    kind = draw(st.sampled_from(["write", "write", "delete", "chmod", "symlink", "mkdir", "hardlink", "touch"]))
    return kind, path, draw(st.binary(max_size=64)), draw(st.sampled_from([0o600, 0o644, 0o755, 0o444]))


def apply_change(root: str, change) -> None:
    kind, rel, payload, mode = change
    path = os.path.join(root, rel)
    parent = os.path.dirname(path)
    try:
        parts = rel.split("/")[:-1]
        for i in range(len(parts)):  # replace files and links on the way by directories
            ancestor = os.path.join(root, *parts[:i + 1])
            if os.path.islink(ancestor) or (os.path.lexists(ancestor) and not os.path.isdir(ancestor)):
                os.unlink(ancestor)
        os.makedirs(parent, exist_ok=True)
        if kind == "delete":
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.unlink(path)
            return
        if os.path.isdir(path) and not os.path.islink(path) and kind != "mkdir":
            shutil.rmtree(path)  # replace a directory by a file
        if kind == "write":
            if os.path.islink(path):
                os.unlink(path)
            with open(path, "wb") as fh:
                fh.write(payload)
            os.chmod(path, mode)
        elif kind == "chmod" and os.path.isfile(path) and not os.path.islink(path):
            os.chmod(path, mode)
        elif kind == "touch" and os.path.lexists(path):
            os.utime(path, ns=(1_500_000_000 * 10**9, 1_500_000_000 * 10**9 + len(payload)), follow_symlinks=False)
        elif kind == "symlink":
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink(payload.hex() or "target", path)  # retargets an existing link
        elif kind == "mkdir" and not os.path.lexists(path):
            os.mkdir(path)
        elif kind == "hardlink":
            first = os.path.join(root, "hl-source")
            if not os.path.isfile(first) or os.path.islink(first):
                with open(first, "wb") as fh:
                    fh.write(payload)
            if os.path.lexists(path):
                os.unlink(path)
            os.link(first, path)
    except (IsADirectoryError, NotADirectoryError, FileExistsError):
        pass  # an edit that does not fit the current shape: skip it


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(changes(), min_size=1, max_size=8), min_size=1, max_size=3))
def test_sync_delete_makes_dst_equal_to_src_after_any_changes(rounds):
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "src"), os.path.join(tmp, "dst")
        os.mkdir(src)
        for edits in rounds:
            for change in edits:
                apply_change(src, change)
            before = tree_snapshot(dst, atime=True) if os.path.exists(dst) else None
            dry = sync(src, dst, delete=True, dry_run=True)
            assert dry.failed == 0
            after = tree_snapshot(dst, atime=True) if os.path.exists(dst) else None
            assert after == before  # a dry run changes nothing
            report = sync(src, dst, delete=True)
            assert report.failed == 0, report.failures
            assert_same_tree(src, dst)
            assert sync(src, dst, delete=True).copied == 0  # and then it is a no-op


def test_property_helpers_detect_differences(tmp_path):
    """The comparison the property test relies on can fail: a changed mode, target or link is seen."""
    a, b = tmp_path / "a", tmp_path / "b"
    make_tree(a, {"f": File(b"x", mode=0o644), "l": Link("t"), "d": Dir()})
    make_tree(b, {"f": File(b"x", mode=0o600), "l": Link("t"), "d": Dir()})
    assert tree_snapshot(a) != tree_snapshot(b)
    os.link(a / "f", a / "g")
    assert inode_groups(a) == {frozenset({"f", "g"})} and inode_groups(b) == set()
