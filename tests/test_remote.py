"""Remote trees over SSH (pcopy.remote), through a real sshd on 127.0.0.1 (tests/sshd_helpers.py).

The "remote" is this machine reached through ssh, so its files are checked directly and its
processes found in /proc; correctness is checked with ``rsync -anic`` through the same sshd.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import sshd_helpers as sshd
from conftest import Dir, File, Link, make_tree, sample_spec, temp_files
from fault_helpers import env, pcopy_cmd
from remote_helpers import pcopy, rsync_diff, ssh_children, wait_for

pytestmark = pytest.mark.skipif(sshd.missing() is not None, reason=sshd.missing() or "")
H = sshd.HOST


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    make_tree(src, sample_spec())
    make_tree(src, {f"many/f{i:03d}": f"file {i}\n".encode() * i for i in range(300)})
    return src


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_copy_matches_rsync(server, tree, tmp_path, direction):
    dst = tmp_path / "dst"
    args = (tree, f"{H}:{dst}") if direction == "push" else (f"{H}:{tree}", dst)
    proc = pcopy(server, "copy", *args, "-v")
    assert proc.returncode == 0, proc.err
    assert rsync_diff(server, tree, dst) == ""
    assert ">f+++++++++ hello.txt" in proc.out + proc.err
    assert "cL+++++++++ sub/link-to-hello" in proc.out + proc.err
    assert temp_files(dst) == []
    again = pcopy(server, "copy", *args, "-v")
    assert again.returncode == 0, again.err
    assert ">f" not in again.out + again.err  # nothing to do the second time
    assert "copied 0 files" in again.err


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_sync_delete_filters_dry_run(server, tree, tmp_path, direction):
    dst = tmp_path / "dst"
    make_tree(dst, {"extra.txt": b"gone", "olddir/x": b"gone too", "keep.log": b"excluded: stays",
                    "hello.txt": File(b"stale content", mtime_ns=1)})
    args = (tree, f"{H}:{dst}") if direction == "push" else (f"{H}:{tree}", dst)
    before = sorted(os.listdir(dst))
    dry = pcopy(server, "sync", *args, "--delete", "--exclude", "*.log", "-n")
    assert dry.returncode == 0, dry.err
    assert "*deleting   extra.txt" in dry.out + dry.err
    assert ">f.st...... hello.txt" in dry.out + dry.err
    assert "nothing was changed" in dry.err
    assert sorted(os.listdir(dst)) == before
    log = tmp_path / "run.log"
    proc = pcopy(server, "sync", *args, "--delete", "--exclude", "*.log", "-v", "--log-file", log)
    assert proc.returncode == 0, proc.err
    assert f" {H}:" in log.read_text().splitlines()[0]  # the header keeps host:path as given
    assert "*deleting   extra.txt" in log.read_text()
    assert not (dst / "extra.txt").exists() and not (dst / "olddir").exists()
    assert (dst / "keep.log").read_bytes() == b"excluded: stays"
    assert rsync_diff(server, tree, dst, "--delete", "--exclude", "*.log") == ""


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_compressed_transfer(server, tmp_path, direction):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"text": b"compressible line\n" * 200_000, "random": os.urandom(3 << 20), "empty": b""})
    args = (src, f"{H}:{dst}") if direction == "push" else (f"{H}:{src}", dst)
    proc = pcopy(server, "copy", *args, "-z")
    assert proc.returncode == 0, proc.err
    assert rsync_diff(server, src, dst) == ""


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_checksum_finds_same_size_same_time_change(server, tmp_path, direction):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": File(b"AAAA", mtime_ns=10**18), "b": File(b"same", mtime_ns=10**18)})
    make_tree(dst, {"a": File(b"BBBB", mtime_ns=10**18), "b": File(b"same", mtime_ns=10**18)})
    args = (src, f"{H}:{dst}") if direction == "push" else (f"{H}:{src}", dst)
    assert pcopy(server, "sync", *args).returncode == 0
    assert (dst / "a").read_bytes() == b"BBBB"  # size and mtime match: unchanged without -c
    proc = pcopy(server, "sync", *args, "-c", "-v")
    assert proc.returncode == 0, proc.err
    assert (dst / "a").read_bytes() == b"AAAA"
    assert ">fc" in proc.out + proc.err and " b\n" not in proc.out + proc.err


def test_planted_symlinks_on_the_remote_are_never_written_through(server, tmp_path):
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    make_tree(outside, {"victim": b"untouched"})
    make_tree(src, {"a/victim": b"evil", "b/c/victim": b"evil", "top": b"x"})
    make_tree(dst, {"a": Link(str(outside)), "b/c": Link(str(outside)), "b/keep": b"k"})
    snapshot = sorted(os.listdir(outside))
    copy = pcopy(server, "copy", src, f"{H}:{dst}")
    assert copy.returncode == 3, copy.err  # copy reports an entry of another kind
    assert (outside / "victim").read_bytes() == b"untouched"
    sync = pcopy(server, "sync", src, f"{H}:{dst}", "--delete")
    assert sync.returncode == 0, sync.err  # sync replaces the links by directories
    assert (outside / "victim").read_bytes() == b"untouched" and sorted(os.listdir(outside)) == snapshot
    assert (dst / "a").is_dir() and not (dst / "a").is_symlink()
    assert (dst / "b/c/victim").read_bytes() == b"evil"
    assert rsync_diff(server, src, dst, "--delete") == ""


def test_remote_without_pcopy(server, tmp_path):
    src = tmp_path / "src"
    make_tree(src, {"f": b"x"})
    proc = subprocess.run(pcopy_cmd("copy", src, f"{H}:{tmp_path}/dst", "-e", server.rsh, "--remote-pcopy",
                                    "/nonexistent/pcopy"), capture_output=True, text=True, env=env(), timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pcopy: error: {H}: no pcopy on the remote"), proc.stderr
    assert not (tmp_path / "dst").exists()


FAKE = """\
import json, struct, sys
r, w = sys.stdin.buffer, sys.stdout.buffer
n, p = struct.unpack(">II", r.read(8)); r.read(n + p)
h = json.dumps({"ok": True, "proto": 999, "version": "9.9.9"}).encode()
w.write(struct.pack(">II", len(h), 0) + h); w.flush()
"""


def test_protocol_version_mismatch(server, tmp_path):
    src = tmp_path / "src"
    make_tree(src, {"f": b"x"})
    fake = tmp_path / "fake.py"
    fake.write_text(FAKE)
    proc = subprocess.run(pcopy_cmd("copy", src, f"{H}:{tmp_path}/dst", "-e", server.rsh, "--remote-pcopy",
                                    f"{sys.executable} {fake}"), capture_output=True, text=True, env=env(), timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "protocol version mismatch" in lines[0] and "9.9.9" in lines[0], proc.stderr
    assert not (tmp_path / "dst").exists()


def test_serve_refuses_another_protocol_and_unknown_operations():
    from pcopy.remote.protocol import PROTO, encode, read_frame
    from pcopy.remote.serve import Server

    out = io.BytesIO()
    assert Server(io.BytesIO(encode({"op": "hello", "proto": PROTO + 1})), out).run() == 2
    header, _ = read_frame(io.BytesIO(out.getvalue()))
    assert header["ok"] is False and "mismatch" in header["error"]
    out = io.BytesIO()
    frames = encode({"op": "hello", "proto": PROTO}) + encode({"op": "exec", "argv": ["touch", "/tmp/x"]})
    assert Server(io.BytesIO(frames), out).run() == 0
    stream = io.BytesIO(out.getvalue())
    assert read_frame(stream)[0]["ok"] is True
    refused = read_frame(stream)[0]
    assert refused["ok"] is False and "unknown operation" in refused["error"]


_ssh_children = ssh_children


def _args(direction: str, src, dst) -> tuple:
    return (src, f"{H}:{dst}") if direction == "push" else (f"{H}:{src}", dst)


def _slow_run(server, tmp_path, direction):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {f"d{d}/f{i}": os.urandom(64 << 10) for d in range(4) for i in range(40)})
    cmd = pcopy_cmd("copy", *_args(direction, src, dst), "--bwlimit", "2M", "-j", "2", *server.args())
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd="/")
    assert wait_for(lambda: dst.exists() and any(f for _, _, f in os.walk(dst)), 30), proc.stderr
    return src, dst, proc


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_killed_transport_fails_with_one_line_then_rerun_completes(server, tmp_path, direction):
    src, dst, proc = _slow_run(server, tmp_path, direction)
    ssh = _ssh_children(proc.pid)
    assert ssh
    for pid in ssh:  # every session: an idle one (a walk that is done) would not be missed
        os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 1, err
    assert len(lines) == 1 and lines[0].startswith(f"pcopy: error: {H}: connection lost"), err
    assert wait_for(lambda: not sshd.serve_pids(server), 5)
    rerun = pcopy(server, "copy", *_args(direction, src, dst))
    assert rerun.returncode == 0, rerun.err
    assert rsync_diff(server, src, dst) == ""
    assert temp_files(dst) == []


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_ctrl_c_stops_both_ends(server, tmp_path, direction):
    src, dst, proc = _slow_run(server, tmp_path, direction)
    assert sshd.serve_pids(server)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 2.5
    assert wait_for(lambda: not sshd.serve_pids(server), 2), sshd.serve_pids(server)
    assert temp_files(dst) == []  # each receiver removed the file it was writing
    rerun = pcopy(server, "copy", *_args(direction, src, dst))
    assert rerun.returncode == 0 and rsync_diff(server, src, dst) == ""


@pytest.mark.parametrize("argv", [
    ["sync", "SRC", f"{H}:/x", "--delete", "--track-renames"],
    ["watch", f"{H}:/x", "SRC"],
])
def test_what_is_not_built_yet_is_refused_with_one_line(tmp_path, argv):
    src = tmp_path / "src"
    make_tree(src, {"f": b"x"})
    argv = [str(src) if a == "SRC" else a for a in argv]
    proc = subprocess.run(pcopy_cmd(*argv), capture_output=True, text=True, env=env(), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "remote paths (host:path) are not supported yet" in lines[0], proc.stderr


def test_both_ends_remote_is_a_usage_error(tmp_path):
    proc = subprocess.run(pcopy_cmd("copy", f"{H}:/a", f"{H}:/b"), capture_output=True, text=True, env=env())
    assert proc.returncode == 2 and "both remote" in proc.stderr


def test_dir_modes_and_times_arrive(server, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"d": Dir(mode=0o750, mtime_ns=1_500_000_000_000_000_000), "d/f": b"x"})
    assert pcopy(server, "copy", src, f"{H}:{dst}").returncode == 0
    st = os.stat(dst / "d")
    assert st.st_mode & 0o7777 == 0o750 and st.st_mtime_ns == 1_500_000_000_000_000_000
    shutil.rmtree(dst)


def test_hash_of_a_remote_tree_is_made_there(server, tree, tmp_path):
    local = subprocess.run(pcopy_cmd("hash", tree, "--no-cache"), capture_output=True, env=env(), timeout=60)
    assert local.returncode == 0, local.stderr
    remote = subprocess.run(pcopy_cmd("hash", f"{H}:{tree}", "--no-cache", *server.args()), capture_output=True,
                            env=env(), timeout=60)
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout and remote.stdout.count(b"\n") > 300
    out = tmp_path / "m.xxh"
    to_file = subprocess.run(pcopy_cmd("hash", f"{H}:{tree}", "-o", out, "--json", *server.args()),
                             capture_output=True, env=env(), timeout=60)
    assert to_file.returncode == 0, to_file.stderr
    assert out.read_bytes() == local.stdout
    assert '"files": ' in to_file.stdout.decode()
    missing = subprocess.run(pcopy_cmd("hash", f"{H}:{tmp_path}/nope", *server.args()), capture_output=True,
                             text=True, env=env(), timeout=60)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [f"pcopy: error: {H}: {tmp_path}/nope: cannot read root: "
                                                   "No such file or directory"], missing.stderr


HOSTILE = """\
import json, struct, sys
r, w = sys.stdin.buffer, sys.stdout.buffer
def send(h):
    data = json.dumps(h).encode()
    w.write(struct.pack(">II", len(data), 0) + data); w.flush()
