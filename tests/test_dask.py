"""The Dask backend, against a real ``distributed.LocalCluster`` on loopback.

Two worker processes with one thread each, no dashboard, 127.0.0.1 only; the
cluster is shared by the module (starting one costs seconds). Faults are
injected inside the worker processes with ``client.run`` (see dask_faults).
The tests at the bottom run without the extra: Dask must stay optional.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import shutil
import signal
import subprocess
import threading
import time

import pytest
import xxhash
from conftest import PYTHON, make_tree, temp_files, tree_snapshot

import pcopy
from pcopy.model import entries, results
from pcopy.model.batching import BATCH_FILES
from pcopy.options import Options
from pcopy.transfer import engine

try:
    import distributed
except ImportError:  # the 'dask' extra is not installed
    distributed = None
else:
    import dask_faults

    from pcopy.runtime import dask as dask_backend

needs_dask = pytest.mark.skipif(
    distributed is None,
    reason="the 'dask' extra is not installed (pip install -e '.[test,dask]', as scripts/test does)")

ROOT = pathlib.Path(__file__).resolve().parent.parent
SETTLE = 1.5  # seconds without new source opens after which stopped workers count as quiet


def local_cluster():
    """2 worker processes × 1 thread on 127.0.0.1; no dashboard, and the scheduler's
    small HTTP server (health, metrics) on a free port rather than 8787."""
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None,
                                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = local_cluster()
    try:
        # One warm-up run creates Dask's process-wide helper threads (offload and
        # callback executors, alive until exit) before the thread-leak check looks.
        warm = tmp_path_factory.mktemp("warm-up")
        make_tree(warm / "src", {"a": b"a"})
        assert pcopy.copytree(warm / "src", warm / "dst", scheduler=cluster.scheduler_address).copied == 1
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def client(cluster):
    """A second client, for the test's own look at the cluster; worker faults undone after."""
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        yield client
        client.run(dask_faults.restore)
        client.wait_for_workers(2, timeout=60)


def many_files(dirs: int, files: int) -> dict:
    return {f"d{d}/f{i:03d}": f"{d}:{i}".encode() * (i % 7 + 1) for d in range(dirs) for i in range(files)}


def lines(path) -> list:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


def wait_until_quiet(log) -> int:
    """Wait until the workers stop opening source files; return how many they opened."""
    seen, since = -1, time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        n = len(lines(log))
        if n != seen:
            seen, since = n, time.monotonic()
        elif time.monotonic() - since > SETTLE:
            return n
        time.sleep(0.1)
    raise AssertionError("workers never went quiet")


def run_when(predicate, action) -> threading.Thread:
    """Call ``action`` in a thread as soon as ``predicate()`` holds (gives up after 60 s)."""
    def watch():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if predicate():
                action()
                return
            time.sleep(0.02)
    thread = threading.Thread(target=watch, name="test-watcher")
    thread.start()
    return thread


# --------------------------------------------------------------------------- copy


@needs_dask
def test_copy_through_cluster_reproduces_the_tree(cluster, client, tmp_path, sample_src):
    dst, log = tmp_path / "dst", tmp_path / "opens.log"
    client.run(dask_faults.log_source_opens, str(log))
    before = tree_snapshot(sample_src, atime=True)

    report = pcopy.copytree(sample_src, dst, scheduler=cluster.scheduler_address)

    assert report.failed == 0, report.failures
    assert tree_snapshot(dst, atime=True) == before
    assert temp_files(dst) == []
    files = [r for r in report.results if r.kind == entries.FILE]
    links = [r for r in report.results if r.kind == entries.SYMLINK]
    assert (report.copied, report.symlinks) == (len(files), len(links))
    assert len(files) + len(links) == sum(item[0] in ("file", "symlink") for item in before.values())
    for result in files:
        assert result.digest == xxhash.xxh3_128((sample_src / result.relpath).read_bytes()).hexdigest()
    # the files were read by the cluster's worker processes, not by this one
    readers = {int(pid) for pid in lines(log)}
    assert readers and readers <= set(client.run(os.getpid).values())
    assert os.getpid() not in readers


