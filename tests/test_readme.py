"""The README says what exists: its Python example runs to the end, and every option its
command lines and option tables name is accepted by the command they document."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from pcopy.cli.manpage import subcommands
from pcopy.cli.parser import build_parser

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text(encoding="utf-8")
PARSERS = {name: sub for name, (_, sub) in subcommands(build_parser()).items()}
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _section(heading: str) -> str:
    """The README text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = TEXT.index(heading + "\n") + len(heading) + 1
    following = re.compile(rf"^#{{1,{len(level)}}} ", re.M).search(TEXT, start)
    return TEXT[start:following.start() if following else len(TEXT)]


def _accepts(command: str, option: str) -> bool:
    return option in PARSERS[command]._option_string_actions


def _tables(section: str) -> list:
    """(commands the text before it names in backticks, rows as lists of cells) for each table."""
    found, intro, rows = [], "", []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
            continue
        if rows:
            found.append(([c for c in re.findall(r"`(\w+)`", intro) if c in PARSERS], rows[2:]))
            intro, rows = "", []
        intro += line + "\n"
    return found


def test_option_tables_name_only_options_that_exist():
    heading = "### `copy` and `sync` options"
    tables = _tables(heading + "\n" + _section(heading))
    assert [commands for commands, _ in tables] == [["copy", "sync"], ["sync", "watch"]]
    missing = []
    for commands, rows in tables:
        assert len(rows) >= 3  # the table was found and parsed
        for option_cell, meaning in rows:
            takers = [c for c in commands if not (c == "watch" and "not for `watch`" in meaning)]
            for option in OPTION.findall(option_cell):
                missing += [f"{c} {option}" for c in takers if not _accepts(c, option)]
            for option in OPTION.findall(" ".join(re.findall(r"`([^`]*)`", meaning))):
                if not any(_accepts(c, option) for c in commands):
                    missing.append(f"{'/'.join(commands)} {option} (in the meaning of {option_cell})")
    assert missing == []


def test_command_lines_name_real_commands_and_options():
    lines = [line.strip() for heading in ("## Commands", "## Watch mode")
             for line in _section(heading).splitlines() if line.startswith("    pcopy ")]
    named, missing = set(), []
    for line in lines:
        command = line.split()[1]
        named.add(command)
        assert command in PARSERS, line
        usage = re.split(r"\s{2,}", line)[0]  # the command line, not its explanation
        missing += [f"{command} {o}" for o in OPTION.findall(usage) if not _accepts(command, o)]
    assert missing == []
    assert named == set(PARSERS), "the Commands block should list every command"


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_the_python_example_runs_to_the_end(tmp_path, start_method):
    """Run as a script (spawned workers import it again) against a small tree; it must end by itself."""
    code = re.search(r"^```python\n(.*?)^```$", _section("## Python API"), re.M | re.S).group(1)
    code = (code.replace('"/mnt/backup', f'"{tmp_path}/backup').replace('"/mnt/mirror"', f'"{tmp_path}/mirror"')
            .replace('"photos"', f'"{tmp_path}/photos"'))
    assert '"/mnt/' not in code, "a path the test does not know yet: add it to the substitutions"
    for relpath, content in {"2024/img001.jpg": b"jpeg", "2024/img001.xmp": b"xmp", "notes.tmp": b"",
                             "cache/thumb.jpg": b"thumb"}.items():
        path = tmp_path / "photos" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (tmp_path / "backup").mkdir()  # the example writes its manifests beside the copy, on the backup disk
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=dict(os.environ, PCOPY_START_METHOD=start_method))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "backup" / "MANIFEST.xxh").read_text().count("\n") == 4
    assert f"{tmp_path}/photos/2024/img001.jpg 4" in done.stdout  # map_files' size_of
