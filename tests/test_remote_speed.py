"""What keeps remote runs fast (pcopy.remote.streams, transport, serve): sessions opened only when
needed, a walk streaming beside the control session's other operations, batches pipelined on a
stream. Through the real sshd of the ``server`` fixture, or a real ``pcopy serve`` started by a local
stand-in for ssh; no timings."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading

import pytest
import sshd_helpers as sshd
from conftest import make_tree
from fault_helpers import env, pcopy_cmd
from remote_helpers import rsync_diff

from pcopy.model.entries import COPY, Batch, Task
from pcopy.remote import streams, transport

H = sshd.HOST
remote = pytest.mark.skipif(sshd.missing() is not None, reason=sshd.missing() or "")


def _counted(server, log) -> list:
    """``-e`` and a ``--remote-pcopy`` that notes every session it starts in ``log``."""
    return ["-e", server.rsh, "--remote-pcopy", f"echo started >> {shlex.quote(str(log))}; {server.remote_pcopy}"]


def _sessions(log) -> int:
    with open(log) as fh:
        return fh.read().count("started")


@remote
@pytest.mark.parametrize("direction", ["push", "pull"])
def test_a_small_copy_and_a_no_op_sync_open_one_session(server, tmp_path, direction):
    src, dst, log = tmp_path / "src", tmp_path / "dst", tmp_path / "sessions.log"
    make_tree(src, {"a": b"a" * 100, "d/b": b"b", "d/e/c": b"c" * 5000})
    args = [str(src), f"{H}:{dst}"] if direction == "push" else [f"{H}:{src}", str(dst)]

    def run(*argv) -> int:
        log.write_text("")
        proc = subprocess.run(pcopy_cmd(*argv, *args, "-j", "4", *_counted(server, log)), capture_output=True,
                              env=env(), cwd="/", timeout=120)
        assert proc.returncode == 0, proc.stderr
        return _sessions(log)

    assert run("copy") == 1  # control walks and moves the first stream's batches: -j 4 is a limit, not a start
    assert rsync_diff(server, src, dst) == ""
    assert run("sync", "--delete") == 1  # nothing to move: the control session alone
    assert run("sync", "--delete", "-n") == 1


def _local_rsh(tmp_path) -> str:
    """A stand-in for ssh that runs the remote command here, without a host: ``RSH host CMD``."""
    script = tmp_path / "rsh.py"
    script.write_text("import os, sys\nos.execvp('sh', ['sh', '-c', sys.argv[2]])\n")
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def test_a_walk_streams_beside_the_answers_of_other_operations(tmp_path):
    """One session walks and answers: the walk's frames are set aside while an answer is awaited."""
    root = tmp_path / "tree"
    make_tree(root, {f"d{i:03d}/f": b"x" for i in range(300)})
    conn = transport.connect(transport.Spec(None, "local", str(root)), _local_rsh(tmp_path),
                             f"{shlex.quote(sys.executable)} -m pcopy")
    try:
        conn.send({"op": "walk", "root": str(root), "follow": False})
        answers = [conn.call({"op": "stat", "path": str(root / f"d{i:03d}")})["kind"] for i in range(0, 300, 30)]
        assert answers == ["dir"] * 10
        reldirs = []
        while True:
            frame = conn.recv_walk()
            if frame["t"] == "walked":
                assert frame["ok"]
                break
            reldirs.append(frame["reldir"])
        assert reldirs == [""] + [f"d{i:03d}" for i in range(300)]  # every listing, in walk order
        assert conn.call({"op": "stat", "path": str(root / "nope")})["kind"] is None
    finally:
        conn.close()


class _Recording:
    """A Mover that records what a stream asks of it."""

    dry_run = False

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.events: list = []

    def overlaps(self, batch) -> bool:
        return True

    def begin(self, conn, batch):
        self.events.append(("begin", batch.reldir))
        return batch, None

    def end(self, conn, begun):
        self.events.append(("end", begun[0].reldir))
        return []


def test_a_stream_sends_its_next_batch_before_it_reads_the_previous_answer():
    mover = _Recording()
    release = threading.Event()

    def open_session():
        release.wait(10)  # the three batches are queued before the stream moves any
        return object()

    pipe = streams.Streams(open_session, 1, mover)  # type: ignore[arg-type]
    taken: list = []
    try:
        for name in ("a", "b", "c"):
            pipe.put(Batch(name, (Task(COPY, "f", 1, ""),)), lambda b, r: taken.append(b.reldir), lambda: None)
        release.set()
        pipe.drain(lambda b, r: taken.append(b.reldir), wait=True)
    finally:
        pipe.close()
    assert mover.events == [("begin", "a"), ("begin", "b"), ("end", "a"), ("begin", "c"), ("end", "b"),
                            ("end", "c")]
    assert taken == ["a", "b", "c"] and len(pipe.threads) == 1


