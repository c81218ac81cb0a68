"""``pcopy man``: a page that groff (or man) renders without warnings, listing every command,
every option of each, the README's exit codes and the environment variables pcopy reads."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest

import pcopy
from pcopy.cli import main
from pcopy.cli.manpage import render, subcommands, text
from pcopy.cli.parser import build_parser

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
PACKAGE = pathlib.Path(pcopy.__file__).parent


def _format(page: str) -> tuple:
    """(plain text, warnings) of the page as groff renders it with every warning on (man-db's man runs groff)."""
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed (apt-get install groff-base)")
    command = [groff, "-man", "-Tutf8", "-ww", "-rLL=200n", "-P-cbou"]
    done = subprocess.run(command, input=page, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, LC_ALL="C.UTF-8"))
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


@pytest.fixture(scope="module")
def rendered() -> str:
    plain, warnings = _format(render())
    assert warnings == ""
    return plain


def _section(plain: str, title: str) -> str:
    match = re.search(rf"^{title}\n(.*?)(?=^\S)", plain, re.M | re.S)
    assert match, f"no {title} section"
    return match.group(1)


def test_page_has_the_usual_sections(rendered):
    for title in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO"):
        assert re.search(rf"^{title}$", rendered, re.M), title


def test_every_command_and_each_of_its_options_is_listed(rendered):
    commands = "\n" + _section(rendered, "COMMANDS")
    names = list(subcommands(build_parser()).items())
    assert len(names) >= 8
    for index, (name, (_, sub)) in enumerate(names):
        following = names[index + 1][0] if index + 1 < len(names) else None
        start = commands.index(f"\n   pcopy {name}\n")
        end = commands.index(f"\n   pcopy {following}\n") if following else len(commands)
        block = commands[start:end]
        assert f"pcopy {name}" in _section(rendered, "SYNOPSIS")
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", block), f"{name} {option}"


def test_exit_codes_are_the_readmes(rendered):
    table = README.read_text(encoding="utf-8").split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    readme_codes = {int(code) for row in table.splitlines()[2:] for code in re.findall(r"\d+", row.split("|")[1])}
    page_codes = {int(code) for code in re.findall(r"^ {7}(\d+(?:, \d+)*)", _section(rendered, "EXIT STATUS"), re.M)
                  for code in code.split(", ")}
    assert readme_codes >= {0, 1, 2, 3, 4, 130, 141, 143}
    assert page_codes == readme_codes


def test_environment_lists_every_variable_pcopy_reads(rendered):
    read = set()
    lookup = re.compile(r"(?:environ\.get\(|environ\[|getenv\()\"(PCOPY_\w+)\"")
    for path in PACKAGE.rglob("*.py"):
        read |= set(lookup.findall(path.read_text(encoding="utf-8")))
    assert read >= {"PCOPY_CACHE", "PCOPY_SCHEDULER", "PCOPY_START_METHOD"}
    listed = set(re.findall(r"^ {7}(PCOPY_\w+)$", _section(rendered, "ENVIRONMENT"), re.M))
    assert listed == read


def test_text_escapes_what_roff_would_take_for_requests():
    assert text(".hidden files") == "\\&.hidden files"
    assert text("'none' uses") == "\\&'none' uses"
    assert text("a-b\\c") == "a\\-b\\ec"
    assert text("two\n   lines") == "two lines"


def test_a_help_line_starting_with_a_quote_survives():
    import argparse

    parser = argparse.ArgumentParser(prog="pcopy")
    sub = parser.add_subparsers(dest="command").add_parser("demo", help="demo")
    sub.add_argument("--opt", help="'quoted' start and .dot start")
    plain, warnings = _format(render(parser))
    assert warnings == ""
    assert "'quoted' start and .dot start" in plain


def test_man_reads_it_from_stdin():
    """What the README suggests for reading the page without installing it: ``pcopy man | man -l -``."""
    man = shutil.which("man")
    if man is None or shutil.which("groff") is None:
        pytest.skip("man or groff is not installed")
    done = subprocess.run([man, "-l", "-"], input=render(), capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="100"))
    assert done.returncode == 0, done.stderr
    assert "pcopy copy" in done.stdout and "EXIT STATUS" in done.stdout


def test_the_command_prints_roff(capsys):
    assert main(["man"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(".TH PCOPY 1 ")
    assert "\n.SH EXIT STATUS\n" in out
