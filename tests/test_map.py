"""``pcopy map`` and ``pcopy.map_files``: a function on every file, on the bounded pool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import types

import pytest
import transform_helpers
from conftest import Fifo, Link, make_tree

import pcopy
from pcopy.fs import scan
from pcopy.mapping import run as map_run
from pcopy.runtime import progress

TESTS = os.path.dirname(os.path.abspath(__file__))
TREE = {
    "a.txt": b"first line\nsecond\n",
    "sub/b.txt": b"bee\n",
    "sub/deeper/c": b"c",
    "bad-one": b"x",
    "link": Link("a.txt"),
    "fifo": Fifo(),
}
FILES = ["a.txt", "bad-one", "sub/b.txt", "sub/deeper/c"]


def env_with_tests_path() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TESTS, env.get("PYTHONPATH", "")])
    return env


def run_map(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "pcopy", "map", *map(str, args)], capture_output=True,
                          env=env_with_tests_path(), timeout=120, **kwargs)


def json_lines(stdout: bytes) -> list:
    return [json.loads(line) for line in stdout.decode().splitlines()]


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_map_prints_one_json_line_per_file(tmp_path, backend):
    make_tree(tmp_path / "t", {rel: node for rel, node in TREE.items() if rel != "bad-one"})
    root = tmp_path / "t"
    proc = run_map(root, "transform_helpers:size", "--backend", backend, "-j", "2")
    assert proc.returncode == 0, proc.stderr
    lines = json_lines(proc.stdout)
    assert sorted(lines, key=lambda d: d["path"]) == [
        {"path": str(root / rel), "result": len(TREE[rel])} for rel in sorted(set(FILES) - {"bad-one"})]
    assert proc.stderr.decode().startswith("pcopy: map: 3 files, 0 failed in ")


def test_map_failure_is_reported_per_file_and_exits_3(tmp_path):
    make_tree(tmp_path / "t", TREE)
    root = tmp_path / "t"
    proc = run_map(root, "transform_helpers:size_or_fail", "--no-progress")
    assert proc.returncode == 3
    by_path = {d["path"]: d for d in json_lines(proc.stdout)}
    assert set(by_path) == {str(root / rel) for rel in FILES}
    assert by_path[str(root / "bad-one")] == {"path": str(root / "bad-one"), "error": "ValueError: bad file"}
    assert by_path[str(root / "a.txt")]["result"] == len(TREE["a.txt"])
    errors = proc.stderr.decode().splitlines()
    assert f"pcopy: error: {root / 'bad-one'}: ValueError: bad file" in errors
    assert b"Traceback" not in proc.stderr


def test_map_result_that_is_not_json_becomes_its_repr(tmp_path):
    make_tree(tmp_path / "t", {"f": b"x"})
    proc = run_map(tmp_path / "t", "transform_helpers:not_serialisable")
    assert proc.returncode == 0, proc.stderr
    assert json_lines(proc.stdout) == [{"path": str(tmp_path / "t" / "f"), "result": "{1, 2}"}]


def test_map_exclude(tmp_path):
    make_tree(tmp_path / "t", {**TREE, "skip/x": b"x", "keep/skip.log": b"l", "keep/y.txt": b"y"})
    root = tmp_path / "t"
    proc = run_map(root, "transform_helpers:size", "--exclude", "skip/", "--exclude", "*.log",
                   "--exclude", "/bad-one")
    assert proc.returncode == 0, proc.stderr
    paths = sorted(d["path"] for d in json_lines(proc.stdout))
    assert paths == sorted(str(root / rel) for rel in ["a.txt", "sub/b.txt", "sub/deeper/c", "keep/y.txt"])


@pytest.mark.parametrize("args, code, message", [
    (["no_such_module:fn"], 2, "pcopy: error: cannot import 'no_such_module:fn': ModuleNotFoundError: "
                               "No module named 'no_such_module' (modules are looked up in the current "
                               "directory and on PYTHONPATH)"),
    (["transform_helpers"], 2, "pcopy: error: function must be given as module:function, not 'transform_helpers'"),
    (["transform_helpers:size", "--jobs", "0"], 2, None),
])
def test_map_usage_errors(tmp_path, args, code, message):
    make_tree(tmp_path / "t", {"f": b"x"})
    proc = run_map(tmp_path / "t", *args)
    assert proc.returncode == code
    assert proc.stdout == b""
    if message is not None:
        assert proc.stderr.decode().splitlines() == [message]


def test_map_missing_root_is_fatal(tmp_path):
    proc = run_map(tmp_path / "missing", "transform_helpers:size")
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines() == [f"pcopy: error: {tmp_path / 'missing'}: cannot read root: "
                                                 "No such file or directory"]


def test_map_ctrl_c_exits_130_without_hanging(tmp_path):
    make_tree(tmp_path / "t", {f"d{i}/f{j}": b"x" for i in range(4) for j in range(20)})
    proc = subprocess.Popen([sys.executable, "-m", "pcopy", "map", str(tmp_path / "t"), "transform_helpers:slow",
                             "-j", "2", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env_with_tests_path())
    try:
        first = proc.stdout.readline()  # the run is under way once a result is out
        assert json.loads(first)["result"].startswith(str(tmp_path / "t"))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert b"interrupted by SIGINT" in err
    assert len(out.splitlines()) + 1 < 80  # it stopped before finishing


# --------------------------------------------------------------------------- Python API


def test_map_files_with_a_top_level_function_under_processes(tmp_path):
    make_tree(tmp_path / "t", TREE)
    results = pcopy.map_files(transform_helpers.first_line_and_pid, tmp_path / "t", jobs=2, backend="process")
    assert isinstance(results, types.GeneratorType)
    got = {r.path: r for r in results}
    assert set(got) == {os.path.join(tmp_path / "t", rel) for rel in FILES}
    assert all(isinstance(r, pcopy.MapResult) and r.ok for r in got.values())
    assert got[os.path.join(tmp_path / "t", "a.txt")].result["first"] == "first line"
    assert all(r.result["pid"] != os.getpid() for r in got.values())  # ran in worker processes


def test_map_files_errors_are_results(tmp_path):
    make_tree(tmp_path / "t", TREE)
    results = list(pcopy.map_files("transform_helpers:size_or_fail", tmp_path / "t", jobs=2))
    failed = [r for r in results if not r.ok]
    assert [(os.path.basename(r.path), r.error, r.result) for r in failed] == [
        ("bad-one", "ValueError: bad file", None)]
    assert len(results) == len(FILES)


def test_map_files_lambda_needs_the_thread_backend(tmp_path):
    make_tree(tmp_path / "t", {"f": b"xyz"})
    with pytest.raises(pcopy.UsageError, match="backend='thread'"):
        pcopy.map_files(lambda p: 1, tmp_path / "t")
    results = list(pcopy.map_files(lambda p: os.path.getsize(p), tmp_path / "t", backend="thread"))
    assert [(r.result, r.error) for r in results] == [(3, None)]


def test_map_files_unpicklable_result_is_an_error_under_processes(tmp_path):
    make_tree(tmp_path / "t", {"f": b"x"})
    [result] = pcopy.map_files(transform_helpers.unpicklable, tmp_path / "t", jobs=1)
    assert result.result is None
    assert result.error.startswith("result cannot be sent back from a worker process:")


def test_map_files_is_lazy_and_bounded(tmp_path, monkeypatch):
    """The first result arrives while most of the tree is still unwalked (bounded in flight)."""
    make_tree(tmp_path / "t", {f"d{i:03d}/f": b"x" for i in range(60)})
    scanned = []
    real_scan = scan.scan_dir
    monkeypatch.setattr(scan, "scan_dir", lambda path, *a, **k: scanned.append(path) or real_scan(path, *a, **k))
    counters = progress.Counters()
    results = map_run.map_files(transform_helpers.size, tmp_path / "t", jobs=1, backend="thread", counters=counters)
    assert scanned == []  # nothing runs before the first result is asked for
    first = next(results)
    assert first.result == 1
    assert not counters.walk_done and len(scanned) < 20  # jobs=1: at most 4 batches in flight
    results.close()  # stops the pool (the thread-leak fixture checks it)
    assert len(scanned) < 20


def test_map_files_exclude_prunes_directories(tmp_path, monkeypatch):
    make_tree(tmp_path / "t", {"keep/a": b"a", "node_modules/x/y": b"y", "deep/node_modules/z": b"z", "b.tmp": b"t"})
    scanned = []
    real_scan = scan.scan_dir
    monkeypatch.setattr(scan, "scan_dir", lambda path, *a, **k: scanned.append(path) or real_scan(path, *a, **k))
    results = list(pcopy.map_files(transform_helpers.size, tmp_path / "t", backend="thread",
                                   exclude=["node_modules/", "*.tmp"]))
    assert [os.path.relpath(r.path, tmp_path / "t") for r in results] == ["keep/a"]
    assert not any("node_modules" in str(path) for path in scanned)


