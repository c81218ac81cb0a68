"""Regression tests: what pcopy is given (black box, except one test of the public ``pcopy.map_files``).

Covers:

* defect 6: manifest input for ``verify --manifest``: an endless manifest
  (``/dev/zero``) keeps memory bounded and honours SIGTERM; a NUL byte in a path
  is one error line for that line (the valid lines are still checked); a 10 MB
  line is not echoed back whole;
* defect 12: ``map`` with a function raising exceptions that do not survive the
  trip back from a worker (arguments that do not pickle, a BaseException that is
  not an Exception, a ``__str__`` that raises): one error per file, exit 3, no
  traceback; through the API, a result that cannot be unpickled is an error too;
* defect 13: command-line edges: a typo'd option gets the subcommand's usage and
  a "did you mean" hint, ``--jobs -3`` says "at least 1", a bad ``--exclude``
  pattern is a usage error, a bad or dead ``--scheduler`` fails quietly, promptly
  and without creating DST, and an unreadable source directory is reported once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import sys
import textwrap
import time

import pytest
import xxhash
from conftest import make_tree
from regress_helpers import (
    Running,
    assert_no_traceback,
    error_lines,
    need_setpriv,
    rss_kib,
    run_pcopy,
    shared_dir,  # noqa: F401 (fixture)
)

import pcopy

pytestmark = pytest.mark.faults

SPEC = {"a": b"alpha\n", "b": b"bravo\n"}
A_XXH, B_XXH = (xxhash.xxh3_128_hexdigest(SPEC[name]) for name in "ab")


@pytest.fixture
def root(tmp_path):
    make_tree(tmp_path / "root", SPEC)
    return tmp_path / "root"


def _manifest(tmp_path, extra: bytes) -> str:
    path = tmp_path / "MANIFEST.xxh"
    path.write_bytes(f"{A_XXH}  a\n{B_XXH}  b\n".encode() + extra)
    return str(path)


# --------------------------------------------------------------------------- defect 6

RSS_LIMIT_KIB = 200 * 1024


def test_endless_manifest_keeps_memory_bounded_and_honours_sigterm(root):
    peak, code, elapsed = 0, None, None
    with Running("verify", "--manifest", "/dev/zero", root, "--no-cache", "--no-progress") as run:
        t0 = time.monotonic()
        term_at = None
        while run.proc.poll() is None and time.monotonic() - t0 < 7:
            peak = max(peak, rss_kib(run.pid))
            if peak > 2 * RSS_LIMIT_KIB:
                break  # failed already: do not let it eat the machine (the group is killed on leaving)
            if term_at is None and time.monotonic() - t0 > 1.0:
                os.kill(run.pid, signal.SIGTERM)
                term_at = time.monotonic()
            elif term_at is not None and time.monotonic() - term_at > 5:
                break
            time.sleep(0.02)
        code = run.proc.poll()
        if term_at is not None and code is not None:
            elapsed = time.monotonic() - term_at
        stderr = run.stderr_text()
    assert peak < RSS_LIMIT_KIB, f"reading an endless manifest grew past {peak // 1024} MiB"
    assert term_at is not None, f"verify ended before the signal (exit {code}): {stderr[-600:]!r}"
    assert code is not None, "still running 5 s after SIGTERM"
    assert code == 143 and elapsed < 5, f"exit {code} {elapsed:.1f} s after SIGTERM: {stderr[-600:]!r}"
    assert_no_traceback(stderr)


@pytest.mark.parametrize("cache", [False, True], ids=["no-cache", "cache"])
def test_nul_byte_in_a_manifest_path_is_one_error_line(root, tmp_path, cache):
    manifest = _manifest(tmp_path, f"{A_XXH}  a\0b\n".encode())
    cache_args = ["--cache", tmp_path / "cache.sqlite3"] if cache else ["--no-cache"]
    proc = run_pcopy("verify", "--manifest", manifest, root, *cache_args, "--no-progress", "--json")
    assert_no_traceback(proc.err)
    assert "ValueError" not in proc.err, proc.err
    errors = error_lines(proc.err)
    assert len(errors) == 1, f"expected one error line, for line 3: {errors}"
    assert proc.returncode in (3, 4), proc.err
    report = json.loads(proc.out.splitlines()[-1])
    assert report["identical"] == 2, f"the valid lines were not checked: {report}"


def test_huge_manifest_line_is_not_echoed_back_whole(root, tmp_path):
    manifest = _manifest(tmp_path, f"{A_XXH}  ".encode() + b"x" * (10 << 20) + b"\n")
    proc = run_pcopy("verify", "--manifest", manifest, root, "--no-cache", "--no-progress")
    assert_no_traceback(proc.err[:4096])
    size = len(proc.err)
    assert size < 4096, f"stderr is {size} bytes: a 10 MB line was echoed back"
    assert proc.returncode in (3, 4), proc.err[:600]
    assert len(error_lines(proc.err)) == 1, proc.err


# --------------------------------------------------------------------------- defect 12

MODULE = """
import pickle

class TwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}{b}")

class NotAnException(BaseException):
    pass

class TwoArgsBase(BaseException):
    def __init__(self, a, b):
        super().__init__(f"{a}{b}")

