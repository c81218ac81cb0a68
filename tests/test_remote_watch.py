"""``pcopy watch SRC host:DST`` through the module's private sshd (tests/conftest.py ``server``).

The remote is this machine reached through ssh: DST is checked directly while polling and with
``rsync -anic --delete`` through the same sshd once each change has landed. Every wait polls a
condition with a generous bound; nothing asserts a latency (scripts/bench-watch measures it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import sshd_helpers as sshd
from conftest import Dir, Link, make_tree, temp_files, tree_snapshot
from fault_helpers import env, pcopy_cmd
from remote_helpers import rsync_diff, wait_for

pytestmark = pytest.mark.skipif(sshd.missing() is not None, reason=sshd.missing() or "")
H = sshd.HOST
WAIT = 30.0


class Watch:
    """``pcopy watch SRC host:DST`` as a process; its stderr collected by a thread."""

    def __init__(self, server, src, dst, *args) -> None:
        self.proc = subprocess.Popen(pcopy_cmd("watch", "--no-progress", *args, src, f"{H}:{dst}", *server.args()),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd="/")
        self.err = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for chunk in iter(lambda: os.read(self.proc.stderr.fileno(), 65536), b""):
            self.err += chunk

    @property
    def text(self) -> str:
        return self.err.decode("utf-8", "replace")

    def wait_text(self, text: str, timeout: float = WAIT) -> None:
        assert wait_for(lambda: text in self.text or self.proc.poll() is not None, timeout) and text in self.text, \
            self.text

    def stop(self, signum=signal.SIGINT, timeout: float = 10) -> tuple:
        self.proc.send_signal(signum)
        self.proc.wait(timeout=timeout)  # not communicate(): it would race the reader for stderr
        self.reader.join(5)
        return self.proc.returncode, self.proc.stdout.read().decode()  # --json: a line, within a pipe buffer

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _mirrored(src, dst) -> bool:
    try:
        return tree_snapshot(dst) == tree_snapshot(src) and not temp_files(dst)
    except FileNotFoundError:
        return False


def converges(server, src, dst, what: str) -> None:
    assert wait_for(lambda: _mirrored(src, dst), WAIT), what
    assert rsync_diff(server, src, dst, "--delete") == "", what


def _ssh_children(pid: int) -> list:
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            kids.extend(int(p) for p in fh.read().split())
    return [k for k in kids if os.path.basename(os.readlink(f"/proc/{k}/exe")) == "ssh"]


def test_each_kind_of_change_converges(server, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.txt": b"alpha", "d/b.txt": b"beta", "d/e/c.txt": b"gamma", "link": Link("a.txt"),
                    "empty": Dir(), "d/skip.log": b"excluded"})
    with Watch(server, src, dst, "-v", "--delete", "--exclude", "*.log") as watch:
        watch.wait_text("watching")
        assert wait_for(lambda: (dst / "d" / "b.txt").exists(), WAIT) and not (dst / "d" / "skip.log").exists()
        (src / "d" / "skip.log").unlink()  # compared without it from here on (d's times arrive with the next step)
        (src / "d" / "new.txt").write_bytes(b"new")
        converges(server, src, dst, "initial sync, then a created file")
        steps = [
            ("modify", lambda: (src / "a.txt").write_bytes(b"alpha, longer")),
            ("delete", lambda: (src / "d" / "b.txt").unlink()),
            ("mkdir with contents", lambda: make_tree(src / "m", {"x/y.txt": b"y", "z.txt": b"z"})),
            ("rmdir", lambda: (src / "empty").rmdir()),
            ("symlink", lambda: os.symlink("d/e", src / "ln")),
            ("rename a file", lambda: os.rename(src / "d" / "new.txt", src / "m" / "renamed.txt")),
            ("rename a directory", lambda: os.rename(src / "d" / "e", src / "moved")),
            ("chmod a file", lambda: os.chmod(src / "a.txt", 0o600)),
            ("chmod a directory", lambda: os.chmod(src / "m", 0o750)),
        ]
        for what, change in steps:
            inodes = {p: os.lstat(dst / p).st_ino for p in ("d/new.txt", "d/e/c.txt") if os.path.lexists(dst / p)}
            change()
            converges(server, src, dst, what)
            if what == "rename a file":  # a rename on the remote, not a copy: the same inode under the new name
                assert os.lstat(dst / "m" / "renamed.txt").st_ino == inodes["d/new.txt"]
            if what == "rename a directory":
                assert os.lstat(dst / "moved" / "c.txt").st_ino == inodes["d/e/c.txt"]
        (src / "more.log").write_bytes(b"excluded: never sent")
        (src / "after.txt").write_bytes(b"after")  # lands after the excluded file's event was handled
        assert wait_for(lambda: (dst / "after.txt").exists(), WAIT)
        assert not (dst / "more.log").exists()
        code, _ = watch.stop()
    assert code == 0, watch.text
    assert "*deleting   d/b.txt" in watch.text
    assert ">f......... m/renamed.txt <= d/new.txt" in watch.text and "cd......... moved/ <= d/e" in watch.text
    assert "Traceback" not in watch.text


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_both_ends_and_prints_the_session_report(server, tmp_path, signum):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.txt": b"alpha"})
    log = tmp_path / "log.jsonl"
    with Watch(server, src, dst, "--json", "--json-log", log) as watch:
        watch.wait_text("watching")
        assert sshd.serve_pids(server)
        (src / "b.txt").write_bytes(b"beta")
        assert wait_for(lambda: (dst / "b.txt").exists(), WAIT)
        with open(src / "big.bin", "wb") as fh:  # something in flight when the signal lands, maybe
            fh.write(os.urandom(64 << 20))
        started = time.monotonic()
        code, out = watch.stop(signum)
        assert time.monotonic() - started < 2.5
    assert code == 0, watch.text
    assert wait_for(lambda: not sshd.serve_pids(server), 2), sshd.serve_pids(server)
    assert "(watch session" in watch.text and "Traceback" not in watch.text
    assert json.loads(out)["copied"] >= 2
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[0]["action"] == "start" and lines[0]["dst"] == f"{H}:{dst}"
    assert {"action": "copy", "path": "b.txt"}.items() <= next(x for x in lines if x.get("path") == "b.txt").items()
    assert lines[-1]["action"] == "summary" and lines[-1]["copied"] >= 2
    assert temp_files(dst) == []


def test_the_api_in_a_thread_stops_on_its_event_and_returns_the_report(server, tmp_path):
    import pcopy

    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.txt": b"alpha"})
    stop, seen, statuses = threading.Event(), [], []
    kwargs = dict(rsh=server.rsh, remote_pcopy=server.remote_pcopy, delete=True, stop_event=stop,
                  on_result=seen.append, on_status=statuses.append)
    thread = threading.Thread(target=lambda: seen.append(pcopy.watch(src, f"{H}:{dst}", **kwargs)))
    thread.start()
    try:
        assert wait_for(lambda: any(s.watching for s in statuses), WAIT)
        (src / "b.txt").write_bytes(b"beta")
        (src / "a.txt").unlink()
        converges(server, src, dst, "through the API")
    finally:
        stop.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    report = seen[-1]
    assert report.ok and report.copied == 2 and report.deleted == 1, report
    assert wait_for(lambda: not sshd.serve_pids(server), 3), sshd.serve_pids(server)


@pytest.mark.parametrize("when", ["idle", "mid-transfer"])
def test_a_killed_transport_is_reconnected_and_resynced(server, tmp_path, when):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.txt": b"alpha"})
    with Watch(server, src, dst, "--delete", "--bwlimit", "4M") as watch:
        watch.wait_text("watching")
        if when == "mid-transfer":  # 8 MiB at 4 MiB/s: the kill lands while a receiver writes its temp file
            (src / "big.bin").write_bytes(os.urandom(8 << 20))
            assert wait_for(lambda: temp_files(dst) != [], WAIT), watch.text
        ssh = _ssh_children(watch.proc.pid)
        assert ssh
        for pid in ssh:
            os.kill(pid, signal.SIGKILL)
        (src / "during.txt").write_bytes(b"made while the sessions were down")
        watch.wait_text(f"pcopy: warning: {H}: connection lost")
        watch.wait_text(f"{H}: reconnected; resyncing the whole tree")
        converges(server, src, dst, "after the reconnect")  # the dead writer's temp file removed too
        (src / "after.txt").write_bytes(b"after")
        converges(server, src, dst, "a change after the reconnect")
        code, _ = watch.stop()
    assert code == 0, watch.text
    assert watch.text.count("reconnected") == 1, watch.text
    assert wait_for(lambda: not sshd.serve_pids(server), 3), sshd.serve_pids(server)


def test_dst_removed_on_the_remote_is_rebuilt(server, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.txt": b"alpha", "d/b.txt": b"beta"})
    with Watch(server, src, dst) as watch:
        watch.wait_text("watching")
        converges(server, src, dst, "initial sync")
        shutil.rmtree(dst)
        (src / "d" / "c.txt").write_bytes(b"gamma")  # a change in d: the batch finds DST gone, re-reads all
        converges(server, src, dst, "DST rebuilt")
        shutil.rmtree(dst / "d")  # a directory the receivers have written into before
        (src / "d" / "e.txt").write_bytes(b"epsilon")
        (src / "f.txt").write_bytes(b"phi")  # a root re-read too: DST's root time changed with the rmtree
        converges(server, src, dst, "a DST directory rebuilt")
        code, _ = watch.stop()
    assert code == 0, watch.text


def test_rescan_interval_repairs_what_changed_on_the_remote_alone(server, tmp_path):
    """A periodic full resync walks the remote DST again over the session kept for walks."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a.txt": b"alpha", "d/b.txt": b"beta"})
    with Watch(server, src, dst, "--delete", "--rescan-interval", "1") as watch:
        watch.wait_text("watching")
        converges(server, src, dst, "initial sync")
        for _ in range(2):  # twice: the walk session serves every rescan
            (dst / "d" / "b.txt").write_bytes(b"changed on the remote")
            (dst / "d" / "extra.txt").write_bytes(b"made on the remote")
            converges(server, src, dst, "after a rescan")
        code, _ = watch.stop()
    assert code == 0, watch.text