def test_streams_open_no_session_for_a_dry_run():
    class DryRun(_Recording):
        dry_run = True

        def overlaps(self, batch) -> bool:
            return False

        def run(self, conn, batch):
            assert conn is None
            return []

    opened: list = []
    pipe = streams.Streams(lambda: opened.append(1), 2, DryRun())  # type: ignore[arg-type]
    try:
        for name in "abcdef":
            pipe.put(Batch(name, (Task(COPY, "f", 1, ""),)), lambda b, r: None, lambda: None)
        pipe.drain(lambda b, r: None, wait=True)
    finally:
        pipe.close()
    assert opened == []



@remote
@pytest.mark.parametrize("direction", ["push", "pull"])
def test_big_files_waiting_open_more_sessions_and_arrive_whole(server, tmp_path, direction):
    """Over 64 MiB waiting behind the first stream: more sessions at once (up to -j), every byte checked."""
    src, dst, log = tmp_path / "src", tmp_path / "dst", tmp_path / "sessions.log"
    make_tree(src, {**{f"big{i}": os.urandom(1 << 20) * 24 for i in range(4)},
                    **{f"d/f{i}": os.urandom(100) for i in range(50)}})
    args = [str(src), f"{H}:{dst}"] if direction == "push" else [f"{H}:{src}", str(dst)]
    log.write_text("")
    proc = subprocess.run(pcopy_cmd("copy", *args, "-j", "3", *_counted(server, log)), capture_output=True,
                          env=env(), cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 2 <= _sessions(log) <= 3
    assert rsync_diff(server, src, dst) == ""


def test_a_posted_operation_is_answered_in_turn_before_the_next_one(tmp_path):
    root = tmp_path / "dst"
    root.mkdir()
    conn = transport.connect(transport.Spec(None, "local", str(root)), _local_rsh(tmp_path),
                             f"{shlex.quote(sys.executable)} -m pcopy")
    landed: list = []
    try:
        conn.post({"op": "mkdirs", "root": str(root), "reldirs": ["a", "a/b"]}, landed.append)
        conn.post({"op": "mkdirs", "root": str(root), "reldirs": ["a/b/c", "nope/x"]}, landed.append)
        assert conn.call({"op": "stat", "path": str(root / "a" / "b" / "c")})["kind"] == "dir"
        assert [answer["errors"][0] for answer in landed] == [None, None]
        assert landed[1]["errors"][1] and "No such file" in landed[1]["errors"][1]
        conn.post({"op": "mkdirs", "root": str(root), "reldirs": ["z"]}, landed.append)
        conn.settle()
        assert len(landed) == 3 and (root / "z").is_dir()
    finally:
        conn.close()


@remote
def test_a_deep_new_tree_is_pushed_without_waiting_for_its_mkdirs(server, tmp_path):
    """Directories are made by posted mkdirs; a batch that reaches its directory first makes it itself."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    spec = {}
    for top in range(4):
        path = f"t{top}"
        for depth in range(8):
            path += f"/d{depth}"
            spec.update({f"{path}/f{i}": os.urandom(200) for i in range(3)})
    make_tree(src, {**spec, "t0/empty/deeper/x": b"x", "e1/e2/e3/last": b""})
    os.unlink(src / "t0" / "empty" / "deeper" / "x")  # an empty directory: made by mkdir alone
    proc = subprocess.run(pcopy_cmd("copy", src, f"{H}:{dst}", "-j", "3", "-v", *server.args()),
                          capture_output=True, env=env(), cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert rsync_diff(server, src, dst) == ""
    lines = proc.stderr.decode().splitlines()
    assert sum(1 for line in lines if line.startswith("cd+++++++++ ")) == 4 + 4 * 8 + 2 + 3  # each dir once


def test_a_batch_into_a_directory_not_made_yet_makes_it_only_when_asked(tmp_path):
    from pcopy.remote.receive import receive_batch, receiver_options
    from pcopy.remote.send import send_batch

    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"x/y/f": b"data", "x/y/g": b"more"})
    dst.mkdir()
    frames: list = []
    send_batch(str(src), "x/y", [["f", "", False], ["g", "", False]], lambda h, p=b"": frames.append((h, p)))
    refused = receive_batch(receiver_options(str(dst), "t0ken", {}), "x/y", iter(frames).__next__)
    assert [r[1] for r in refused] == ["failed", "failed"] and not (dst / "x").exists()
    made = receive_batch(receiver_options(str(dst), "t1ken", {}), "x/y", iter(frames).__next__, True)
    assert [r[1] for r in made] == ["copied", "copied"]
    assert (dst / "x" / "y" / "f").read_bytes() == b"data" and (dst / "x" / "y" / "g").read_bytes() == b"more"
