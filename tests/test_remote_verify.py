"""``pcopy verify`` with a remote side (pcopy.remote.verify), through the real sshd of conftest's ``server``.

The "remote" is this machine reached through ssh, so a local verify of the very same two trees is
the reference: the remote runs must print the same lines (compared as sets, see ``_outcome``), the
same report and the same json; ``rsync -anic`` through the same sshd confirms the change only the
contents show.
Each side's hash cache is a file of the test (``PCOPY_CACHE``, passed to the remote through
``--remote-pcopy 'env PCOPY_CACHE=...'``), never the machine's own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import sshd_helpers as sshd
from conftest import BAD_UTF8, Dir, Fifo, File, Link, children, make_tree, sample_spec
from fault_helpers import NOBODY, SETPRIV, env, pcopy_cmd
from remote_helpers import rsync_diff, ssh_children, wait_for

pytestmark = pytest.mark.skipif(sshd.missing() is not None, reason=sshd.missing() or "")
H = sshd.HOST
AS_NOBODY = [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def _run(server, base, *args, remote_pcopy=None, local=(), rsh=None, timeout=120) -> subprocess.CompletedProcess:
    """pcopy ARGS with each side's cache in ``base`` (the local one through the environment)."""
    e = env()
    e["PCOPY_CACHE"] = os.path.join(base, "local-cache.sqlite3")
    rp = remote_pcopy or f"env PCOPY_CACHE={base}/remote-cache.sqlite3 {server.remote_pcopy}"
    proc = subprocess.run([*local, *pcopy_cmd(*args, "-e", rsh or server.rsh, "--remote-pcopy", rp)],
                          capture_output=True, env=e, timeout=timeout, cwd="/")
    proc.err = proc.stderr.decode("utf-8", "surrogateescape")  # type: ignore[attr-defined]
    return proc


def _outcome(proc) -> tuple:
    """(exit code, stderr lines with the summary's time cut, the json report without its time).

    The difference lines are sorted: a local verify prints a directory's own error when its march
    reaches it and a file's difference when the file's batch comes back from the pool, so their
    interleaving already depends on the pool's timing there (the remote run's order is path order).
    """
    lines = [re.sub(r" in [0-9.]+ s$", "", line) for line in proc.err.splitlines()]
    lines = sorted(lines[:-1]) + lines[-1:]
    report = json.loads(proc.stdout) if proc.stdout.strip() else None
    if report is not None:
        report.pop("seconds")
        report["differences"] = sorted(report["differences"], key=lambda d: (d["path"], d["kind"], d["detail"]))
    return proc.returncode, lines, report


def _remote_args(direction: str, src, dst) -> tuple:
    return (src, f"{H}:{dst}") if direction == "push" else (f"{H}:{src}", dst)


