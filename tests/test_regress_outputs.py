"""Regression tests: what pcopy writes (black box, ``python -m pcopy`` in subprocesses).

Covers:

* defect 4: output files the user names (``hash -o``, ``--manifest``) behave like a
  shell redirect: an existing character device or FIFO is written in place, a
  symlink is followed (it stays a link, its target gets the content); only a
  regular or new file goes through a temp name + rename, and that temp name can
  never lead outside DST; ``sync --delete --manifest DST/MANIFEST`` works twice and
  still sets directory times; a manifest whose directory is missing fails with one
  line naming the path the user gave, before DST is created;
* defect 5: a closed stdout (``| head -1``) ends ``hash`` and ``map`` quietly and
  promptly; ``hash > /dev/full`` is one ``stdout: No space left`` line and exit 1;
* defect 8: ``hash`` lists every file it saw, or names it in an error line, even
  when its directory cannot be opened any more when a worker gets to it;
* defect 11: a manifest on a full file system fails with an error naming the
  manifest (never the pathless ``pcopy: error: : ...``).

Devices and FIFOs are our own (mknod/mkfifo in tmp_path), never the machine's.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import stat
import subprocess
import time

import pytest
import xxhash
from conftest import make_tree
from regress_helpers import (
    Running,
    assert_gone,
    assert_no_traceback,
    error_lines,
    need_root,
    reading_under,
    run_pcopy,
    shared_dir,  # noqa: F401 (fixture)
    sparse_file,
    wait_for,
)

pytestmark = pytest.mark.faults

SPEC = {"a": b"alpha\n", "b": b"bravo\n", "sub/c": b"charlie\n"}


def expected_manifest(spec=SPEC) -> list:
    return sorted(f"{xxhash.xxh3_128_hexdigest(data)}  {rel}" for rel, data in spec.items())


def manifest_lines(text: str) -> list:
    return sorted(line for line in text.splitlines() if line)


@pytest.fixture
def src(tmp_path):
    make_tree(tmp_path / "src", SPEC)
    return tmp_path / "src"


def null_device(path) -> str:
    """Our own character device 1,3 (what /dev/null is), made in tmp_path."""
    need_root()
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return os.fspath(path)


def assert_null_device(path) -> None:
    st = os.lstat(path)
    assert stat.S_ISCHR(st.st_mode), f"{path} is no longer a character device (mode {oct(st.st_mode)})"
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)


# --------------------------------------------------------------------------- defect 4


def test_hash_output_to_a_device_is_written_in_place(src, tmp_path):
    dev = null_device(tmp_path / "null")
    proc = run_pcopy("hash", src, "-o", dev, "--no-cache", "--no-progress")
    assert proc.returncode == 0, proc.err
    assert_null_device(dev)
    assert [p.name for p in tmp_path.iterdir() if "pcopy" in p.name] == [], "a temp file was left beside it"


def test_copy_manifest_to_a_device_is_written_in_place(src, tmp_path):
    dev = null_device(tmp_path / "null")
    proc = run_pcopy("copy", src, tmp_path / "dst", "--manifest", dev, "--no-progress")
    assert proc.returncode == 0, proc.err
    assert_null_device(dev)


def _read_fifo_while(run: Running, fd: int, timeout: float) -> bytes:
    """Read the FIFO until its writer closes it (EOF after data) or the run ended and nothing more came."""
    data, ended_at = b"", None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                chunk = None
            if chunk == b"" and data:
                return data  # the writer closed it: EOF
            if chunk:
                data += chunk
                continue
        if run.proc.poll() is not None:
            ended_at = ended_at or time.monotonic()
            if time.monotonic() - ended_at > 1.0:
                return data
        time.sleep(0.01)
    return data


@pytest.mark.parametrize("command", ["hash", "copy"])
def test_output_to_a_fifo_goes_through_the_fifo(src, tmp_path, command):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the reader is there before pcopy opens it
    try:
        args = (["hash", src, "-o", fifo, "--no-cache"] if command == "hash"
                else ["copy", src, tmp_path / "dst", "--manifest", fifo])
        with Running(*args, "--no-progress") as run:
            data = _read_fifo_while(run, fd, 30)
            code = run.wait(10)
            stderr = run.stderr_text()
    finally:
        os.close(fd)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced by a regular file"
    assert code == 0, stderr
    assert manifest_lines(data.decode()) == expected_manifest(), "the manifest did not come through the FIFO"


@pytest.mark.parametrize("command", ["hash", "copy"])
def test_output_through_a_symlink_writes_its_target(src, tmp_path, command):
    target = tmp_path / "real-manifest.xxh"
    target.write_text("old content\n")
    link = tmp_path / "manifest-link"
    link.symlink_to(target)
    args = (["hash", src, "-o", link, "--no-cache"] if command == "hash"
            else ["copy", src, tmp_path / "dst", "--manifest", link])
    proc = run_pcopy(*args, "--no-progress")
    assert proc.returncode == 0, proc.err
    assert os.path.islink(link) and os.readlink(link) == str(target), "the symlink was replaced"
    assert manifest_lines(target.read_text()) == expected_manifest(), "the symlink's target did not get the manifest"


def test_planted_temp_symlink_does_not_lead_outside_dst(src, tmp_path):
    """A symlink at DST/MANIFEST.pcopy-tmp (today's temp name) pointing outside DST is never written through."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"must not change\n")
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "MANIFEST.pcopy-tmp").symlink_to(victim)
    proc = run_pcopy("copy", src, dst, "--manifest", dst / "MANIFEST", "--no-progress")
    assert victim.read_bytes() == b"must not change\n", "pcopy wrote outside DST through a planted symlink"
    assert not os.path.islink(dst / "MANIFEST"), "the planted symlink became the manifest"
    assert proc.returncode == 0, proc.err
    assert manifest_lines((dst / "MANIFEST").read_text()) == expected_manifest()


