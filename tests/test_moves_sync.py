"""sync --track-renames, and the property test of issue 15: random trees, random renames, moves, swaps
and edits, applied offline before a ``sync --track-renames`` or while watching; DST then equals SRC
(``rsync -anic`` lists nothing) and the bytes written (the report's) are at most the bytes of the
files whose content is new at their name."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import make_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_watch import Session, wait_mirrored

import pcopy
from pcopy import cli
from pcopy.errors import UsageError
from pcopy.model import results

KIB = 1024


def rsync_differences(src, dst) -> str:
    out = subprocess.run(["rsync", "-anic", "--delete", f"{src}/", f"{dst}/"], capture_output=True, text=True,
                         check=True).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith(".d"))  # dir times: not content


need_rsync = pytest.mark.skipif(shutil.which("rsync") is None, reason="needs rsync")


@pytest.fixture
def synced(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"photos/2024/a.jpg": os.urandom(40 * KIB), "photos/2024/b.jpg": os.urandom(41 * KIB),
                    "docs/x.txt": b"same", "docs/y.txt": b"same", "keep.txt": b"keep"})
    pcopy.sync(src, dst)
    return src, dst


def test_renamed_directory_and_files_are_renamed_not_copied(synced):
    src, dst = synced
    inode = os.lstat(dst / "photos/2024/a.jpg").st_ino
    os.rename(src / "photos", src / "pictures")
    os.rename(src / "docs/x.txt", src / "x-moved.txt")
    report = pcopy.sync(src, dst, delete=True, track_renames=True)
    assert report.bytes_copied == 0 and report.copied == 0
    assert report.renamed == 3
    assert os.lstat(dst / "pictures/2024/a.jpg").st_ino == inode
    moved = {r.relpath: r.message for r in report.results if r.status == results.MOVED}
    assert moved["pictures/2024/a.jpg"] == "photos/2024/a.jpg"
    assert moved["x-moved.txt"] == "docs/x.txt"  # same size + mtime as docs/y.txt: told apart by xxh128
    assert not (dst / "photos").exists()
    if shutil.which("rsync"):
        assert rsync_differences(src, dst) == ""


def test_dry_run_shows_the_renames_and_changes_nothing(synced, capsys):
    src, dst = synced
    os.rename(src / "photos", src / "pictures")
    code = cli.main(["sync", str(src), str(dst), "--delete", "--track-renames", "-n"])
    err = capsys.readouterr().err
    assert code == 0
    assert ">f......... pictures/2024/a.jpg <= photos/2024/a.jpg" in err
    assert ">f+++++++++" not in err  # the copy the rename replaces is not shown
    assert "would copy 0 files" in err and "rename 2" in err
    assert (dst / "photos/2024/a.jpg").exists() and not (dst / "pictures").exists()


def test_a_dst_file_that_differs_is_copied_not_renamed(synced):
    src, dst = synced
    os.rename(src / "keep.txt", src / "kept.txt")
    (dst / "keep.txt").write_bytes(b"KEEP")  # same size, other mtime: not the file SRC moved
    report = pcopy.sync(src, dst, delete=True, track_renames=True)
    assert report.renamed == 0 and report.copied == 1
    assert (dst / "kept.txt").read_bytes() == b"keep"


def test_track_renames_by_hash_insists_on_equal_content(synced):
    src, dst = synced
    os.rename(src / "keep.txt", src / "kept.txt")
    st = os.lstat(dst / "keep.txt")
    (dst / "keep.txt").write_bytes(b"KEEP")
    os.utime(dst / "keep.txt", ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as SRC's, content not
    report = pcopy.sync(src, dst, delete=True, track_renames="hash")
    assert report.renamed == 0
    assert (dst / "kept.txt").read_bytes() == b"keep"


def test_cli_spelling_and_usage_errors(synced, capsys):
    src, dst = synced
    os.rename(src / "keep.txt", src / "kept.txt")
    assert cli.main(["sync", str(src), str(dst), "--delete", "--track-renames-by", "hash", "-q"]) == 0
    assert (dst / "kept.txt").exists() and not (dst / "keep.txt").exists()
    assert cli.main(["sync", str(src), str(dst), "--track-renames"]) == 2
    assert "--track-renames needs --delete" in capsys.readouterr().err
    with pytest.raises(UsageError):
        pcopy.sync(src, dst, delete=True, track_renames=True, backup=True)
    before = sorted(os.listdir(dst))
    for sources in ([str(src), str(src)], [str(src / "kept.txt")]):  # several SRCs, a file SRC: refused, not ignored
        assert cli.main(["sync", *sources, str(dst), "--delete", "--track-renames", "-q"]) == 2
        assert "--track-renames takes one SRC directory" in capsys.readouterr().err
    assert sorted(os.listdir(dst)) == before


# --------------------------------------------------------------------------- the property test

NAMES = ["a", "b", "c", "d"]
DIRS = ["", "p", "p/q", "r"]


def _tree(draw_sizes) -> dict:
    spec, n = {}, 0
    for d in DIRS:
        for name in NAMES:
            size = draw_sizes[n % len(draw_sizes)]
            n += 1
            if size:
                spec[os.path.join(d, name) if d else name] = os.urandom(size)
    return spec


operation = st.tuples(st.sampled_from(["rename", "move", "swap", "edit", "dir"]), st.integers(0, 63),
                      st.integers(0, 63))


def _apply(src, ops, new_dirs: bool = True) -> None:
    """Renames, moves, swaps through a temp name, edits and directory renames, applied in SRC.

    ``new_dirs=False``: no move into a directory made for it (while watching, inotify may not watch it yet)."""
    for kind, i, j in ops:
        files = sorted(p for p in _files(src))
        if not files:
            return
        a, b = files[i % len(files)], files[j % len(files)]
        if kind == "rename":
            os.rename(src / a, src / (a + "-r"))
        elif kind == "move":
            target = src / DIRS[j % len(DIRS)] / f"m{i}"
            if not target.exists() and (new_dirs or target.parent.is_dir()):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(src / a, target)
        elif kind == "swap" and a != b:
            os.rename(src / a, src / "swap.tmp")
            os.rename(src / b, src / a)
            os.rename(src / "swap.tmp", src / b)
        elif kind == "edit":
            (src / a).write_bytes(os.urandom(300 + i))
        elif kind == "dir":
            d = DIRS[1 + i % (len(DIRS) - 1)]
            if (src / d).is_dir() and not (src / f"{d}-moved").exists():
                os.rename(src / d, src / f"{d}-moved")


def _files(root) -> dict:
    found = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                found[os.path.relpath(path, root)] = fh.read()
    return found


def _budget(before: dict, after: dict, offline: bool = False) -> int:
    """Bytes of the files whose content is new at their name: new content, or a name that held other bytes.

    Offline (rclone's rule) only a file that would be deleted can become one that would be copied: content
    is free at a name DST lacks, coming from a name SRC lost (a swap between two kept names is copied)."""
    if offline:
        contents = {data for path, data in before.items() if path not in after}
        return sum(len(data) for path, data in after.items()
                   if (path in before and before[path] != data) or (path not in before and data not in contents))
    contents = set(before.values())
    return sum(len(data) for path, data in after.items()
               if data not in contents or (path in before and before[path] != data))


def _distinct_mtimes(root) -> None:
    for n, path in enumerate(sorted(_files(root))):
        os.utime(root / path, ns=(1_600_000_000_000_000_000 + n, 1_600_000_000_000_000_000 + n * 1000))


sizes = st.lists(st.sampled_from([0, 64, 700, 2 * KIB, 5 * KIB]), min_size=3, max_size=8)
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@need_rsync
@PROPERTY
@given(sizes=sizes, ops=st.lists(operation, min_size=1, max_size=6))
def test_property_offline_moves_then_sync_track_renames(tmp_path_factory, sizes, ops):
    base = tmp_path_factory.mktemp("offline")
    src, dst = base / "src", base / "dst"
    make_tree(src, _tree(sizes))
    _distinct_mtimes(src)
    pcopy.sync(src, dst, backend="thread")
    before = _files(src)
    _apply(src, ops)
    report = pcopy.sync(src, dst, delete=True, track_renames=True, backend="thread")
    assert rsync_differences(src, dst) == ""
    assert report.bytes_copied <= _budget(before, _files(src), offline=True)


@need_rsync
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=sizes, ops=st.lists(operation, min_size=1, max_size=6))
def test_property_moves_while_watching(tmp_path_factory, sizes, ops):
    base = tmp_path_factory.mktemp("watched")
    src, dst = base / "src", base / "dst"
    make_tree(src, _tree(sizes))
    _distinct_mtimes(src)
    before = _files(src)
    with Session(src, dst, delete=True) as session:
        _apply(src, ops, new_dirs=False)
        wait_mirrored(src, dst)
    assert rsync_differences(src, dst) == ""
    initial = sum(len(data) for data in before.values())
    assert session.report.bytes_copied - initial <= _budget(before, _files(src))


def test_track_renames_by_hash_takes_digests_from_the_hash_cache(synced, tmp_path, monkeypatch):
    from pcopy.content import cache, digest

    src, dst = synced
    monkeypatch.setenv("PCOPY_CACHE", str(tmp_path / "cache.sqlite3"))
    monkeypatch.setattr(cache, "RACY_NS", 0)  # the files were just made: cache them anyway
    os.rename(src / "photos", src / "pictures")
    pcopy.hash_tree(src)
    pcopy.hash_tree(dst)

    def no_read(*args, **kwargs):
        raise AssertionError("a digest was read although the hash cache held it")

    monkeypatch.setattr(digest, "digest_at", no_read)
    report = pcopy.sync(src, dst, delete=True, track_renames="hash")
    assert report.renamed == 2 and report.copied == 0


# --------------------------------------------------------------------------- --link-dest snapshots


@pytest.fixture
def snapshot(tmp_path):
    """SRC and yesterday's snapshot of it; today SRC's photos folder is renamed and a file moved."""
    src, prev = tmp_path / "src", tmp_path / "snap-1"
    make_tree(src, {"photos/2024/a.jpg": os.urandom(40 * KIB), "photos/2024/b.jpg": os.urandom(41 * KIB),
                    "docs/x.txt": b"x" * 300, "keep.txt": b"keep"})
    pcopy.sync(src, prev)
    os.rename(src / "photos", src / "pictures")
    os.rename(src / "docs/x.txt", src / "x-moved.txt")
    return src, prev, tmp_path / "snap-2"


def test_a_new_snapshot_links_renamed_files_from_the_link_dest_tree(snapshot):
    src, prev, new = snapshot
    report = pcopy.sync(src, new, delete=True, track_renames=True, link_dest=[prev])
    assert report.ok and report.bytes_copied == 0 and report.copied == 0, report.results
    for now, before in [("pictures/2024/a.jpg", "photos/2024/a.jpg"), ("pictures/2024/b.jpg", "photos/2024/b.jpg"),
                        ("x-moved.txt", "docs/x.txt"), ("keep.txt", "keep.txt")]:
        assert os.lstat(new / now).st_ino == os.lstat(prev / before).st_ino, now
    linked = {r.relpath: r.message for r in report.results if r.status == results.LINKED}
    assert linked["pictures/2024/a.jpg"] == str(prev / "photos/2024/a.jpg")
    assert (prev / "photos/2024/a.jpg").exists()  # the old snapshot is never changed
    if shutil.which("rsync"):
        assert rsync_differences(src, new) == ""


def test_a_renamed_file_whose_mode_changed_is_copied_not_linked(snapshot):
    src, prev, new = snapshot
    os.chmod(src / "x-moved.txt", 0o600)
    report = pcopy.sync(src, new, delete=True, track_renames=True, link_dest=[prev])
    assert report.ok
    assert os.lstat(new / "x-moved.txt").st_ino != os.lstat(prev / "docs/x.txt").st_ino
    assert os.stat(prev / "docs/x.txt").st_mode & 0o777 == 0o644  # linking would have changed it
    assert (new / "x-moved.txt").read_bytes() == b"x" * 300
    assert os.lstat(new / "pictures/2024/a.jpg").st_ino == os.lstat(prev / "photos/2024/a.jpg").st_ino


def test_a_dry_run_with_link_dest_shows_the_links_and_writes_nothing(snapshot):
    src, prev, new = snapshot
    report = pcopy.sync(src, new, delete=True, track_renames=True, link_dest=[prev], dry_run=True)
    assert {r.relpath for r in report.results if r.status == results.LINKED} >= {"pictures/2024/a.jpg", "x-moved.txt"}
    assert not new.exists()