def _trees(tmp_path) -> tuple:
    """SRC and a DST that differs from it in every way verify reports."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, sample_spec())
    make_tree(src, {f"many/f{i:03d}": f"file {i}\n".encode() * i for i in range(300)})
    make_tree(src, {"fifo": Fifo(), "kind/f": b"file", "gone/a/b": b"deep", "tgt": Link("one")})
    subprocess.run(["cp", "-a", src, dst], check=True)
    st = os.stat(src / "hello.txt")
    (dst / "hello.txt").write_bytes(b"hellO world\n")  # same size, same mtime: only the contents tell
    os.utime(dst / "hello.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    (dst / "new\nline").write_bytes(b"newline in the namE")
    os.utime(dst / "new\nline", ns=(st.st_atime_ns, os.stat(src / "new\nline").st_mtime_ns))
    (dst / BAD_UTF8).write_bytes(b"longer content for an invalid utf-8 name")
    (dst / "empty.txt").unlink()
    shutil.rmtree(dst / "gone")
    (dst / "kind" / "f").unlink()
    (dst / "kind" / "f").mkdir()
    (dst / "tgt").unlink()
    (dst / "tgt").symlink_to("two")
    make_tree(dst, {"extra/x/y": b"extra", "many/f999": b"one more", "sub/deeper/deepest/leaf2": b"x"})
    return src, dst


@pytest.mark.parametrize("opening", ["at-once", "slow"])
@pytest.mark.parametrize("direction", ["push", "pull"])
def test_output_equals_a_local_verify_of_the_same_trees(server, tmp_path, direction, opening):
    src, dst = _trees(tmp_path)
    local = _outcome(_run(server, tmp_path, "verify", src, dst, "--json", "--no-cache"))
    assert local[0] == 4 and len(local[1]) > 8, local
    rsh = server.rsh
    if opening == "slow":  # the whole local tree is read ahead while the session opens (remote.verify_ahead)
        slow = tmp_path / "slow-ssh"
        slow.write_text(f'#!/bin/sh\nsleep 1.5\nexec {rsh} "$@"\n')
        slow.chmod(0o755)
        rsh = str(slow)
    remote = _outcome(_run(server, tmp_path, "verify", *_remote_args(direction, src, dst), "--json", "--no-cache",
                           rsh=rsh))
    assert remote == local
    assert any(line[1:3] == "fc" and line.endswith(" hello.txt") for line in
               rsync_diff(server, src, dst).splitlines())  # same size and mtime: only -c tells
    assert {"kind": "differ", "path": "hello.txt", "detail": "contents differ"} in remote[2]["differences"]
    same = _outcome(_run(server, tmp_path, "verify", *_remote_args(direction, src, src), "--json", "--no-cache"))
    assert same[0] == 0 and same[2]["identical"] > 300 and same[2]["differ"] == 0, same


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_the_caches_on_both_ends_give_the_same_answers(server, tmp_path, direction):
    src, dst = _trees(tmp_path)
    time.sleep(2.1)  # the caches keep no digest of a file changed in the last 2 s (content.cache.RACY_NS)
    local = _outcome(_run(server, tmp_path / "l", "verify", src, dst, "--json"))
    first = _outcome(_run(server, tmp_path, "verify", *_remote_args(direction, src, dst), "--json"))
    second = _outcome(_run(server, tmp_path, "verify", *_remote_args(direction, src, dst), "--json"))
    for run in (first, second):
        assert run[0] == local[0] == 4
        assert run[2]["differences"] == local[2]["differences"]
        assert {k: run[2][k] for k in ("files", "identical", "differ", "missing", "extra", "errors")} == \
            {k: local[2][k] for k in ("files", "identical", "differ", "missing", "extra", "errors")}
    assert first[2]["cache_hits"] == 0 and first[2]["hashed"] > 600, first
    assert second[2]["hashed"] == 0 and second[2]["cache_hits"] > 600, second  # both ends remembered
    (src / "many" / "f010").write_bytes(b"changed")  # a changed file is read again on its side
    third = _outcome(_run(server, tmp_path, "verify", *_remote_args(direction, src, dst), "--json"))
    assert {"kind": "differ", "path": "many/f010", "detail": "sizes differ (7 in SRC, 80 in DST)"} in \
        third[2]["differences"]


@pytest.fixture
def shared_dir():
    """A directory nobody may enter (pytest's own are root's alone), removed afterwards."""
    base = tempfile.mkdtemp(prefix="pcopy-rverify-")
    os.chmod(base, 0o755)
    yield base
    for top, dirs, _ in os.walk(base):
        for d in dirs:
            os.chmod(os.path.join(top, d), 0o755)
    shutil.rmtree(base)


@pytest.mark.skipif(SETPRIV is None, reason="setpriv is not installed")
@pytest.mark.parametrize("direction", ["push", "pull"])
def test_unreadable_files_and_directories_on_the_remote(server, shared_dir, direction):
    src, dst = os.path.join(shared_dir, "src"), os.path.join(shared_dir, "dst")
    spec = {"ok": b"same", "d/inner": b"in", "locked": Dir(), "locked/f": b"x", "secret": File(b"s", mode=0o000)}
    make_tree(src, spec)
    make_tree(dst, spec)
    remote_tree = dst if direction == "push" else src
    os.chmod(os.path.join(remote_tree, "locked"), 0o000)
    with open(os.path.join(dst, "d", "inner"), "wb") as fh:
        fh.write(b"IN")
    local_tree = src if direction == "push" else dst
    os.chmod(os.path.join(local_tree, "secret"), 0o644)  # only the remote side (run as nobody) cannot read
    # the reference: a local verify as nobody sees what the remote (pcopy serve as nobody) sees
    local = _outcome(_run(server, shared_dir, "verify", src, dst, "--json", "--no-cache", local=AS_NOBODY))
    rp = " ".join([*AS_NOBODY, sys.executable, "-m", "pcopy"])
    remote = _outcome(_run(server, shared_dir, "verify", *_remote_args(direction, src, dst), "--json", "--no-cache",
                           remote_pcopy=rp))
    side = "DST" if direction == "push" else "SRC"
    assert f"pcopy: error: secret: in {side}: Permission denied" in local[1], local
    assert f"pcopy: error: locked: cannot read directory in {side}: Permission denied" in local[1], local
    assert local[0] == 4 and remote == local
    locked = [os.path.join(src, "locked"), os.path.join(dst, "locked")]  # a root the remote cannot read
    local = _outcome(_run(server, shared_dir, "verify", *locked, "--json", "--no-cache", local=AS_NOBODY))
    remote = _outcome(_run(server, shared_dir, "verify", *_remote_args(direction, *locked), "--json", "--no-cache",
                           remote_pcopy=rp))
    assert local[0] == 3 and local[2]["differences"] == [
        {"kind": "error", "path": ".", "detail": f"cannot read directory in {side}: Permission denied"}]
    assert remote == local


def test_a_manifest_checked_against_a_remote_root(server, tmp_path):
    root = tmp_path / "root"
    make_tree(root, sample_spec())
    manifest = tmp_path / "m.xxh"
    made = _run(server, tmp_path, "hash", root, "-o", manifest, "--no-cache")
    assert made.returncode == 0, made.err
    with open(manifest, "ab") as fh:
        fh.write(b"not a manifest line\n" + b"0" * 32 + b"  not/there\n")
    (root / "hello.txt").write_bytes(b"hellO world\n")
    (root / "big.bin").unlink()
    local = _outcome(_run(server, tmp_path, "verify", "-m", manifest, root, "--json", "--no-cache"))
    assert local[0] == 4 and any("hello.txt (contents differ)" in line for line in local[1]), local
    remote = _outcome(_run(server, tmp_path, "verify", "-m", manifest, f"{H}:{root}", "--json", "--no-cache"))
    assert remote == local
    e = env()
    piped = subprocess.run(pcopy_cmd("verify", "-m", "-", f"{H}:{root}", "--no-cache", *server.args()),
                           input=manifest.read_bytes(), capture_output=True, env=e, timeout=60)
    lines = [re.sub(r" in [0-9.]+ s$", "", line) for line in piped.stderr.decode("utf-8", "surrogateescape")
             .splitlines()]
    assert piped.returncode == 4
    assert sorted(lines[:-1]) + lines[-1:] == [line.replace(f"{manifest}:", "<stdin>:") for line in local[1]]
    empty = tmp_path / "empty.xxh"
    empty.write_bytes(b"junk\n")
    bad = _run(server, tmp_path, "verify", "-m", empty, f"{H}:{root}", "--no-cache")
    assert bad.returncode == 1
    assert bad.err.splitlines()[-1] == f"pcopy: error: {H}: {empty}: no properly formatted checksum lines found"


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_a_missing_remote_root_is_one_line(server, tmp_path, direction):
    src = tmp_path / "src"
    make_tree(src, {"f": b"x"})
    nope = tmp_path / "nope"
    what = "destination" if direction == "push" else "source"
    args = (src, f"{H}:{nope}") if direction == "push" else (f"{H}:{nope}", src)
    proc = _run(server, tmp_path, "verify", *args)
    assert proc.returncode == 1
    assert proc.err.splitlines() == [f"pcopy: error: {H}: {nope}: cannot read {what}: No such file or directory"]
    assert wait_for(lambda: not sshd.serve_pids(server), 5)
    both = _run(server, tmp_path, "verify", f"{H}:{src}", f"{H}:{src}")
    assert both.returncode == 2 and "both remote" in both.err


SLOW_SERVE = """\
#!/bin/sh
# pcopy serve whose answers reach the client at about 80 KiB/s: a verify that runs long enough to be
# stopped; {marker} appears once the handshake and the first directories have gone through
{python} -m pcopy "$@" | {python} -c '
import os, sys, time
r, w = sys.stdin.buffer, sys.stdout.buffer
sent = 0
while True:
    b = r.read1(4096)
    if not b:
        break
    w.write(b); w.flush(); sent += len(b)
    if sent > 8192 and not os.path.exists("{marker}"):
        open("{marker}", "w").close()
    time.sleep(0.05)'