while True:
    head = r.read(8)
    if len(head) < 8:
        break
    n, p = struct.unpack(">II", head)
    h = json.loads(r.read(n)); r.read(p)
    if h["op"] == "hello":
        send({"ok": True, "proto": h["proto"], "version": "0.0.0"})
    elif h["op"] == "stat":
        send({"ok": True, "kind": "dir", "real": "/x", "stat": ["", "dir", 0, 0, 0, 0o40755, 0, 0, 1, 0, 0, 0]})
    elif h["op"] == "walk":
        entry = ["../escape", "file", 5, 0, 0, 0o100644, 0, 0, 1, 0, 0, 0]
        send({"t": "listing", "reldir": "", "entries": [entry], "error": None, "entry_errors": []})
        send({"ok": True})
"""


def test_a_hostile_remote_cannot_name_a_path_outside_dst(server, tmp_path):
    fake = tmp_path / "hostile.py"
    fake.write_text(HOSTILE)
    dst = tmp_path / "in" / "dst"
    proc = subprocess.run(pcopy_cmd("copy", f"{H}:/anything", dst, "-e", server.rsh, "--remote-pcopy",
                                    f"{sys.executable} {fake}"), capture_output=True, text=True, env=env(), timeout=60)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pcopy: error: {H}: bad name from the other end"), proc.stderr
    assert not (tmp_path / "in" / "escape").exists() and not (tmp_path / "escape").exists()


def test_send_and_receive_halves_in_memory_with_compression(tmp_path):
    """The two halves of a batch without ssh: a big file in compressed chunks, small ones whole in one
    frame each, the receiver's digest of what it wrote checked against the sender's, and tampered
    frames never published."""
    from pcopy.remote import protocol
    from pcopy.remote.receive import MISMATCH, receive_batch, receiver_options
    from pcopy.remote.send import send_batch

    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"text\n" * 300_000, "b": b"", "c": b"small", "l": Link("a")})
    os.makedirs(dst)
    frames: list = []
    files = [["a", ">f+++++++++", False], ["b", "", False], ["c", "", False], ["l", "", True]]
    assert send_batch(str(src), "", files, lambda h, p=b"": frames.append((h, p)), codec="zlib") == []
    chunks = [(h, p) for h, p in frames if h["t"] == "chunk"]
    assert chunks and all(h["z"] == "zlib" for h, _ in chunks) and sum(len(p) for _, p in chunks) < 300_000
    assert [h["name"] for h, _ in frames if h.get("whole")] == ["b", "c"]
    options = receiver_options(str(dst), "t0ken", {})
    results = receive_batch(options, "", iter(frames).__next__)
    assert [r[1] for r in results] == ["copied"] * 4
    for name in "abc":
        assert (dst / name).read_bytes() == (src / name).read_bytes()
    assert os.readlink(dst / "l") == "a"
    evil = protocol.compress("zlib", b"evil")
    tampered = [(h, evil if h["t"] == "chunk" or h.get("whole") else p) for h, p in frames]
    shutil.rmtree(dst)
    os.makedirs(dst)
    results = receive_batch(options._replace(token="t1ken"), "", iter(tampered).__next__)
    assert [r[6] for r in results[:3]] == [MISMATCH] * 3
    assert sorted(os.listdir(dst)) == ["l"] and temp_files(dst) == []
    with pytest.raises(protocol.ProtocolError):
        protocol.decompress("zlib", protocol.compress("zlib", b"\0" * (protocol.MAX_PAYLOAD + 1)))


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_sigkill_of_the_client_leaves_no_process_on_either_end(server, tmp_path, direction):
    from conftest import descendants, still_running

    src, dst, proc = _slow_run(server, tmp_path, direction)
    below = descendants(proc.pid)
    assert below and sshd.serve_pids(server)
    proc.kill()
    proc.wait(timeout=10)
    assert wait_for(lambda: not still_running(below) and not sshd.serve_pids(server), 3), (still_running(below),
                                                                                      sshd.serve_pids(server))
    rerun = pcopy(server, "copy", *_args(direction, src, dst))
    assert rerun.returncode == 0, rerun.err
    assert rsync_diff(server, src, dst) == "" and temp_files(dst) == []


def test_delete_limits_and_selection_options_over_ssh(server, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"new": b"n", "old": File(b"src version", mtime_ns=10**18), "skip.tmp": b"t"})
    make_tree(dst, {"x1": b"1", "old": File(b"newer in dst", mtime_ns=2 * 10**18), "skip.tmp": b"d"})
    proc = pcopy(server, "sync", src, f"{H}:{dst}", "--delete-excluded", "--exclude", "*.tmp", "-u", "-v")
    assert proc.returncode == 0, proc.err
    assert sorted(os.listdir(dst)) == ["new", "old"]  # x1 and the excluded skip.tmp deleted
    assert (dst / "old").read_bytes() == b"newer in dst"  # -u: newer in DST is kept
    make_tree(dst, {"x2": b"2", "x3": b"3"})
    refused = pcopy(server, "sync", src, f"{H}:{dst}", "--delete", "--max-delete", "1")
    assert refused.returncode == 1 and "refusing to delete 2 entries" in refused.err, refused.err
    assert (dst / "x2").exists() and (dst / "x3").exists()


def test_a_tilde_is_expanded_on_the_remote(server):
    name = "pcopy-test-no-such-dir-" + os.urandom(4).hex()
    proc = subprocess.run(pcopy_cmd("hash", f"{H}:~/{name}", *server.args()), capture_output=True, text=True,
                          env=env(), timeout=60)
    assert proc.returncode == 1
    assert f"{os.path.expanduser('~' + server.user)}/{name}: cannot read root" in proc.stderr, proc.stderr


def test_a_full_remote_destination_stops_the_run_cleanly(server, tmp_path):
    from fault_helpers import tmpfs

    src, mnt = tmp_path / "src", tmp_path / "small"
    make_tree(src, {f"d{d}/f{i}": os.urandom(100 << 10) for d in range(3) for i in range(20)})  # 6 MiB
    with tmpfs(mnt, "2m"):
        proc = pcopy(server, "copy", src, f"{H}:{mnt}/dst", "-j", "1")
        assert proc.returncode == 3, proc.err
        assert "the destination is full: pcopy stopped handing out work" in proc.err
        assert "no space left on device" in proc.err
        assert temp_files(mnt) == []
        for path, _, files in os.walk(mnt / "dst"):  # every final name holds a complete file
            for name in files:
                rel = os.path.relpath(os.path.join(path, name), mnt / "dst")
                assert (mnt / "dst" / rel).read_bytes() == (src / rel).read_bytes()