def test_a_remote_src_is_refused_with_one_line(tmp_path):
    proc = subprocess.run(pcopy_cmd("watch", f"{H}:/x", str(tmp_path)), capture_output=True, text=True, env=env(),
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "watch a local SRC" in lines[0], proc.stderr


def test_a_remote_without_pcopy_is_one_fatal_line(server, tmp_path):
    src = tmp_path / "src"
    make_tree(src, {"a.txt": b"alpha"})
    proc = subprocess.run(pcopy_cmd("watch", src, f"{H}:{tmp_path}/dst", "-e", server.rsh, "--remote-pcopy",
                                    "/nonexistent/pcopy"), capture_output=True, text=True, env=env(), timeout=60)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pcopy: error: {H}: no pcopy on the remote"), proc.stderr
    assert not (tmp_path / "dst").exists()


def test_a_full_remote_destination_is_reported_and_the_session_goes_on(server, tmp_path):
    from fault_helpers import tmpfs

    src, mnt = tmp_path / "src", tmp_path / "small"
    make_tree(src, {"a.txt": b"alpha"})
    with tmpfs(mnt, "2m"), Watch(server, src, mnt / "dst", "--delete", "-j", "1") as watch:
        watch.wait_text("watching")
        (src / "big.bin").write_bytes(os.urandom(3 << 20))
        watch.wait_text("no space left on device")
        assert temp_files(mnt) == [] and not (mnt / "dst" / "big.bin").exists()
        (src / "big.bin").unlink()
        (src / "small.txt").write_bytes(b"small")
        converges(server, src, mnt / "dst", "after space was freed in SRC")
        code, _ = watch.stop()
    assert code == 0, watch.text


def test_the_remote_rename_checks_the_entry_and_never_leaves_the_root(tmp_path):
    """``pcopy serve``'s half of a watch rename (in-process): only a DST entry matching SRC's facts is
    renamed, and a planted symlink takes no rename outside the root."""
    from pcopy.remote.moves import serve_renames

    root, outside = tmp_path / "dst", tmp_path / "outside"
    make_tree(root, {"a.txt": b"alpha", "b.txt": b"beta"})
    make_tree(outside, {"x.txt": b"x"})
    os.symlink(outside, root / "evil")
    a, b = os.lstat(root / "a.txt"), os.lstat(root / "b.txt")
    done = serve_renames(str(root), [
        ["a.txt", "new/a.txt", a.st_mode, a.st_size, a.st_mtime_ns],  # matches: renamed, new/ made with 0o755
        ["b.txt", "b2.txt", b.st_mode, b.st_size + 1, b.st_mtime_ns],  # changed since SRC was read: left
        ["evil/x.txt", "x.txt", b.st_mode, 1, os.lstat(outside / "x.txt").st_mtime_ns],  # through the link
        ["b.txt", "evil/b.txt", b.st_mode, b.st_size, b.st_mtime_ns],  # into the link
    ], {"new": 0o755})
    assert done == [True, False, False, False]
    assert (root / "new" / "a.txt").read_bytes() == b"alpha" and (root / "b.txt").exists()
    assert sorted(os.listdir(outside)) == ["x.txt"] and not (root / "x.txt").exists()


@pytest.mark.parametrize("same_content", [True, False])
def test_halves_of_a_move_pair_over_ssh_only_when_the_contents_agree(server, tmp_path, same_content):
    """A deletion and a creation watchdog could not pair: renamed on the remote when DST's file (listed
    and hashed there) has the created file's size, mtime and xxh128, else left to copy + delete."""
    from pcopy.remote import client, transport
    from pcopy.remote.moves import push_moves
    from pcopy.transfer.renames import Move

    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"b": b"content"})
    make_tree(dst, {"a": b"content" if same_content else b"CONTENT"})  # one size, one mtime (make_tree's)
    ino = os.lstat(dst / "a").st_ino
    setting = client.settle(str(src), f"{H}:{dst}", {"delete": True, "jobs": 1})
    conns = client.connect(setting, server.rsh, server.remote_pcopy)
    try:
        _, remote_dst, _ = client.ends(setting, conns)
        done = push_moves(setting.options, remote_dst, [Move("a", ""), Move("", "b")])
    finally:
        transport.close_all(conns)
    if same_content:
        assert [(r.relpath, r.message) for r in done] == [("b", "a")]
        assert os.lstat(dst / "b").st_ino == ino and not (dst / "a").exists()
    else:
        assert done == [] and (dst / "a").exists() and not (dst / "b").exists()