"""


def _slow_verify(server, tmp_path, direction):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {f"d{d:03d}/f{i}": f"{d} {i}".encode() for d in range(300) for i in range(10)})
    subprocess.run(["cp", "-a", src, dst], check=True)
    script = tmp_path / "slow-serve"
    marker = tmp_path / "running"
    script.write_text(SLOW_SERVE.format(python=sys.executable, marker=marker))
    script.chmod(0o755)
    e = env()
    e["PCOPY_CACHE"] = str(tmp_path / "cache.sqlite3")
    cmd = pcopy_cmd("verify", *_remote_args(direction, src, dst), "--no-cache", "-e", server.rsh, "--remote-pcopy",
                    str(script))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd="/")
    assert wait_for(marker.exists, 30), proc.stderr  # well into the run (it takes some seconds)
    assert sshd.serve_pids(server) and _ssh(proc.pid)
    return proc


_ssh = ssh_children


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_a_dropped_connection_is_one_line_naming_the_host(server, tmp_path, direction):
    proc = _slow_verify(server, tmp_path, direction)
    for pid in _ssh(proc.pid):
        os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 1, err
    assert len(lines) == 1 and lines[0].startswith(f"pcopy: error: {H}: connection lost"), err
    assert wait_for(lambda: not sshd.serve_pids(server), 5), sshd.serve_pids(server)


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_ctrl_c_stops_both_ends(server, tmp_path, direction):
    proc = _slow_verify(server, tmp_path, direction)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 2.5
    assert wait_for(lambda: not sshd.serve_pids(server), 2), sshd.serve_pids(server)


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
    if h.get("op") == "hello":
        send({"ok": True, "proto": h["proto"], "version": "0.0.0"})
    elif h.get("op") == "vtree":
        send({"t": "dir", "reldir": "", "error": None, "entry_errors": [], "names": ["../escape"], "shape": [1],
              "problems": [], "out": [["0" * 32, 1, True, None]]})
"""


