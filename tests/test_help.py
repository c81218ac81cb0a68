"""``--help`` says what the command does: options it mentions exist, README sections it points
to exist, and ``hash -o -`` means stdout as its help says."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

from pcopy.cli.manpage import subcommands
from pcopy.cli.parser import build_parser

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
COMMANDS = subcommands(build_parser())
OTHER_TOOLS = {("verify", "--tag"),  # "a manifest written by xxhsum/sha256sum (GNU or --tag form)"
               # --remote-pcopy: "rsync's --rsync-path"
               ("copy", "--rsync-path"), ("sync", "--rsync-path"), ("watch", "--rsync-path")}


def _texts(summary: str, sub) -> list:
    return [summary, sub.description or ""] + [action.help or "" for action in sub._actions]


def test_help_mentions_only_options_the_command_has():
    wrong = []
    for name, (summary, sub) in COMMANDS.items():
        for text in _texts(summary, sub):
            text = re.sub(r"except [^.]*", "", text)  # "takes sync's options, except --dry-run and --manifest"
            for option in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", text):
                if option not in sub._option_string_actions and (name, option) not in OTHER_TOOLS:
                    wrong.append(f"{name}: {option} in {text!r}")
    assert wrong == []


def test_readme_sections_named_in_help_exist():
    headings = {re.sub(r"[`*]", "", line.lstrip("#").strip())
                for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("#")}
    named = {}
    for name, (summary, sub) in COMMANDS.items():
        for text in _texts(summary, sub):
            for section in re.findall(r"README section '([^']+)'", text):
                named[section] = name
    assert {"Transforms and map", "Shell completion and man page"} <= set(named)
    assert {section: name for section, name in named.items() if section not in headings} == {}


def test_transform_help_points_to_the_readme():
    transform = COMMANDS["copy"][1]._option_string_actions["--transform"]
    assert "README section 'Transforms and map'" in transform.help


def test_hash_output_dash_is_stdout(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a\n")
    done = subprocess.run([sys.executable, "-m", "pcopy", "hash", str(root), "-o", "-", "--no-cache", "-q",
                           "--backend", "thread"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"[0-9a-f]{32}  a\.txt\n", done.stdout)
    assert not (tmp_path / "-").exists()
