"""How a watch session ends: stop_event, SIGINT and SIGTERM are normal ends that return (or exit 0
with) the session's report; files in flight are discarded and counted; SIGHUP stays an interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import make_tree, temp_files

import pcopy
from pcopy.errors import Interrupted

WAIT = 20


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_in_the_main_thread_returns_the_report(tmp_path, signum):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a"})

    def on_status(status):
        if status.watching:
            os.kill(os.getpid(), signum)  # the guard records it; the loop ends at its next check

    report = pcopy.watch(src, dst, on_status=on_status, backend="thread", jobs=2)
    assert report.copied == 1 and report.failed == 0 and report.discarded == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sighup_is_still_an_interruption_with_the_report(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a"})

    def on_status(status):
        if status.watching:
            os.kill(os.getpid(), signal.SIGHUP)

    with pytest.raises(Interrupted) as info:
        pcopy.watch(src, dst, on_status=on_status, backend="thread", jobs=2)
    assert info.value.exit_code == 129 and info.value.report.copied == 1


def test_files_in_flight_at_a_stop_are_discarded_and_counted(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a"})
    entered, release = threading.Event(), threading.Event()
    real_open = os.open

    def slow_open(path, flags, *args, dir_fd=None, **kwargs):
        if path == "slow" and dir_fd is not None and flags & os.O_ACCMODE == os.O_RDONLY:
            entered.set()
            release.wait(WAIT)
        return real_open(path, flags, *args, dir_fd=dir_fd, **kwargs)

    monkeypatch.setattr(os, "open", slow_open)
    stop = threading.Event()
    reports: list = []
    thread = threading.Thread(target=lambda: reports.append(
        pcopy.watch(src, dst, stop_event=stop, backend="thread", jobs=2, debounce=0.01)))
    thread.start()
    try:
        deadline = time.monotonic() + WAIT
        while not (dst / "a").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        (src / "slow").write_bytes(b"s" * 1000)
        assert entered.wait(WAIT), "the changed file was never opened"
        stop.set()
        time.sleep(0.3)  # the session stops while the worker is still inside the file
    finally:
        release.set()
        thread.join(WAIT)
    assert reports and reports[0].discarded == 1 and reports[0].copied == 1
    assert temp_files(dst) == []
    assert not (dst / "slow").exists() or (dst / "slow").read_bytes() == b"s" * 1000


def test_cli_summary_says_how_many_files_in_flight_were_discarded(tmp_path, capsys, monkeypatch):
    from pcopy import api, cli
    from pcopy.model.results import Report

    report = Report()
    report.copied, report.discarded = 3, 2
    monkeypatch.setattr(api, "watch", lambda *args, **kwargs: report)
    (tmp_path / "src").mkdir()
    assert cli.main(["watch", str(tmp_path / "src"), str(tmp_path / "dst"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.rstrip().endswith("(watch session; 2 files in flight discarded)"), err


def test_sigterm_to_a_watch_subprocess_is_exit_0_with_the_summary(tmp_path):
    """What systemd does to a service: SIGTERM, and it expects a clean exit."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "pcopy", "watch", str(src), str(dst), "--no-progress",
                             "--backend", "thread"], stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + WAIT
        while not (dst / "a").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode()
    assert "pcopy: copied 1 file (1 B)" in err and err.rstrip().endswith("(watch session)"), err