def test_a_hostile_remote_name_is_refused_in_one_line(server, tmp_path):
    src = tmp_path / "src"
    make_tree(src, {"f": b"x"})
    script = tmp_path / "hostile.py"
    script.write_text(HOSTILE)
    proc = _run(server, tmp_path, "verify", src, f"{H}:/x", remote_pcopy=f"{sys.executable} {script}")
    assert proc.returncode == 1, proc.err
    assert proc.err.splitlines() == [f"pcopy: error: {H}: bad directory frame from the remote pcopy: "
                                     "bad name from the other end: '../escape'"], proc.err


@pytest.mark.skipif(SETPRIV is None, reason="setpriv is not installed")
def test_hash_of_a_remote_tree_reports_as_a_local_hash(server, shared_dir):
    root = os.path.join(shared_dir, "root")
    make_tree(root, {"ok": b"fine", "secret": File(b"s", mode=0o000)})
    out = os.path.join(shared_dir, "out")
    os.makedirs(out, mode=0o777)
    os.chmod(out, 0o777)
    local = _outcome(_run(server, shared_dir, "hash", root, "-o", f"{out}/local.xxh", "--json", "--no-cache",
                          local=AS_NOBODY))
    rp = " ".join([*AS_NOBODY, sys.executable, "-m", "pcopy"])
    remote = _outcome(_run(server, shared_dir, "hash", f"{H}:{root}", "-o", f"{out}/remote.xxh", "--json",
                           "--no-cache", remote_pcopy=rp))
    assert local[0] == 3 and [(d["kind"], d["path"]) for d in local[2]["differences"]] == [("error", "secret")]
    assert remote == local  # the differences too (the remote keeps none of its own; the client lists them)
    with open(f"{out}/local.xxh", "rb") as a, open(f"{out}/remote.xxh", "rb") as b:
        assert a.read() == b.read()


