"""pcopy watch: real observers on real temporary trees.

Every wait has a generous timeout (WAIT seconds) so a loaded CI machine only
makes the tests slower, never flaky; nothing here asserts how fast a change
propagates (scripts/bench-watch measures that).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import Dir, Link, fd_name, make_tree, opens_source, oserror, temp_files, tree_snapshot

import pcopy
from pcopy import cli
from pcopy.errors import PcopyError, UsageError
from pcopy.model import results
from pcopy.watcher import session as watcher
from pcopy.watcher.events import FULL, coalesce, map_event

WAIT = 30.0  # seconds: generous, so a busy machine does not make a test fail


def wait_until(predicate, timeout: float = WAIT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def mirrored(src, dst) -> bool:
    try:
        return tree_snapshot(dst) == tree_snapshot(src) and not temp_files(dst)
    except FileNotFoundError:  # something vanished while we looked: not settled yet
        return False


def wait_mirrored(src, dst, what="DST to mirror SRC"):
    wait_until(lambda: mirrored(src, dst), what=what)


class Session:
    """``pcopy.watch`` running in a thread; stopped (and joined) on exit."""

    def __init__(self, src, dst, **kwargs) -> None:
        kwargs.setdefault("backend", "thread")
        kwargs.setdefault("jobs", 2)
        self.src, self.dst, self.kwargs = src, dst, kwargs
        self.stop = threading.Event()
        self.watching = threading.Event()
        self.results: list = []
        self.status = None
        self.report = None
        self.error = None
        self.thread = threading.Thread(target=self._run, name="test-watch-session")

    def _on_status(self, status) -> None:
        self.status = status
        if status.watching:
            self.watching.set()

    def _run(self) -> None:
        try:
            self.report = pcopy.watch(self.src, self.dst, stop_event=self.stop, on_status=self._on_status,
                                      on_result=self.results.append, **self.kwargs)
        except BaseException as exc:  # re-raised in the test's thread
            self.error = exc
        finally:
            self.watching.set()

    def __enter__(self) -> "Session":
        self.thread.start()
        assert self.watching.wait(WAIT), "watch session did not start"
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "watch session did not stop"
        if self.error is not None and exc[0] is None:
            raise self.error

    def changed(self, status="copied") -> set:
        return {r.relpath for r in self.results if r.status == status}


@pytest.fixture
def trees(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.txt": b"alpha", "d/b.txt": b"beta", "d/e/c.txt": b"gamma", "link": Link("a.txt"),
                    "empty": Dir()})
    return src, dst


# --------------------------------------------------------------------------- pure mapping


@pytest.mark.parametrize("event, expected", [
    (("created", False, "d/f"), [("d", False)]),
    (("modified", False, "f"), [("", False)]),
    (("closed", False, "d/e/f"), [("d/e", False)]),
    (("attrib", True, "d/e"), [("d/e", False)]),
    (("deleted", False, "d/f"), [("d", False)]),
    (("deleted", True, "d/e"), [("d", False)]),
    (("created", True, "d/e"), [("d/e", True), ("d", False)]),
    (("moved", False, "d/f", "x/g"), [("d", False), ("x", False)]),
    (("moved", True, "d/e", "x/e2"), [("d", False), ("x", False), ("x/e2", True)]),
    (("moved", True, None, "x/e2"), [("x", False), ("x/e2", True)]),  # moved in from outside
    (("moved", False, "d/f", None), [("d", False)]),  # moved out
    (("opened", False, "d/f"), []),
    (("closed_no_write", False, "d/f"), []),
])
def test_events_map_to_the_directories_to_re_read(event, expected):
    assert map_event(*event) == expected


@pytest.mark.parametrize("event", [("created", False, None), ("modified", True, None), ("moved", True, None, None),
                                   ("moved", True, "", "elsewhere")])
def test_events_that_cannot_be_mapped_ask_for_a_full_rescan(event):
    assert map_event(*event) is None


def test_coalesce_drops_what_a_recursive_ancestor_covers_and_sorts_parents_first():
    targets = [("d/e/f", False), ("d/e", True), ("d/e/g", True), ("d", False), ("x", False), ("x", True),
               ("x/y", False), ("b", False), ("d", False)]
    assert coalesce(targets) == [("b", False), ("d", False), ("d/e", True), ("x", True)]
    assert coalesce([("a", False), ("", True)]) == [FULL]
    assert coalesce([("", False), ("a", False)]) == [("", False), ("a", False)]


# --------------------------------------------------------------------------- event kinds


def test_initial_sync_then_created_file_and_directory_with_contents(trees):
    src, dst = trees
    with Session(src, dst) as session:
        assert mirrored(src, dst)  # the initial sync is done before watching starts
        (src / "new.txt").write_bytes(b"new")
        os.makedirs(src / "nd" / "deep")
        (src / "nd" / "deep" / "leaf").write_bytes(b"leaf")
        (src / "nd" / "top").write_bytes(b"top")
        wait_mirrored(src, dst)
    assert {"new.txt", "nd/deep/leaf", "nd/top"} <= session.changed()
    assert session.report.copied + session.report.symlinks >= 7 and session.report.failed == 0


def test_modified_and_chmodded_files_follow(trees):
    src, dst = trees
    with Session(src, dst):
        (src / "d" / "b.txt").write_bytes(b"beta, longer now")
        os.chmod(src / "a.txt", 0o600)
        wait_mirrored(src, dst)
        assert (dst / "d" / "b.txt").read_bytes() == b"beta, longer now"
        assert os.stat(dst / "a.txt").st_mode & 0o777 == 0o600


def test_deletions_follow_only_with_delete(trees):
    src, dst = trees
    with Session(src, dst, delete=True) as session:
        os.unlink(src / "a.txt")
        shutil.rmtree(src / "d" / "e")
        wait_mirrored(src, dst)
    assert {"a.txt", "d/e", "d/e/c.txt"} <= session.changed("deleted")


def test_without_delete_deleted_files_stay_in_dst(trees):
    src, dst = trees
    with Session(src, dst):
        os.unlink(src / "a.txt")
        (src / "marker").write_bytes(b"m")  # a later change, to know the deletion was seen
        wait_until(lambda: (dst / "marker").exists(), what="marker")
        assert (dst / "a.txt").read_bytes() == b"alpha"


def test_renames_and_moves_in_and_out_of_the_tree(trees, tmp_path):
    src, dst = trees
    outside = tmp_path / "outside"
    make_tree(outside, {"in.txt": b"from outside", "indir/x/y": b"deep outside"})
    with Session(src, dst, delete=True):
        os.rename(src / "a.txt", src / "renamed.txt")  # rename in place
        os.rename(src / "d" / "b.txt", src / "empty" / "b.txt")  # move between directories
        os.rename(outside / "in.txt", src / "d" / "in.txt")  # file moved in
        os.rename(outside / "indir", src / "indir")  # directory with contents moved in
        os.rename(src / "d" / "e", outside / "e")  # directory moved out
        wait_mirrored(src, dst)
    assert not (dst / "d" / "e").exists()
    assert (dst / "indir" / "x" / "y").read_bytes() == b"deep outside"


def test_rename_of_a_directory_with_contents(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {f"old/sub{i}/f{j}": f"{i}-{j}".encode() for i in range(5) for j in range(20)})
    with Session(src, dst, delete=True) as session:
        os.rename(src / "old", src / "new")
        wait_mirrored(src, dst)
    assert not (dst / "old").exists()
    assert "new" in session.changed(results.MOVED)  # renamed in DST, not copied again (tests/test_moves.py)
    assert not {f"new/sub{i}/f{j}" for i in range(5) for j in range(20)} & session.changed()


def test_editor_save_through_a_temporary_file_and_rename(trees):
    src, dst = trees
    with Session(src, dst, delete=True):
        for version in range(3):
            tmp = src / ".a.txt.swp"
            tmp.write_bytes(b"edited %d" % version)
            os.replace(tmp, src / "a.txt")
            wait_mirrored(src, dst, what=f"save {version}")
        assert (dst / "a.txt").read_bytes() == b"edited 2"
        assert not (dst / ".a.txt.swp").exists()


def test_file_appended_to_while_watched_ends_identical(trees):
    src, dst = trees
    with Session(src, dst):
        with open(src / "growing.log", "ab") as log:
            for i in range(60):
                log.write(b"line %d " % i * 50 + b"\n")
                log.flush()
                time.sleep(0.01)
        wait_mirrored(src, dst)
        assert not temp_files(dst)


def test_burst_of_files_created_in_a_loop(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    os.makedirs(src)
    with Session(src, dst) as session:
        for d in range(4):
            os.makedirs(src / f"burst{d}")
            for i in range(500):
                with open(src / f"burst{d}" / f"f{i:04d}", "wb") as fh:
                    fh.write(b"%d-%d" % (d, i))
        wait_mirrored(src, dst)
    assert len(session.changed()) == 2000
    assert session.status.cycles < 2000  # batched, not one batch per event
    assert session.report.failed == 0


def test_symlinks_and_excluded_paths(trees):
    src, dst = trees
    with Session(src, dst, exclude=["*.tmp"]):
        os.symlink("d/b.txt", src / "newlink")
        (src / "scratch.tmp").write_bytes(b"ignored")
        (src / "kept").write_bytes(b"kept")
        wait_until(lambda: (dst / "kept").exists(), what="kept")
        wait_until(lambda: os.path.islink(dst / "newlink"), what="newlink")
        assert os.readlink(dst / "newlink") == "d/b.txt"
        assert not (dst / "scratch.tmp").exists()


# --------------------------------------------------------------------------- errors and fall-backs


def test_file_error_is_reported_then_retried_with_the_next_event(trees, io_fault):
    src, dst = trees
    failing = [True]
    io_fault("open", lambda *a, **k: failing[0] and opens_source("locked.txt")(*a, **k), oserror(errno.EACCES))
    with Session(src, dst) as session:
        (src / "locked.txt").write_bytes(b"locked")
        wait_until(lambda: any(r.relpath == "locked.txt" and r.status == "failed" for r in session.results),
                   what="the failure")
        wait_until(lambda: session.status.errors == 1, what="status errors")
        failing[0] = False
        (src / "d" / "other").write_bytes(b"another event")  # any event retries the failed file
        wait_mirrored(src, dst)
        wait_until(lambda: session.status.errors == 0, what="errors cleared")
    assert session.report.failed == 0


def test_source_changed_while_copied_is_retried_without_a_new_event(trees, monkeypatch):
    src, dst = trees
    real_fstat = os.fstat
    calls = {"n": 0}

    def fstat(fd):
        st = real_fstat(fd)
        if fd_name(fd) == "busy.bin" and calls["n"] < 6:  # 3 attempts of one batch: before != after
            calls["n"] += 1
            if calls["n"] % 2 == 0:
                return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid,
                                       st.st_size + 1, st.st_atime, st.st_mtime, st.st_ctime))
        return st

    with Session(src, dst) as session:
        monkeypatch.setattr(os, "fstat", fstat)
        (src / "busy.bin").write_bytes(b"busy")
        wait_until(lambda: (dst / "busy.bin").exists(), what="busy.bin copied on a retry")
        wait_mirrored(src, dst)
    failed = [r for r in session.results if r.relpath == "busy.bin" and r.status == "failed"]
    assert failed and failed[0].reason == results.SOURCE_CHANGED


def test_lost_events_lead_to_a_full_rescan(trees, monkeypatch):
    src, dst = trees
    with Session(src, dst) as session:
        monkeypatch.setattr(watcher, "map_event", lambda *a: [])  # every event is "lost"
        (src / "unseen.txt").write_bytes(b"its events were dropped")
        # what watchdog logs when the kernel's inotify queue overflowed:
        overflow = "Inotify queue overflowed; filesystem events were lost"
        logging.getLogger("watchdog.observers.inotify_c").warning(overflow)
        wait_mirrored(src, dst)
        assert any("lost" in w for w in session.status.warnings)


def test_rescan_interval_catches_changes_without_events(trees, monkeypatch):
    src, dst = trees
    with Session(src, dst, rescan_interval=0.5):
        monkeypatch.setattr(watcher, "map_event", lambda *a: [])
        (src / "unseen.txt").write_bytes(b"no event for this one")
        wait_mirrored(src, dst)


def test_polling_observer(trees):
    src, dst = trees
    with Session(src, dst, poll=True, poll_interval=0.2, delete=True) as session:
        assert session.status.observer == "polling"
        (src / "polled.txt").write_bytes(b"seen by polling")
        os.rename(src / "d", src / "d2")
        os.utime(src / "empty", ns=(10**18, 10**18))
        wait_mirrored(src, dst)


def test_falls_back_to_polling_when_native_events_are_unavailable(trees, monkeypatch):
    import watchdog.observers

    class NoInotify:
        def __init__(self, *a, **k):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watchdog.observers, "Observer", NoInotify)
    src, dst = trees
    with Session(src, dst, poll_interval=0.2) as session:
        assert session.status.observer == "polling"
        assert any("polling" in w and "max_user_watches" in w for w in session.status.warnings)
        (src / "new.txt").write_bytes(b"new")
        wait_mirrored(src, dst)


def test_dst_removed_while_watching_is_rebuilt(trees):
    src, dst = trees
    with Session(src, dst):
        shutil.rmtree(dst)
        (src / "poke").write_bytes(b"an event")
        wait_mirrored(src, dst)


def test_fatal_and_usage_errors(tmp_path):
    with pytest.raises(PcopyError, match="cannot read source"):
        pcopy.watch(tmp_path / "missing", tmp_path / "dst")
    src = tmp_path / "src"
    make_tree(src, {"f": b"x"})
    with pytest.raises(PcopyError, match="inside the source"):
        pcopy.watch(src, src / "dst")
    with pytest.raises(UsageError):
        pcopy.watch(src, tmp_path / "dst", debounce=-1)
    with pytest.raises(UsageError):
        pcopy.watch(src, tmp_path / "dst", backend="nope")
    assert not (tmp_path / "dst").exists()  # nothing created by a refused run


def test_stop_event_stops_a_session_in_a_thread_and_returns_the_report(trees):
    src, dst = trees
    session = Session(src, dst)
    with session:
        pass
    assert not session.thread.is_alive()
    assert session.report is not None and session.report.copied == 3 and session.report.ok


# --------------------------------------------------------------------------- CLI and signals


def test_cli_refuses_dry_run_and_manifest(trees, capsys):
    src, dst = trees
    for extra in (["--dry-run"], ["--manifest", str(dst) + ".xxh"]):
        with pytest.raises(SystemExit) as info:
            cli.main(["watch", str(src), str(dst), *extra])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"unrecognized arguments: {extra[0]}" in err and "usage: pcopy watch" in err
    assert not dst.exists()


def test_importing_pcopy_does_not_import_watchdog():
    code = "import sys, pcopy; print('watchdog' in sys.modules, callable(pcopy.watch))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def _children(pid: int) -> set:
    kids = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                kids.update(int(p) for p in fh.read().split())
        except OSError:
            pass
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _read_until(proc, text: str, timeout: float = WAIT) -> str:
    """Read the child's stderr until ``text`` shows up."""
    seen = b""
    deadline = time.monotonic() + timeout
    fd = proc.stderr.fileno()
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise AssertionError(f"{text!r} not seen on stderr: {seen.decode(errors='replace')}")
        if select.select([fd], [], [], min(left, 0.5))[0]:
            seen += os.read(fd, 65536)
    return seen.decode(errors="replace")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_watch_quickly_with_no_temp_files_or_children(tmp_path, signum):
    """Ctrl-C and SIGTERM (systemd's stop) are how a watch session ends: exit 0 and its summary."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.txt": b"alpha"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "pcopy", "watch", str(src), str(dst), "-v", "--no-progress",
                             "--backend", "process", "-j", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        _read_until(proc, "watching")
        children = _children(proc.pid)
        assert children, "process workers were started"
        (src / "new.txt").write_bytes(b"new")
        _read_until(proc, ">f+++++++++ new.txt")  # -v: one line per applied change
        with open(src / "big.bin", "wb") as fh:  # something in flight when the signal lands
            fh.truncate(256 << 20)
        time.sleep(0.1)
        proc.send_signal(signum)
        assert proc.wait(timeout=2.5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode(errors="replace")
    assert "interrupted" not in err and "Traceback" not in err
    assert re.search(r"^pcopy: copied [23] files .* \(watch session(; 1 file in flight discarded)?\)$", err, re.M), err
    assert temp_files(dst) == []
    assert not [pid for pid in children if _alive(pid)]


def test_targeted_run_does_not_walk_through_a_directory_replaced_by_a_symlink(tmp_path):
    """A watched directory swapped for a symlink before its batch runs: the link is copied, not followed."""
    from pcopy.options import Options
    from pcopy.runtime import backend, pool
    from pcopy.transfer import engine

    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    make_tree(outside, {"secret/deep/file": b"outside the tree"})
    make_tree(src, {"keep.txt": b"k", "x": Link(str(outside)), "y/z": Link(str(outside))})
    options = Options(src=str(src), dst=str(dst), replace=True, delete=True, jobs=2, backend="thread")
    shared = pool.BoundedPool(backend.make_backend("thread", 2), max_in_flight=8)
    try:
        report = engine.copy_tree(options, keep_results=True, pool=shared,
                                  targets=[("", False), ("x", True), ("y/z", True)])
        assert report.failed == 0
        again = engine.copy_tree(options, keep_results=True, pool=shared, targets=[("y", False), ("x", True)])
    finally:
        shared.close()
    assert again.failed == 0
    assert os.readlink(dst / "x") == str(outside) and os.readlink(dst / "y" / "z") == str(outside)
    assert not any("secret" in r.relpath for r in report.results + again.results)
