"""Directory metadata set by the workers, depth level by depth level (transfer.dirmeta)."""

from __future__ import annotations

import os
import threading

import pytest
from conftest import Dir, make_tree, tree_snapshot

import pcopy
from pcopy.transfer import dirmeta


def _deep_tree(src, dirs: int = 150) -> None:
    """Enough directories for the pool to do them (more than IN_PARENT_BELOW), three levels deep,
    with read-only and private modes and a distinct time each (make_tree sets them)."""
    spec: dict = {}
    for i in range(dirs):
        top, mid = f"t{i % 5}", f"t{i % 5}/m{i % 15}"
        spec[f"{mid}/d{i}/f"] = b"x" * i
        spec[f"{mid}/d{i}"] = Dir(0o555 if i % 3 == 0 else 0o700)
        spec[mid] = Dir(0o555)
        spec[top] = Dir(0o750)
    make_tree(src, spec)


def test_levels_go_deepest_first_in_bounded_chunks():
    dirs = ["", "a", "a/b", "c", *[f"a/b/{i}" for i in range(dirmeta.CHUNK_DIRS + 3)]]
    levels = dirmeta.levels(dirs, {"c"})
    depths = [{reldir.count("/") + 1 if reldir else 0 for chunk in level for reldir, _ in chunk} for level in levels]
    assert depths == [{3}, {2}, {1}, {0}]
    assert [len(chunk) for chunk in levels[0]] == [dirmeta.CHUNK_DIRS, 3]
    assert ("c", True) in levels[2][0] and ("a", False) in levels[2][0]
    assert sorted(r for level in levels for chunk in level for r, _ in chunk) == sorted(dirs)


def test_workers_set_every_directory_s_mode_and_times(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _deep_tree(src)
    threads = set()
    real = dirmeta.run_dirs

    def spy(options, chunk):
        threads.add(threading.get_ident())
        return real(options, chunk)

    monkeypatch.setattr(dirmeta, "run_dirs", spy)
    report = pcopy.copytree(src, dst, backend="thread", jobs=2)
    assert report.ok, report.failures
    assert threads and threading.get_ident() not in threads  # the pool's threads did it
    assert tree_snapshot(dst) == tree_snapshot(src)


def test_process_workers_give_the_same_tree_as_the_source(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _deep_tree(src)
    report = pcopy.copytree(src, dst, jobs=2)
    assert report.ok, report.failures
    assert tree_snapshot(dst) == tree_snapshot(src)
    # a second sync finds every directory as it should be: nothing itemized, nothing changed
    again = pcopy.sync(src, dst, jobs=2, keep_results=True)
    assert again.ok and [r for r in again.results if r.status != "skipped"] == []
    assert tree_snapshot(dst) == tree_snapshot(src)


def test_a_chunk_whose_worker_fails_is_done_by_the_parent(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _deep_tree(src)
    calls = []

    def broken(options, chunk):
        calls.append(len(chunk))
        raise RuntimeError("worker bug")

    monkeypatch.setattr(dirmeta, "run_dirs", broken)
    report = pcopy.copytree(src, dst, backend="thread", jobs=2)
    assert calls and report.ok, report.failures
    assert tree_snapshot(dst) == tree_snapshot(src)


def test_a_directory_whose_metadata_cannot_be_set_is_reported_once(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _deep_tree(src)
    real_utime = os.utime
    victim = {}

    def failing_utime(target, *args, **kwargs):
        if isinstance(target, int) and os.path.realpath(f"/proc/self/fd/{target}") == victim.get("path"):
            raise PermissionError(1, "Operation not permitted")
        return real_utime(target, *args, **kwargs)

    victim["path"] = str(dst / "t1" / "m1" / "d1")
    monkeypatch.setattr(os, "utime", failing_utime)
    report = pcopy.copytree(src, dst, backend="thread", jobs=2)
    assert [(f.relpath, f.kind) for f in report.failures] == [("t1/m1/d1", "dir")]
    assert "cannot set directory metadata" in report.failures[0].message
    snap, want = tree_snapshot(dst), tree_snapshot(src)
    assert {rel for rel in want if snap.get(rel) != want[rel]} == {"t1/m1/d1"}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to copy another user's tree")
def test_owner_is_set_by_the_workers(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _deep_tree(src)
    for i, (dirpath, _, _) in enumerate(os.walk(src)):
        os.chown(dirpath, 1000 + i % 3, 2000 + i % 2)
    report = pcopy.copytree(src, dst, jobs=2)
    assert report.ok, report.failures
    owners = {}
    for root in (src, dst):
        owners[root] = {os.path.relpath(d, root): (os.stat(d).st_uid, os.stat(d).st_gid) for d, _, _ in os.walk(root)}
    assert owners[src] == owners[dst]