def test_a_big_directory_travels_in_parts(tmp_path, monkeypatch):
    """In memory, without ssh: the remote's frames of a directory split into parts (verify_serve._frames)
    are joined by the client into what one frame would have said."""
    from pcopy.remote import transport, verify, verify_serve

    root = tmp_path / "root"
    make_tree(root, {**{f"f{i:02d}": b"x" * i for i in range(30)}, "sub/g": b"g", "link": Link("f01")})

    def frames(limit: int) -> list:
        monkeypatch.setattr(verify_serve, "FRAME_NAMES", limit)
        out: list = []
        verify_serve._stream(out.append, str(root), {"cache": False, "jobs": 1}, set())
        return out + [{"ok": True}]

    class Conn:
        spec = transport.Spec(None, "fake", "/")

        def __init__(self, items: list) -> None:
            self.items = items

        def recv(self) -> tuple:
            return self.items.pop(0), b""

    whole, parts = frames(10**6), frames(7)
    assert len(whole) == 3 and sum(1 for f in parts if f.get("more")) == 4, parts
    got = []
    for items in (whole, parts):
        lister = verify._RemoteLister(Conn(items), None)
        got.append([(m[0], m[1].side, m[1].out) for m in (lister.get(""), lister.get("sub"))])
        lister.finish()
    assert got[0] == got[1]
    assert len(got[0][0][1].names) == 32 and len(got[0][0][2]) == 30


def test_the_remote_stops_walking_once_the_client_has_all_it_asked_for(tmp_path):
    """In memory: after the client's ``end`` the remote's walk reads no more directories (a tree only the
    remote holds is not hashed to the end for nothing)."""
    import threading

    from pcopy.remote import verify_serve

    root = tmp_path / "root"
    make_tree(root, {f"d{d:03d}/f": b"x" for d in range(200)})
    first = threading.Event()
    frames: list = []

    def emit(header: dict) -> None:
        frames.append(header)
        first.set()

    def next_frame() -> tuple:
        assert first.wait(30)
        return {"t": "end"}, b""

    assert verify_serve.serve_tree(emit, next_frame, {"root": str(root), "cache": False, "jobs": 1}) == {}
    assert 1 <= len(frames) < 100, len(frames)


def test_directories_the_client_prunes_are_not_read_by_the_remote(tmp_path):
    """In memory: the remote's walk skips the directories the client named (``prune``) before it got there."""
    import threading

    from pcopy.remote import verify_serve

    root = tmp_path / "root"
    make_tree(root, {f"d{d:03d}/sub/f": b"x" for d in range(200)})
    last = threading.Event()
    frames: list = []
    said = []

    def emit(header: dict) -> None:
        frames.append(header["reldir"])
        if header["reldir"] == "d099/sub":
            last.set()

    def next_frame() -> tuple:
        said.append(1)
        if len(said) == 1:
            return {"t": "prune", "paths": [f"d{d:03d}" for d in range(100, 200)]}, b""
        assert last.wait(30)
        return {"t": "end"}, b""

    verify_serve.serve_tree(emit, next_frame, {"root": str(root), "cache": False, "jobs": 1})
    assert "d099/sub" in frames and not any(f.startswith("d1") for f in frames), frames[-20:]


def test_ctrl_c_while_the_session_opens(server, tmp_path):
    """SIGINT while ssh is still connecting (the local tree being read ahead): exit 130 at once, the
    half-open session killed."""
    src = tmp_path / "src"
    make_tree(src, {f"d{d}/f{i}": b"x" for d in range(20) for i in range(20)})
    marker = tmp_path / "connecting"
    slow = tmp_path / "slow-ssh"
    slow.write_text(f'#!/bin/sh\ntouch {marker}\nsleep 30\nexec {server.rsh} "$@"\n')
    slow.chmod(0o755)
    e = env()
    e["PCOPY_CACHE"] = str(tmp_path / "cache.sqlite3")
    proc = subprocess.Popen(pcopy_cmd("verify", src, f"{H}:{src}", "-e", str(slow), "--remote-pcopy",
                                      server.remote_pcopy), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
    assert wait_for(marker.exists, 30)
    opener = [pid for pid, _ in children(proc.pid)]
    assert opener
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 2.5
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in opener), 2)
