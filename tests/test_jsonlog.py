"""--json-log FILE|-: one JSON object per action, as it happens, then a summary (copy, sync, watch)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import BAD_UTF8, make_tree, opens_source

from pcopy import cli
from pcopy.model.batching import BATCH_FILES

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
KEYS = {"time", "action", "path", "size", "digest", "item", "error", "reason"}


def lines_of(path) -> list:
    objs = [json.loads(line) for line in open(path, "rb").read().decode("ascii").splitlines()]
    for obj in objs:
        assert TIME.match(obj["time"]), obj
    return objs


def actions(objs) -> dict:
    return {(o["action"], o["path"]) for o in objs if o["action"] not in ("start", "summary")}


def sync(*argv) -> int:
    return cli.main(["sync", *map(str, argv), "--no-progress", "--backend", "thread"])


def test_a_sync_logs_each_action_and_a_summary(tmp_path, capsys, io_fault):
    src, dst, log = tmp_path / "src", tmp_path / "dst", tmp_path / "log.jsonl"
    make_tree(src, {"same": b"s", "changed": b"old", "gone": b"g", "sub/deep": b"d"})
    assert sync(src, dst) == 0
    (src / "changed").write_bytes(b"new content")
    (src / "gone").unlink()
    make_tree(src, {"new": b"n", BAD_UTF8: b"odd", "line\nbreak": b"nl"})
    assert sync(src, dst, "--delete", "--json-log", log) == 0
    first = lines_of(log)
    assert first[0]["action"] == "start" and first[0]["src"] == str(src) and first[0]["pid"] > 0
    assert first[-1]["action"] == "summary" and first[-1]["deleted"] == 1 and first[-1]["copied"] == 4
    assert actions(first) == {("copy", "changed"), ("delete", "gone"), ("copy", "new"), ("copy", BAD_UTF8),
                              ("copy", "line\nbreak")}  # unchanged files are not listed without -v
    by_path = {o["path"]: o for o in first[1:-1]}
    assert set(by_path["changed"]) == KEYS
    assert by_path["changed"]["item"] == ">f.st......" and by_path["changed"]["size"] == len(b"new content")
    assert re.fullmatch(r"[0-9a-f]{32}", by_path["changed"]["digest"])
    assert by_path["gone"]["item"] == "*deleting  " and by_path["gone"]["digest"] is None
    assert os.fsencode(by_path[BAD_UTF8]["path"]) == b"bad\xff"  # undecodable bytes round-trip
    assert "\\udcff" in open(log, "rb").read().decode("ascii")

    io_fault("open", opens_source("new"), lambda: PermissionError(13, "Permission denied"))
    os.utime(src / "new", ns=(0, 10**18))
    assert sync(src, dst, "--delete", "--json-log", log) == 3  # appended: a second start ... summary
    second = lines_of(log)[len(first):]
    assert [o["action"] for o in second] == ["start", "error", "summary"], second
    error = second[1]
    assert (error["path"], error["error"], error["reason"]) == ("new", "source: Permission denied", "error")
    assert second[-1]["failed"] == 1
    capsys.readouterr()


def test_unchanged_files_are_listed_only_with_verbose(tmp_path, capsys):
    src, dst, log = tmp_path / "src", tmp_path / "dst", tmp_path / "log.jsonl"
    make_tree(src, {f"f{i}": b"x" for i in range(50)})
    assert sync(src, dst) == 0
    assert sync(src, dst, "--json-log", log) == 0
    assert [o["action"] for o in lines_of(log)] == ["start", "summary"]  # a no-op writes two lines
    os.unlink(log)
    assert sync(src, dst, "--json-log", log, "-v") == 0
    skips = [o for o in lines_of(log) if o["action"] == "skip"]
    assert len(skips) == 50 and {o["reason"] for o in skips} == {"unchanged"}
    capsys.readouterr()


def test_dash_is_stdout_and_refuses_json_beside_it(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a", "d/b": b"b"})
    assert cli.main(["copy", str(src), str(dst), "--json-log", "-", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    objs = [json.loads(line) for line in out.splitlines()]
    assert objs[0]["action"] == "start" and objs[-1]["action"] == "summary"
    assert actions(objs) == {("mkdir", "d"), ("copy", "a"), ("copy", "d/b")}
    assert "pcopy: copied 2 files" in err  # the human summary stays on stderr

    assert cli.main(["copy", str(src), str(tmp_path / "other"), "--json-log", "-", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--json-log - and --json" in err
    assert not (tmp_path / "other").exists()


def test_a_fatal_error_and_a_dry_run(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    assert sync(tmp_path / "missing", tmp_path / "dst", "--json-log", log) == 1
    objs = lines_of(log)
    assert [o["action"] for o in objs] == ["start", "error"]
    assert objs[1]["path"] is None and objs[1]["reason"] == "fatal" and "missing" in objs[1]["error"]

    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a"})
    make_tree(dst, {"extra": b"e"})
    os.unlink(log)
    assert sync(src, dst, "-n", "--delete", "--json-log", log) == 0
    objs = lines_of(log)
    assert actions(objs) == {("copy", "a"), ("delete", "extra")}
    assert objs[-1]["dry_run"] is True and os.listdir(dst) == ["extra"]
    capsys.readouterr()


def test_lines_are_written_as_they_happen(tmp_path, monkeypatch, capsys):
    """A copy still busy with one file has already logged the files finished before it (results
    travel per bundle of directories: ``early`` is big enough to travel alone)."""
    src, dst, log = tmp_path / "src", tmp_path / "dst", tmp_path / "log.jsonl"
    make_tree(src, {"late/z": b"z", **{f"early/{n}": b"a" for n in ["a"] + [f"f{i}" for i in range(BATCH_FILES // 2)]}})
    release = threading.Event()
    real_open = os.open

    def slow_open(path, flags, *args, dir_fd=None, **kwargs):
        if path == "z" and dir_fd is not None and flags & os.O_ACCMODE == os.O_RDONLY:
            release.wait(30)
        return real_open(path, flags, *args, dir_fd=dir_fd, **kwargs)

    monkeypatch.setattr(os, "open", slow_open)
    codes: list = []
    thread = threading.Thread(target=lambda: codes.append(cli.main(
        ["copy", str(src), str(dst), "--json-log", str(log), "-j", "2", "--backend", "thread", "--no-progress"])))
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and ("copy", "early/a") not in actions(_lines_so_far(log)):
            time.sleep(0.02)
        assert ("copy", "early/a") in actions(_lines_so_far(log)) and thread.is_alive()
        assert "summary" not in [o["action"] for o in _lines_so_far(log)]
    finally:
        release.set()
        thread.join(30)
    assert codes == [0] and lines_of(log)[-1]["action"] == "summary"
    capsys.readouterr()


def _lines_so_far(path) -> list:
    try:
        text = open(path, "rb").read().decode("ascii")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def test_watch_logs_changes_while_it_runs_and_ends_with_a_summary(tmp_path):
    src, dst, log = tmp_path / "src", tmp_path / "dst", tmp_path / "log.jsonl"
    make_tree(src, {"a": b"a"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "pcopy", "watch", str(src), str(dst), "--json-log", str(log),
                             "--no-progress", "--backend", "thread", "-j", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert _wait_for(lambda: ("copy", "a") in actions(_lines_so_far(log))), _lines_so_far(log)
        (src / "b").write_bytes(b"b")
        assert _wait_for(lambda: ("copy", "b") in actions(_lines_so_far(log))), _lines_so_far(log)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    objs = lines_of(log)
    assert objs[0]["action"] == "start" and objs[0]["command"] == "watch"
    assert objs[-1]["action"] == "summary" and objs[-1]["copied"] == 2


def _wait_for(cond, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("name", ["plain", BAD_UTF8, "tab\there", "quote\"back\\slash", "snow ☃"])
def test_every_name_round_trips(tmp_path, capsys, name):
    src, dst, log = tmp_path / "src", tmp_path / "dst", tmp_path / "log.jsonl"
    make_tree(src, {name: b"x"})
    assert sync(src, dst, "--json-log", log) == 0
    paths = [o["path"] for o in lines_of(log) if o["action"] == "copy"]
    assert [os.fsencode(p) for p in paths] == [os.fsencode(name)]
    capsys.readouterr()


def test_an_interrupted_copy_ends_its_logs_with_the_interruption(tmp_path, monkeypatch, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    log, text_log = tmp_path / "log.jsonl", tmp_path / "log.txt"
    make_tree(src, {"a/x": b"x", "b/y": b"y"})
    real_open = os.open

    def ctrl_c_at_y(path, flags, *args, dir_fd=None, **kwargs):
        if path == "y" and dir_fd is not None and flags & os.O_ACCMODE == os.O_RDONLY:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the guard stops the run at its next check
        return real_open(path, flags, *args, dir_fd=dir_fd, **kwargs)

    monkeypatch.setattr(os, "open", ctrl_c_at_y)
    code = cli.main(["copy", str(src), str(dst), "--json-log", str(log), "--log-file", str(text_log),
                     "-j", "1", "--backend", "thread", "--no-progress"])
    assert code == 130
    last = lines_of(log)[-1]
    assert (last["action"], last["path"], last["reason"]) == ("error", None, "interrupted")
    assert "interrupted by SIGINT" in last["error"]
    assert text_log.read_text().splitlines()[-1] == "pcopy: interrupted by SIGINT, in-flight files discarded"
    capsys.readouterr()