@needs_dask
def test_many_batches_each_file_once(cluster, client, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    spec = many_files(4, 300)  # > batch_files per directory: several batches each
    make_tree(src, spec)
    report = pcopy.copytree(src, dst, scheduler=cluster.scheduler_address, jobs=1)
    assert report.copied == len(spec) and report.failed == 0
    assert sorted(r.relpath for r in report.results if r.kind != "dir") == sorted(spec)
    assert tree_snapshot(dst) == tree_snapshot(src)


@needs_dask
def test_an_existing_client_is_used_and_left_open(cluster, client, tmp_path):
    make_tree(tmp_path / "src", {"a": b"a", "d/b": b"b"})
    report = pcopy.copytree(tmp_path / "src", tmp_path / "dst", scheduler=client)
    assert report.copied == 2 and report.failed == 0
    assert client.status == "running"
    assert client.submit(sum, [1, 2]).result() == 3


@needs_dask
def test_rerun_skips_unchanged_and_copies_changed(cluster, client, tmp_path, sample_src):
    """Stands in for ``sync`` (being built on the same engine): a rerun only copies changes."""
    dst = tmp_path / "dst"
    first = pcopy.copytree(sample_src, dst, scheduler=cluster.scheduler_address)
    inodes = {rel: os.lstat(dst / rel).st_ino for rel in tree_snapshot(dst) if rel != "."}

    second = pcopy.copytree(sample_src, dst, scheduler=cluster.scheduler_address)
    assert second.copied == 0 and second.failed == 0 and second.skipped == first.copied + first.symlinks
    assert {rel: os.lstat(dst / rel).st_ino for rel in inodes} == inodes  # nothing rewritten

    (sample_src / "hello.txt").write_bytes(b"hello again, longer\n")
    third = pcopy.copytree(sample_src, dst, scheduler=cluster.scheduler_address)
    assert [r.relpath for r in third.results if r.status == results.COPIED] == ["hello.txt"]
    assert third.skipped == first.copied + first.symlinks - 1
    assert tree_snapshot(dst) == tree_snapshot(sample_src)


@needs_dask
def test_manifest_through_cluster(cluster, client, tmp_path):
    src, dst, manifest = tmp_path / "src", tmp_path / "dst", tmp_path / "MANIFEST"
    spec = {**many_files(2, 30), "top": b"top", "sub/deeper/f": b"deep"}
    make_tree(src, spec)
    report = pcopy.copytree(src, dst, scheduler=cluster.scheduler_address, manifest=manifest)
    assert report.failed == 0
    expected = sorted(xxhash.xxh3_128(data).hexdigest().encode() + b"  " + rel.encode() for rel, data in spec.items())
    assert sorted(manifest.read_bytes().splitlines()) == expected
    assert not os.path.exists(str(manifest) + ".pcopy-tmp")
    xxhsum = shutil.which("xxhsum")
    if xxhsum:  # the stock tool agrees (checked in CI, where .ci/run installs it)
        check = subprocess.run([xxhsum, "-c", str(manifest)], cwd=dst, capture_output=True)
        assert check.returncode == 0, check.stderr


# --------------------------------------------------------------------------- failures


@needs_dask
def test_a_cluster_gets_bigger_bundles(cluster, client, tmp_path):
    """A cluster task costs scheduler round trips: 40 directories of 50 files travel in bundles of up
    to SCHEDULER_BUNDLE_SCALE x BATCH_FILES files: fewer tasks than local bundles would need (a
    slow walk may send a bundle before it is full, so not exactly 2,000 / 1,024)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {f"d{d:02d}/f{i}": b"x" for d in range(40) for i in range(50)})
    with distributed.get_task_stream(client=client) as stream:
        report = pcopy.copytree(src, dst, scheduler=cluster.scheduler_address)
        client.run(lambda: None)  # the stream has the run's tasks once a later round trip returned
    assert report.ok and report.copied == 2000
    tasks = [t for t in stream.data if "pcopy_batch" in t["key"]]
    assert engine.SCHEDULER_BUNDLE_SCALE > 1
    assert 2 <= len(tasks) < 2000 // BATCH_FILES, len(tasks)


@needs_dask
def test_failing_file_is_reported_and_the_rest_copied(cluster, client, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a", "secret": b"s", "z/b": b"b"})
    client.run(dask_faults.fail_source_open, "secret")

    report = pcopy.copytree(src, dst, scheduler=cluster.scheduler_address)

    assert report.failed == 1 and report.copied == 2
    (failure,) = report.failures
    assert (failure.relpath, failure.message) == ("secret", "source: Permission denied")
    assert not os.path.lexists(dst / "secret")
    assert (dst / "a").read_bytes() == b"a" and (dst / "z" / "b").read_bytes() == b"b"
    assert temp_files(dst) == []


@needs_dask
def test_batch_whose_task_crashes_fails_each_of_its_files(cluster, client, tmp_path):
    """A batch that raises fails every one of its files (never a gap); the directory that shares its
    bundle is copied."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"crashy/boom": b"x", "crashy/other": b"y", "fine/f": b"f"})
    client.run(dask_faults.crash_on_source_open, "boom")

    report = pcopy.copytree(src, dst, scheduler=cluster.scheduler_address)

    assert report.copied == 1 and report.failed == 2
    assert sorted(r.relpath for r in report.failures) == ["crashy/boom", "crashy/other"]
    assert all(r.message == "worker failed: RuntimeError: injected crash on boom" for r in report.failures)
    assert (dst / "fine" / "f").read_bytes() == b"f"


@needs_dask
def test_cli_json_exit_code_env_var_and_relative_paths(cluster, client, tmp_path):
    make_tree(tmp_path / "src", {"ok": b"ok", "secret": b"s", "d/e": b"e"})
    client.run(dask_faults.fail_source_open, "secret")
    env = {**os.environ, "PCOPY_SCHEDULER": cluster.scheduler_address}
    # relative SRC and DST: the workers' working directory is not ours
    proc = subprocess.run([PYTHON, "-m", "pcopy", "copy", "src", "dst", "--json", "--no-progress"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["copied"], data["failed"]) == (2, 1)
    assert data["failures"] == [{"path": "secret", "error": "source: Permission denied", "reason": "error"}]
    assert "pcopy: error: secret: source: Permission denied" in proc.stderr
    assert (tmp_path / "dst" / "d" / "e").read_bytes() == b"e"


@needs_dask
def test_worker_that_sees_another_dst_is_refused(cluster, client, tmp_path):
    src, dst, manifest = tmp_path / "src", tmp_path / "dst", tmp_path / "MANIFEST"
    make_tree(src, {"a": b"a"})
    dst.mkdir()
    client.run(dask_faults.hide_tree, str(dst))

    with pytest.raises(pcopy.PcopyError) as info:
        pcopy.copytree(src, dst, scheduler=cluster.scheduler_address, manifest=manifest)

    assert "every worker must see SRC and DST at the same paths" in str(info.value)
    assert info.value.exit_code == 1
    assert os.listdir(dst) == []  # the probe file is gone, nothing was copied
    assert not os.path.exists(manifest) and not os.path.exists(str(manifest) + ".pcopy-tmp")


@needs_dask
def test_unreachable_scheduler_is_fatal(tmp_path, monkeypatch):
    make_tree(tmp_path / "src", {"a": b"a"})
    monkeypatch.setattr(dask_backend, "CONNECT_TIMEOUT", 1.0)
    with pytest.raises(pcopy.PcopyError) as info:
        pcopy.copytree(tmp_path / "src", tmp_path / "dst", scheduler="tcp://127.0.0.1:9")
    assert "tcp://127.0.0.1:9: cannot connect to the Dask scheduler" in str(info.value)
    assert info.value.exit_code == 1


# --------------------------------------------------------------------------- interruption


@needs_dask
def test_interrupt_cancels_queued_batches_and_stops_running_ones(cluster, client, tmp_path):
    src, dst, log, manifest = tmp_path / "src", tmp_path / "dst", tmp_path / "opens.log", tmp_path / "M"
    spec = many_files(4, 40)
    make_tree(src, spec)
    client.run(dask_faults.log_source_opens, str(log), 0.2)  # a batch of 40 files takes 8 s
    stop = threading.Event()
    watcher = run_when(lambda: len(lines(log)) >= 1, stop.set)
    options = Options(src=str(src), dst=str(dst), batch_files=40, manifest=str(manifest))
    try:
        with pytest.raises(pcopy.Interrupted) as info:
            engine.copy_tree(options, scheduler=cluster.scheduler_address, stop_event=stop)
    finally:
        watcher.join()
    assert info.value.exit_code == 130
    opened = wait_until_quiet(log)
    # Two batches were running (one per worker); without the stop flag each would
    # have opened all its 40 files. The queued ones were cancelled: never started.
    assert 0 < opened < 40
    assert client.run_on_scheduler(dask_faults.pcopy_tasks) == []
    copied = [rel for rel in spec if os.path.lexists(dst / rel)]
    assert len(copied) < len(spec)
    for rel in copied:  # what has its final name is complete
        assert (dst / rel).read_bytes() == spec[rel]
    assert temp_files(dst) == []
    assert not os.path.exists(manifest) and not os.path.exists(str(manifest) + ".pcopy-tmp")


@needs_dask
def test_cli_sigint_exits_130(cluster, client, tmp_path):
    src, dst, log = tmp_path / "src", tmp_path / "dst", tmp_path / "opens.log"
    make_tree(src, many_files(2, 40))
    client.run(dask_faults.log_source_opens, str(log), 0.2)
    proc = subprocess.Popen([PYTHON, "-m", "pcopy", "copy", str(src), str(dst), "--no-progress",
                             "--scheduler", cluster.scheduler_address], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not lines(log) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "pcopy: interrupted by SIGINT" in err
    wait_until_quiet(log)
    assert temp_files(dst) == []


# --------------------------------------------------------------------------- lost worker


@pytest.fixture
def own_cluster(cluster):
    """A cluster of its own (same shape), for a test that kills one of its workers."""
    with local_cluster() as own:
        yield own


@needs_dask
def test_worker_killed_mid_batch_is_rerun_and_its_temp_file_removed(own_cluster, tmp_path):
    src, dst, marker = tmp_path / "src", tmp_path / "dst", tmp_path / "stalled.pid"
    cluster = own_cluster
    client = distributed.Client(cluster.scheduler_address, set_as_default=False)
    client.wait_for_workers(2, timeout=60)
    spec = many_files(3, 30)
    make_tree(src, spec)
    worker_pids = set(client.run(os.getpid).values())
    # The first worker about to rename a finished "f007" stalls there, its temp file on disk.
    client.run(dask_faults.stall_before_rename, "f007", str(marker))
    killed = []

    def kill():
        pid = int(marker.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = run_when(lambda: marker.exists() and marker.read_text().strip().isdigit(), kill)
    try:
        report = pcopy.copytree(src, dst, scheduler=cluster.scheduler_address)
    finally:
        killer.join()
        client.close()

    assert killed and killed[0] in worker_pids
    assert report.failed == 0, report.failures
    assert report.copied == len(spec)
    assert sorted(r.relpath for r in report.results if r.kind != "dir") == sorted(spec)  # each file reported once
    assert tree_snapshot(dst) == tree_snapshot(src)
    assert temp_files(dst) == []  # the dead worker's temp file was cleaned up


# --------------------------------------------------------------------------- Dask stays optional


def test_dask_is_not_imported_without_a_scheduler(tmp_path):
    make_tree(tmp_path / "src", {"a": b"a", "d/b": b"b"})
    code = ("import sys, pcopy.cli\n"
            "rc = pcopy.cli.main(['copy', sys.argv[1], sys.argv[2], '-q', '--no-progress'])\n"
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n")
    env = {k: v for k, v in os.environ.items() if k != "PCOPY_SCHEDULER"}
    proc = subprocess.run([PYTHON, "-c", code, str(tmp_path / "src"), str(tmp_path / "dst")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.split(None, 1) == ["0", "[]\n"], proc.stderr
    assert (tmp_path / "dst" / "d" / "b").read_bytes() == b"b"


def test_scheduler_without_the_extra_is_a_clear_error(tmp_path):
    make_tree(tmp_path / "src", {"a": b"a"})
    code = ("import sys\n"
            "sys.modules['distributed'] = None  # as if the extra were not installed\n"
            "import pcopy.cli\n"
            "sys.exit(pcopy.cli.main(['copy', sys.argv[1], sys.argv[2], '--scheduler', 'tcp://127.0.0.1:9']))\n")
    proc = subprocess.run([PYTHON, "-c", code, str(tmp_path / "src"), str(tmp_path / "dst")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "pcopy: error: a scheduler needs the 'dask' extra (pip install 'pcopy[dask]')" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_only_the_dask_backend_imports_distributed():
    importers = []
    for path in sorted((ROOT / "pcopy").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if any(name.split(".")[0] in ("dask", "distributed") for name in names):
                importers.append(path.name)
    assert sorted(set(importers)) == ["dask.py"]  # pcopy/runtime/dask.py


def test_scheduler_option_and_env_var_reach_the_api(monkeypatch):
    from pcopy import cli
    from pcopy.cli import commands  # imported by cli.main on first use: patched before that here

    seen = {}
    monkeypatch.setattr(commands.api, "copytree", lambda *a, **k: seen.update(k) or results.Report())
    monkeypatch.setenv("PCOPY_SCHEDULER", "tcp://10.0.0.1:8786")
    assert cli.main(["copy", "s", "d", "-q"]) == 0
    assert seen["scheduler"] == "tcp://10.0.0.1:8786"
    assert cli.main(["copy", "s", "d", "-q", "--scheduler", "tcp://10.0.0.2:8786"]) == 0
    assert seen["scheduler"] == "tcp://10.0.0.2:8786"
    monkeypatch.delenv("PCOPY_SCHEDULER")
    assert cli.main(["copy", "s", "d", "-q"]) == 0
    assert seen["scheduler"] is None