class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("__str__ fails")

class BadStrBase(BaseException):
    def __str__(self):
        raise RuntimeError("__str__ fails")

def two_args(path):
    raise TwoArgs("x", "y")

def not_an_exception(path):
    raise NotAnException("out of the Exception tree")

def two_args_base(path):
    raise TwoArgsBase("x", "y")

def bad_str(path):
    raise BadStr()

def bad_str_base(path):
    raise BadStrBase()

def returns_two_args(path):
    return TwoArgs(1, 2)  # pickles, but cannot be unpickled
"""


@pytest.fixture
def raising_module(tmp_path):
    (tmp_path / "raising.py").write_text(textwrap.dedent(MODULE))
    return tmp_path


@pytest.mark.parametrize("function", ["two_args", "not_an_exception", "two_args_base", "bad_str", "bad_str_base"])
def test_map_exception_that_does_not_travel_is_one_error_per_file(root, raising_module, function):
    proc = run_pcopy("map", root, f"raising:{function}", "--no-progress",
                     env_extra={"PYTHONPATH": str(raising_module)}, timeout=30)
    assert_no_traceback(proc.err)
    records = [json.loads(line) for line in proc.out.splitlines() if line.startswith("{")]
    assert sorted(os.path.basename(r["path"]) for r in records) == ["a", "b"], proc.out
    assert all("error" in r and "\n" not in r["error"] for r in records), records
    assert len(error_lines(proc.err)) == 2, proc.err
    assert proc.returncode == 3, proc.err


def test_map_api_result_that_cannot_be_unpickled_is_an_error(root, raising_module, monkeypatch):
    monkeypatch.syspath_prepend(str(raising_module))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(raising_module), *sys.path]))
    results = list(pcopy.map_files("raising:returns_two_args", root, jobs=2))
    assert sorted(os.path.basename(r.path) for r in results) == ["a", "b"]
    assert all(r.error is not None and r.result is None for r in results), results


# --------------------------------------------------------------------------- defect 13


def test_option_typo_shows_the_subcommand_usage_and_a_hint(root, tmp_path):
    proc = run_pcopy("copy", root, tmp_path / "dst", "--jobz", "3")
    assert proc.returncode == 2, proc.err
    assert "usage: pcopy copy" in proc.err, proc.err
    assert re.search(r"did you mean.*--jobs", proc.err, re.I), proc.err


def test_negative_jobs_says_at_least_one(root, tmp_path):
    proc = run_pcopy("copy", root, tmp_path / "dst", "--jobs", "-3")
    assert proc.returncode == 2, proc.err
    assert "at least 1" in proc.err and "0 or more" not in proc.err, proc.err


def test_bad_exclude_pattern_is_a_usage_error(root, tmp_path):
    proc = run_pcopy("sync", root, tmp_path / "dst", "--exclude", "[", "--no-progress")
    assert_no_traceback(proc.err)
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.err}"
    errors = [line for line in proc.err.splitlines() if "error" in line]
    assert len(errors) == 1 and "[" in errors[0], proc.err


def _need_dask() -> None:
    if importlib.util.find_spec("distributed") is None:
        pytest.skip("the dask extra is not installed (pip install -e '.[test,dask]')")


def test_bad_scheduler_address_fails_quietly(root, tmp_path):
    _need_dask()
    proc = run_pcopy("copy", root, tmp_path / "dst", "--scheduler", "notanaddress", "--no-progress", timeout=30)
    lines = [line for line in proc.err.splitlines() if line.strip()]
    assert "Exception ignored" not in proc.err and "IOLoop" not in proc.err, proc.err
    assert len(lines) <= 2, lines
    assert proc.returncode in (1, 2), proc.err


def test_dead_scheduler_fails_promptly_without_creating_dst(root, tmp_path):
    _need_dask()
    dst = tmp_path / "dst"
    t0 = time.monotonic()
    with Running("copy", root, dst, "--scheduler", "tcp://127.0.0.1:1", "--no-progress") as run:
        code = run.wait(15)
        stderr = run.stderr_text()
    elapsed = time.monotonic() - t0
    assert code is not None, f"still trying to reach a dead scheduler after {elapsed:.0f} s"
    assert code == 1, stderr
    assert not os.path.lexists(dst), "DST was created although no work could ever run"


@pytest.mark.parametrize("command", ["copy", "sync"])
def test_unreadable_source_directory_is_reported_once(shared_dir, command):  # noqa: F811
    need_setpriv()
    src, dst = os.path.join(shared_dir, "src"), os.path.join(shared_dir, "dst")
    make_tree(src, {"ok/a": b"a\n", "sub/s": b"s\n"})
    os.chmod(os.path.join(src, "sub"), 0o000)
    proc = run_pcopy(command, src, dst, "--no-progress", user=True)
    naming_sub = [line for line in error_lines(proc.err) if re.match(r"pcopy: error: sub(/[^:]*)?: ", line)]
    assert len(naming_sub) == 1, f"the unreadable directory was reported {len(naming_sub)} times: {naming_sub}"
    assert proc.returncode == 3, proc.err
    assert os.path.exists(os.path.join(dst, "ok", "a")), "the readable part was not copied"
