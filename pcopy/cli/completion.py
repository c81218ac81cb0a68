"""``pcopy completion SHELL``: tab completion generated from the argparse grammar.

shtab writes the bash, zsh and fish scripts from the same parser that parses the
command line, so a new option completes as soon as it exists. It is imported
here only, when a script is asked for: pcopy's start-up stays as fast as before.
Arguments whose metavar names a directory or a file complete paths of that kind.
"""

from __future__ import annotations

import argparse

from .output import out
from .parser import build_parser

DIRECTORY_METAVARS = frozenset({"SRC", "DST", "ROOT", "DIR", "SRC DST | ROOT"})
FILE_METAVARS = frozenset({"FILE"})


def _parsers(parser: argparse.ArgumentParser):
    """The parser and every subcommand's parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def mark_paths(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Tell shtab which arguments are directories or files (its ``action.complete`` hook)."""
    import shtab

    for each in _parsers(parser):
        for action in each._actions:
            if action.metavar in DIRECTORY_METAVARS:
                action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
            elif action.metavar in FILE_METAVARS:
                action.complete = shtab.FILE  # type: ignore[attr-defined]
    return parser


def completion_script(shell: str) -> str:
    """The completion script for ``shell`` (one of ``parser.COMPLETION_SHELLS``)."""
    import shtab

    script = shtab.complete(mark_paths(build_parser()), shell=shell)
    return script if script.endswith("\n") else script + "\n"


def run_completion(args) -> int:
    out(completion_script(args.shell))
    return 0