def test_sync_delete_with_manifest_inside_dst_twice(src, tmp_path):
    dst = tmp_path / "dst"
    for run in (1, 2):
        proc = run_pcopy("sync", src, dst, "--delete", "--manifest", dst / "MANIFEST", "--no-progress")
        assert proc.returncode == 0, f"run {run}: exit {proc.returncode}: {proc.err}"
        assert os.path.isfile(dst / "MANIFEST") and not os.path.islink(dst / "MANIFEST"), f"run {run}: no manifest"
        assert os.stat(dst).st_mtime_ns == os.stat(src).st_mtime_ns, f"run {run}: DST root times were not set"
        assert os.stat(dst / "sub").st_mtime_ns == os.stat(src / "sub").st_mtime_ns, f"run {run}: sub times"


def test_manifest_in_a_missing_directory_fails_before_creating_dst(src, tmp_path):
    manifest = tmp_path / "no-such-dir" / "m.xxh"
    dst = tmp_path / "dst"
    proc = run_pcopy("copy", src, dst, "--manifest", manifest, "--no-progress")
    assert_no_traceback(proc.err)
    assert proc.returncode == 1, proc.err
    lines = [line for line in proc.err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("pcopy: error:") and str(manifest) in lines[0], lines
    assert ".pcopy-tmp" not in lines[0], f"the error names pcopy's temp file, not the user's path: {lines[0]}"
    assert not os.path.lexists(dst), "DST was created although the run could not write its manifest"


# --------------------------------------------------------------------------- defect 5


@pytest.fixture(scope="module")
def many_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("many") / "root"
    for d in range(80):
        sub = root / f"d{d:02d}"
        sub.mkdir(parents=True)
        for i in range(250):  # 20,000 small files
            (sub / f"f{i:03d}").write_bytes(b"%d/%d\n" % (d, i))
    return root


def _head_one(args, env_extra=None) -> tuple:
    """Run pcopy ARGS with stdout to a pipe we close after one line; (exit code, stderr, seconds, workers)."""
    with Running(*args, env_extra=env_extra) as run:
        fd, line = run.proc.stdout.fileno(), b""
        deadline = time.monotonic() + 30
        while b"\n" not in line and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                chunk = os.read(fd, 1)
                if not chunk:
                    break
                line += chunk
        assert line.endswith(b"\n"), f"no output line: {run.stderr_text()[-1000:]!r}"
        run.workers()
        run.proc.stdout.close()  # what `head -1` does once it has its line
        t0 = time.monotonic()
        code = run.wait(10)
        seconds = time.monotonic() - t0
        stderr = run.stderr_text()
        return code, stderr, seconds, run.seen


@pytest.mark.parametrize("command", ["hash", "map"])
def test_closed_stdout_ends_quietly_and_promptly(many_files, tmp_path, command):
    (tmp_path / "lenmod.py").write_text("def size(path):\n    return len(path)\n")
    args = (["hash", many_files, "--no-cache", "--no-progress"] if command == "hash"
            else ["map", many_files, "lenmod:size", "--no-progress"])
    code, stderr, seconds, workers = _head_one(args, env_extra={"PYTHONPATH": str(tmp_path)})
    assert code is not None, f"{command} still running 10 s after its stdout was closed: {stderr[-600:]!r}"
    assert code in (0, 141, -13), f"exit code {code}: {stderr[-600:]!r}"
    assert "Exception" not in stderr and "Traceback" not in stderr, stderr[-1500:]
    assert "Broken pipe" not in stderr and "BrokenPipe" not in stderr, stderr[-600:]
    assert_gone(workers, 2.0, "worker processes")


def test_hash_to_a_full_stdout_is_one_error_line(src, tmp_path):
    with open("/dev/full", "wb") as full:  # writing to /dev/full is harmless: it only fails
        proc = run_pcopy("hash", src, "--no-cache", "--no-progress", stdout=full, timeout=10)
    assert_no_traceback(proc.err)
    errors = error_lines(proc.err)
    assert len(errors) == 1, proc.err
    assert "stdout" in errors[0] and "no space left" in errors[0].lower(), errors
    assert proc.returncode == 1, proc.err


# --------------------------------------------------------------------------- defect 8


def test_hash_names_every_file_it_cannot_list(shared_dir):  # noqa: F811
    """A directory swapped for a file after it was listed: its files are errors, never silently left out.

    ``-j 1``: the only worker is busy with a big file in ``a/`` while the
    parent lists ``b/`` (seen by b's atime moving: relatime updates an atime
    older than the mtime on readdir); then ``b`` is replaced by a regular file,
    and put back once the run is over.
    """
    root = os.path.join(shared_dir, "root")
    os.makedirs(os.path.join(root, "a"))
    os.makedirs(os.path.join(root, "b"))
    sparse_file(os.path.join(root, "a", "big"), 48 << 30, b"big")  # a few seconds of reading
    names = [f"b/f{i:02d}" for i in range(40)]
    for rel in names:
        with open(os.path.join(root, rel), "w") as f:
            f.write(rel)
    bdir = os.path.join(root, "b")
    os.utime(bdir, (0, os.stat(bdir).st_mtime))  # atime in 1970: the next readdir moves it
    away = os.path.join(shared_dir, "b-away")
    with Running("hash", root, "--no-cache", "--no-progress", "-j", "1") as run:
        run.wait_busy(os.path.join(root, "a"))
        assert wait_for(lambda: os.stat(bdir).st_atime > 1, 20), "the parent never listed b/"
        assert run.proc.poll() is None and reading_under(run.pid, os.path.join(root, "a")), \
            "the big file was done before b/ could be swapped: make it bigger"
        os.rename(os.path.join(root, "b"), away)
        open(os.path.join(root, "b"), "w").close()
        code = run.wait(60)
        out = run.proc.stdout.read().decode()
        stderr = run.stderr_text()
    os.unlink(os.path.join(root, "b"))
    os.rename(away, os.path.join(root, "b"))
    assert code is not None, "hash did not finish"
    listed = {line.split("  ", 1)[1] for line in out.splitlines() if "  " in line}
    named = {m.group(1) for m in (re.match(r"pcopy: error: (.*?): ", line) for line in error_lines(stderr)) if m}
    everything = {"a/big", *names}
    assert listed <= everything
    silent = sorted(everything - listed - named)
    assert not silent, f"files neither in the manifest nor named in an error: {silent[:5]}... ({len(silent)})"
    assert code == 3, f"exit {code}: {stderr[-600:]!r}"


# --------------------------------------------------------------------------- defect 11


@contextlib.contextmanager
def tiny_tmpfs(path, size="64k"):
    need_root()
    os.makedirs(path, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", os.fspath(path)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", os.fspath(path)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", os.fspath(path)], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def wide_src(tmp_path_factory):
    """3,000 files: a manifest of ~140 KB, more than the 64 KiB file system holds."""
    root = tmp_path_factory.mktemp("wide") / "src"
    root.mkdir()
    for i in range(3000):
        (root / f"file-{i:05d}").write_bytes(b"%d" % i)
    return root


@pytest.mark.parametrize("command", ["copy", "hash"])
def test_manifest_on_a_full_file_system_names_the_manifest(wide_src, tmp_path, command):
    with tiny_tmpfs(tmp_path / "full") as full:
        manifest = full / "m.xxh"
        args = (["copy", wide_src, tmp_path / "dst", "--manifest", manifest, "-q"] if command == "copy"
                else ["hash", wide_src, "-o", manifest, "--no-cache", "-q"])
        proc = run_pcopy(*args, "--no-progress", timeout=15)
    assert_no_traceback(proc.err)
    assert not re.search(r"^pcopy: error: : ", proc.err, re.M), f"an error without its path: {proc.err!r}"
    errors = error_lines(proc.err)
    assert any(str(manifest) in line and "no space left" in line.lower() for line in errors), proc.err
    assert proc.returncode != 0
