"""The progress bar tells the truth: no percentage or ETA before the total is known, files (not
directories) counted on both sides of the fraction, binary units, and no line shared with -v output."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time

import pytest
from conftest import Dir, Fifo, File, Link, make_tree

import pcopy
from pcopy import options as _options
from pcopy.runtime.progress import Counters, ProgressBar, human_bytes, lines_above
from pcopy.transfer import engine

ITEM = re.compile(r"(^|\s)(>f|cd|cL|hf|\*deleting)[.+a-z]*\s")


def test_no_percentage_or_eta_until_the_walk_is_done():
    stream = io.StringIO()
    bar = ProgressBar(interval=60, stream=stream)  # no timed redraws: only the ones below
    bar.start()
    try:
        bar.discovered(10, 10 << 20)
        bar.files_done, bar.bytes_done = 10, 10 << 20  # everything found so far is done: 100 % was the old lie
        bar._draw()
        walking = stream.getvalue()
        assert "10 files" in walking and "10.0 MiB" in walking and "found so far" in walking, walking
        assert "%" not in walking and "ETA" not in walking, walking
        bar.discovered(30, 30 << 20)
        bar.walk_done = True
        bar._draw()
        known = stream.getvalue()[len(walking):]
        assert re.search(r"\b25%", known) and "10/40 files" in known and "ETA" in known, known
    finally:
        bar.close()
    assert "%" in stream.getvalue()


def test_units_are_binary_like_the_summary():
    bar = ProgressBar(stream=io.StringIO())
    bar.discovered(3, 3 << 30)
    bar.files_done, bar.bytes_done = 1, 1536 << 20
    bar.walk_done = True
    _, text = bar.text()
    assert "1.5 GiB/3.0 GiB" in text and "MB" not in text and "GB" not in text, text
    assert human_bytes(1536) == "1.5 KiB"


def test_an_interrupted_walk_never_shows_a_percentage():
    """close() after a stop: the total is still unknown, so the last line has no percentage either."""
    stream = io.StringIO()
    bar = ProgressBar(interval=60, stream=stream)
    bar.start()
    bar.discovered(5, 100)
    bar.files_done = 2
    bar.close()
    assert "%" not in stream.getvalue() and "ETA" not in stream.getvalue()


def test_lines_above_clear_the_bar_first():
    stream = io.StringIO()
    bar = ProgressBar(interval=60, stream=stream)
    bar.start()
    try:
        bar.discovered(2, 0)
        bar._draw()
        with lines_above():
            drawn = stream.getvalue()
            stream.write(">f+++++++++ a\n")
    finally:
        bar.close()
    cleared = drawn.rstrip("\r").rpartition("\r")[2]
    assert cleared.strip() == "", repr(drawn)  # the bar was overwritten with blanks before the line came


class StrictCounters(Counters):
    """Counters that remember whether files_done ever got ahead of files_total."""

    ahead = False

    @property  # type: ignore[override]
    def files_done(self) -> int:
        return self._done

    @files_done.setter
    def files_done(self, value: int) -> None:
        if value > getattr(self, "files_total", 0):
            self.ahead = True
        self._done = value


def _run(src, dst, **kw) -> tuple:
    counters = StrictCounters()
    opts = _options.build(src, dst, jobs=2, backend="thread", **kw)
    report = engine.copy_tree(opts, counters=counters)
    return report, counters


def _files(root) -> int:
    return sum(len(files) + sum(1 for d in dirs if os.path.islink(os.path.join(top, d)))
               for top, dirs, files in os.walk(root))


def test_files_done_ends_equal_to_the_files_found(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    spec = {f"d{i}/e/f{j}": b"x" * j for i in range(4) for j in range(6)}
    spec.update({"empty": Dir(), "link": Link("d0"), "fifo": Fifo(), "top": b"t"})
    make_tree(src, spec)
    os.link(src / "d0/e/f1", src / "hard")
    expected = _files(src)  # 24 + top + hard + link + fifo; 9 directories are not files
    assert expected == 28
    report, counters = _run(src, dst, hard_links=True)
    assert (counters.files_done, counters.files_total) == (expected, expected) and not counters.ahead
    assert report.dirs == 9 and report.linked == 1 and report.symlinks == 1

    report, counters = _run(src, dst, hard_links=True, replace=True)  # a no-op sync: all unchanged
    assert (counters.files_done, counters.files_total) == (expected, expected) and not counters.ahead


def test_directory_failures_and_deletions_are_not_files(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"blocked/a": b"a", "blocked/b": b"b", "ok/c": b"c", "new/d": File(b"d")})
    make_tree(dst, {"blocked": b"a file where SRC has a directory", "extra/x": b"x", "gone": b"g"})
    report, counters = _run(src, dst)  # copy: cannot overwrite a file with a directory
    assert report.failed == 3  # the directory and both files below it
    assert (counters.files_done, counters.files_total) == (4, 4) and not counters.ahead

    report, counters = _run(src, dst, replace=True, delete=True)  # sync: replaces, deletes extra/x and gone
    assert report.failed == 0 and report.deleted == 3
    assert (counters.files_done, counters.files_total) == (4, 4) and not counters.ahead


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pty behaviour checked on Linux")
def test_verbose_lines_and_the_bar_never_share_a_line(tmp_path):
    """`pcopy copy -v --progress` on a terminal: what the terminal shows has no line with both."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    n = 3000
    make_tree(src, {f"d{i // 100}/f{i}": b"x" * (i % 50) for i in range(n)})
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pcopy.__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "pcopy", "copy", "-v", "--progress", "-j", "1",
                             "--backend", "thread", str(src), str(dst)],
                            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    data = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    assert proc.wait(timeout=30) == 0
    screen = _screen(data.decode("utf-8", "replace"))
    bars = [line for line in screen if " files, " in line and "/s" in line]
    items = [line for line in screen if ITEM.search(line)]
    assert bars and len(items) == n + 30, (len(items), screen[-5:])
    assert [line for line in bars if ITEM.search(line)] == []
    assert bars[-1].startswith("100%") and f"{n}/{n} files" in bars[-1], bars[-1]


def _screen(text: str) -> list:
    """The lines a terminal ends up showing: each \\r returns to the start and later text overwrites."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    lines = []
    for raw in text.split("\n"):
        cells: list = []
        col = 0
        for ch in raw:
            if ch == "\r":
                col = 0
                continue
            if col < len(cells):
                cells[col] = ch
            else:
                cells.append(ch)
            col += 1
        lines.append("".join(cells).rstrip())
    return lines
