"""What copy and sync print and log: dry runs itemize without -v, summaries say only what is true,
and the --log-file header records the command as given with absolute SRC and DST."""

from __future__ import annotations

import os
import re
import shlex

from conftest import Link, make_tree

from pcopy import cli
from pcopy.cli.output import summary
from pcopy.cli.reporter import options_given
from pcopy.model.results import Report
from pcopy.version import __version__


def test_a_dry_run_prints_itemized_lines_without_verbose(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"new": b"n", "dir/f": b"f", "link": Link("new")})
    make_tree(dst, {"dir": b"a file where SRC has a directory", "extra": b"e"})
    assert cli.main(["sync", "-n", str(src), str(dst), "--no-progress"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[:-1] and set(lines[:-1]) == {">f+++++++++ new", "cL+++++++++ link", "*deleting   dir",
                                              "cd+++++++++ dir/", ">f+++++++++ dir/f"}, lines
    # no --delete: "extra" stays and nothing says "delete"; the replaced file is not a deletion either
    assert lines[-1] == ("pcopy: dry run: would copy 2 files (5 B), 1 symlink, create 1 directory; "
                         "0 unchanged, 0 failed; nothing was changed")
    assert cli.main(["sync", "-n", "-q", str(src), str(dst), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_a_dry_run_with_delete_counts_deletions(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"a"})
    make_tree(dst, {"extra": b"e"})
    assert cli.main(["sync", "-n", "--delete", str(src), str(dst), "--no-progress"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert set(lines[:-1]) == {">f+++++++++ a", "*deleting   extra"}
    assert "would copy 1 file (1 B), delete 1, create 0 directories" in lines[-1]


def test_summaries_say_one_file_and_count_symlinks_apart():
    report = Report()
    report.copied, report.symlinks, report.bytes_copied, report.seconds = 1, 2, 5, 1.0
    assert summary(report).startswith("pcopy: copied 1 file (5 B), 2 symlinks, skipped 0, failed 0 in ")
    report.dry_run, report.dirs = True, 1
    text = summary(report)
    assert "would copy 1 file (5 B), 2 symlinks" in text and "delete" not in text and "1 directory" in text
    assert "delete 0" in summary(report, delete=True)


def test_hash_and_map_summaries_say_one_file(tmp_path, capsys):
    make_tree(tmp_path / "root", {"only": b"x"})
    assert cli.main(["hash", str(tmp_path / "root"), "-o", str(tmp_path / "m.xxh"), "--no-cache",
                     "--no-progress"]) == 0
    assert "pcopy: hashed 1 file (" in capsys.readouterr().err


def test_log_header_records_the_command_with_absolute_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_tree(tmp_path / "src", {"a": b"a", "x.tmp": b"t"})
    argv = ["sync", "src", "dst", "--delete", "--exclude", "*.tmp", "--exclude", "src", "-j2",
            "--log-file", "sync.log", "--no-progress"]
    assert cli.main(argv) == 0
    first = (tmp_path / "sync.log").read_text().splitlines()[0]
    stamp, _, rest = first.partition(" pcopy ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", stamp), first
    command, _, tail = rest.rpartition(" (pid ")
    assert tail == f"{os.getpid()}, pcopy {__version__})"
    assert shlex.split(command) == ["sync", str(tmp_path / "src"), str(tmp_path / "dst"), "--delete",
                                    "--exclude", "*.tmp", "--exclude", "src", "-j2", "--log-file", "sync.log",
                                    "--no-progress"]
    assert "'*.tmp'" in command  # shell-quoted: the line can be pasted back into a shell
    capsys.readouterr()


def test_operands_are_told_from_option_values():
    assert options_given(["sync", "-vn", "a", "--max-delete", "3", "b", "--exclude=a"], "sync") == \
        ["-vn", "--max-delete", "3", "--exclude=a"]
    assert options_given(["copy", "-j", "4", "a", "--log", "l", "--", "-odd", "b"], "copy") == \
        ["-j", "4", "--log", "l"]  # an abbreviation argparse accepts; operands after --
