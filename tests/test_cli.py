"""The command line: exit codes, one-line errors, --json on stdout, summary on stderr."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from conftest import BAD_UTF8, PYTHON, File, make_tree, opens_source, tree_snapshot

import pcopy
from pcopy import cli

SUMMARY = re.compile(r"^pcopy: copied \d+ files \(.*\), skipped \d+, failed \d+ in [\d.]+ s \(.*/s\)$")


def run(*argv) -> int:
    return cli.main(["copy", *map(str, argv), "--no-progress"])


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src"
    make_tree(path, {"a": b"alpha", "d/b": b"beta", "d/e/c": File(b"gamma", mode=0o600)})
    return path


def test_copy_ok(tmp_path, src, capsys):
    dst = tmp_path / "dst"
    assert run(src, dst, "--backend", "thread") == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert [line for line in err.splitlines()] and SUMMARY.match(err.splitlines()[-1]), err
    assert "copied 3 files" in err
    assert tree_snapshot(dst) == tree_snapshot(src)


def test_json_report_on_stdout(tmp_path, src, capsys):
    dst = tmp_path / "dst"
    assert run(src, dst, "--json", "-j", "2") == 0
    out, err = capsys.readouterr()
    assert out.endswith("\n") and out.count("\n") == 1  # one object, one line
    data = json.loads(out)
    assert {"copied", "skipped", "failed", "bytes_copied", "failures"} <= data.keys()
    assert (data["copied"], data["skipped"], data["failed"]) == (3, 0, 0)
    assert data["bytes_copied"] == len(b"alphabetagamma")
    assert data["failures"] == []
    assert SUMMARY.match(err.strip().splitlines()[-1])  # the human summary still goes to stderr

    assert run(src, dst, "--json", "-q") == 0
    out, err = capsys.readouterr()
    again = json.loads(out)
    assert (again["copied"], again["skipped"], again["failed"]) == (0, 3, 0)
    assert err == ""  # --quiet: nothing but errors


def test_partial_failure_exit_3(tmp_path, src, capsys, io_fault):
    dst = tmp_path / "dst"
    io_fault("open", opens_source("b"), lambda: PermissionError(13, "Permission denied"))
    assert run(src, dst, "--backend", "thread", "--json") == 3
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["failed"] == 1 and data["copied"] == 2
    assert data["failures"] == [{"path": os.path.join("d", "b"), "error": "source: Permission denied",
                                 "reason": "error"}]
    errors = [line for line in err.splitlines() if line.startswith("pcopy: error:")]
    assert errors == [f"pcopy: error: {os.path.join('d', 'b')}: source: Permission denied"]
    assert (dst / "a").read_bytes() == b"alpha" and (dst / "d" / "e" / "c").read_bytes() == b"gamma"
    assert not (dst / "d" / "b").exists()


def test_error_lines_escape_control_characters(tmp_path, capsys, io_fault):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"bad\nname": b"x"})
    io_fault("open", opens_source("bad\nname"), lambda: PermissionError(13, "Permission denied"))
    assert run(src, dst, "--backend", "thread") == 3
    err = capsys.readouterr().err
    assert "pcopy: error: bad\\nname: source: Permission denied\n" in err


def test_error_lines_show_undecodable_bytes_as_escapes(tmp_path, capsys, io_fault):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {BAD_UTF8: b"x", "ok": b"ok"})
    io_fault("open", opens_source(BAD_UTF8), lambda: PermissionError(13, "Permission denied"))
    assert run(src, dst, "--backend", "thread", "--json") == 3
    out, err = capsys.readouterr()
    assert "pcopy: error: bad\\xff: source: Permission denied\n" in err
    assert json.loads(out)["failures"][0]["error"] == "source: Permission denied"


def test_verbose_lists_files(tmp_path, src, capsys):
    names = ["a", os.path.join("d", "b"), os.path.join("d", "e", "c")]
    assert run(src, tmp_path / "quiet-dst", "--backend", "thread") == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if any(line.endswith(" " + n) for n in names)] == []
    assert run(src, tmp_path / "dst", "-v", "--backend", "thread") == 0
    lines = capsys.readouterr().err.splitlines()
    for name in names:
        assert len([line for line in lines if line.endswith(" " + name)]) == 1, (name, lines)


# --------------------------------------------------------------------------- fatal preflight errors


def _fatal(capsys, *argv) -> str:
    assert run(*argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pcopy: error:")
    assert "Traceback" not in err
    return lines[0]


def test_fatal_missing_source(tmp_path, capsys):
    line = _fatal(capsys, tmp_path / "missing", tmp_path / "dst")
    assert str(tmp_path / "missing") in line and "No such file or directory" in line
    assert not (tmp_path / "dst").exists()


def test_a_file_source_is_copied_as_cp_does(tmp_path, capsys):
    """A file SRC goes to DST/NAME when DST is a directory, else becomes DST (its directory must exist)."""
    (tmp_path / "file").write_bytes(b"x")
    assert run(tmp_path / "file", tmp_path / "dst") == 0
    assert (tmp_path / "dst").read_bytes() == b"x"
    (tmp_path / "dir").mkdir()
    assert run(tmp_path / "file", tmp_path / "dir") == 0
    assert (tmp_path / "dir" / "file").read_bytes() == b"x"
    capsys.readouterr()
    line = _fatal(capsys, tmp_path / "file", tmp_path / "missing" / "dst")
    assert "missing" in line and "Traceback" not in line


def test_fatal_same_directory(tmp_path, src, capsys):
    before = tree_snapshot(src)
    line = _fatal(capsys, src, src)
    assert "same" in line
    _fatal(capsys, src, tmp_path / "." / "src" / "d" / "..")
    assert tree_snapshot(src) == before


def test_fatal_dst_inside_src(tmp_path, src, capsys):
    before = tree_snapshot(src)
    line = _fatal(capsys, src, src / "d" / "new-dst")
    assert "inside" in line
    assert tree_snapshot(src) == before  # not even the new directory was created


def test_fatal_dst_inside_src_through_a_symlink(tmp_path, src, capsys):
    os.symlink(src / "d", tmp_path / "alias")
    before = tree_snapshot(src)
    _fatal(capsys, src, tmp_path / "alias" / "x")
    assert tree_snapshot(src) == before


def test_fatal_dst_is_a_file(tmp_path, src, capsys):
    (tmp_path / "dst").write_bytes(b"keep me")
    line = _fatal(capsys, src, tmp_path / "dst")
    assert "not a directory" in line
    assert (tmp_path / "dst").read_bytes() == b"keep me"


def test_fatal_debug_shows_traceback(tmp_path, capsys):
    assert cli.main(["copy", str(tmp_path / "missing"), str(tmp_path / "dst"), "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("pcopy: error:")


@pytest.mark.parametrize("argv", [
    [],
    ["copy"],
    ["copy", "only-src"],
    ["frobnicate", "a", "b"],
    ["copy", "a", "b", "--jobs", "0"],
    ["copy", "a", "b", "--jobs", "two"],
    ["copy", "a", "b", "--backend", "fibers"],
    ["copy", "a", "b", "--hash", "md5"],
    ["copy", "a", "b", "--manifest", "m", "--hash", "none"],
    ["copy", "a", "b", "--progress", "--no-progress"],
    ["copy", "a", "b", "-v", "-q"],
])
def test_usage_errors_exit_2(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(argv)  # rules between options are checked after parsing (pcopy.options)
    except SystemExit as exc:  # the grammar itself: argparse exits
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert "usage:" in err or (err.startswith("pcopy: error:") and len(err.splitlines()) == 1)
    assert not (tmp_path / "b").exists()


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["copy", "--help"])
    assert info.value.code == 0
    assert "--manifest" in capsys.readouterr().out


def test_version_subprocess():
    proc = subprocess.run([PYTHON, "-m", "pcopy", "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"pcopy {pcopy.__version__}"


def test_module_entry_point_copies(tmp_path, src):
    dst = tmp_path / "dst"
    proc = subprocess.run([PYTHON, "-m", "pcopy", "copy", str(src), str(dst), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["copied"] == 3
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr  # no bar or colour when not a TTY
    assert SUMMARY.match(proc.stderr.strip().splitlines()[-1])
    assert tree_snapshot(dst) == tree_snapshot(src)


def test_module_entry_point_fatal(tmp_path):
    proc = subprocess.run([PYTHON, "-m", "pcopy", "copy", str(tmp_path / "nope"), str(tmp_path / "dst")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("pcopy: error:")
