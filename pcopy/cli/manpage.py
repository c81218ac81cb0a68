"""``pcopy man``: the manual page, in roff, generated from the argparse grammar.

Every command and option comes from the parser that parses the command line, so
the page cannot drift from it; the exit codes come from ``pcopy.errors``. The
roff is written here (about a hundred lines) rather than by argparse-manpage:
that package's API for adding sections is private (``_data``), and it neither
escapes a wrapped help line that starts with ``.`` or ``'`` (roff would take it
for a request and drop it) nor gives a page with EXIT STATUS and ENVIRONMENT.
"""

from __future__ import annotations

import argparse
import re
import signal

from ..errors import EXIT_DIFFERENCES, EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_PIPE, EXIT_USAGE
from ..version import __version__
from .output import out
from .parser import build_parser

SUMMARY = "copy, mirror and check directory trees in parallel, with xxHash checksums"

DESCRIPTION = (
    "pcopy copies, mirrors and processes directory trees with a bounded pool of worker processes and "
    "checksums every file it writes (xxh128). DST receives the contents of SRC (like rsync -a SRC/ DST/) and "
    "is created if missing. Each file is written to a temporary name beside its target and renamed into "
    "place only when complete, so a final name never holds a half-written file.",
    "Progress, itemized changes, errors and summaries go to stderr; machine output (--json, manifests, map "
    "results) goes to stdout or the named file. Every error line names the path and the reason; tracebacks "
    "appear only with --debug. The README has the full documentation.",
)

EXIT_STATUS = (
    (f"{EXIT_OK}", "everything done (or nothing to do)"),
    (f"{EXIT_FATAL}", "fatal: could not start or continue (SRC missing or not a directory, SRC == DST, DST "
                      "inside SRC, SRC inside DST with --delete, DST not creatable, nothing at all writable on a "
                      "full disk, --max-delete exceeded)"),
    (f"{EXIT_USAGE}", "usage error"),
    (f"{EXIT_PARTIAL}", "partial: some entries failed; each is listed as 'pcopy: error: PATH: reason'"),
    (f"{EXIT_DIFFERENCES}", "verify found differences"),
    (", ".join(str(128 + s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)),
     "interrupted by SIGINT, SIGTERM or SIGHUP (in-flight files discarded)"),
    (f"{EXIT_PIPE}", "stdout was closed by its reader (pcopy hash DIR | head): the command stopped quietly, as "
                     "a coreutils tool killed by SIGPIPE"),
)

ENVIRONMENT = (
    ("PCOPY_SCHEDULER", "the default of --scheduler: the Dask scheduler (tcp://HOST:PORT) that runs the "
                        "per-file work of copy and sync"),
    ("PCOPY_CACHE", "the hash cache file of hash and verify (--cache FILE overrides it, --no-cache bypasses it)"),
    ("XDG_CACHE_HOME", "where the default hash cache lives when PCOPY_CACHE is not set"),
    ("PCOPY_START_METHOD", "how worker processes are started: fork, spawn or forkserver (default: Python's "
                           "multiprocessing default)"),
)

FILES = (
    ("${XDG_CACHE_HOME:-~/.cache}/pcopy/hashes.sqlite3",
     "the default hash cache: (device, inode, size, mtime, ctime) to digest; a corrupt one is rebuilt, "
     "deleting it only costs a re-read"),
)

SEE_ALSO = ("cp(1)", "rsync(1)", "xxhsum(1)", "sha256sum(1)")


def text(value: str) -> str:
    """One roff text line: backslashes and hyphens escaped, a leading ``.`` or ``'`` made literal."""
    line = re.sub(r"\s*\n\s*", " ", value.strip()).replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + line if line[:1] in (".", "'") else line


def bold(value: str) -> str:
    return f"\\fB{text(value)}\\fR"


def italic(value: str) -> str:
    return f"\\fI{text(value)}\\fR"


def subcommands(parser: argparse.ArgumentParser) -> dict:
    """name -> (one-line help, parser) for each subcommand, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return {name: (helps.get(name, ""), sub) for name, sub in action.choices.items()}
    return {}


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices:
        return "|".join(map(str, action.choices))
    return action.dest.upper()


def _synopsis(name: str, sub: argparse.ArgumentParser) -> str:
    words = [bold(f"pcopy {name}")]
    if any(a.option_strings and not isinstance(a, argparse._HelpAction) for a in sub._actions):
        words.append(f"[{italic('options')}]")
    words += [italic(_metavar(a)) for a in sub._actions if not a.option_strings]
    return " ".join(words)


def _option_help(action: argparse.Action, actions: list) -> str:
    if action.help:
        return argparse.HelpFormatter("pcopy")._expand_help(action)
    # the unhelped half of a pair such as --progress/--no-progress
    partner = next((a for a in actions if a.dest == action.dest and a is not action and a.help), None)
    return f"the opposite of {partner.option_strings[-1]}" if partner else ""


def _options(sub: argparse.ArgumentParser) -> list:
    lines = []
    for action in sub._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        flags = ", ".join(bold(s) for s in action.option_strings)
        if action.nargs != 0:
            flags += " " + italic(_metavar(action))
        lines += [".TP", flags]
        help_text = _option_help(action, sub._actions)
        if help_text:
            lines.append(text(help_text))
    return lines


def _table(rows, name_style=bold) -> list:
    lines = []
    for name, meaning in rows:
        lines += [".TP", name_style(name), text(meaning)]
    return lines


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole page for ``man -l`` or ``man1/pcopy.1``."""
    parser = parser or build_parser()
    commands = subcommands(parser)
    lines = [f'.TH PCOPY 1 "" "pcopy {text(__version__)}" "User Commands"',
             ".nh", ".ad l",  # no hyphenation, ragged right: option names stay whole
             ".SH NAME", "pcopy \\- " + text(SUMMARY), ".SH SYNOPSIS"]
    for index, (name, (_, sub)) in enumerate(commands.items()):
        lines += ([".br"] if index else []) + [_synopsis(name, sub)]
    lines += [".br", f"{bold('pcopy')} {bold('--version')}", ".SH DESCRIPTION"]
    for index, paragraph in enumerate(DESCRIPTION):
        lines += ([".PP"] if index else []) + [text(paragraph)]
    lines.append(".SH COMMANDS")
    for name, (summary, sub) in commands.items():
        lines += [f".SS {bold(f'pcopy {name}')}", _synopsis(name, sub), ".PP", text(sub.description or summary)]
        lines += _options(sub)
    lines += [".SH EXIT STATUS", *_table(EXIT_STATUS), ".SH ENVIRONMENT", *_table(ENVIRONMENT),
              ".SH FILES", *_table(FILES, italic), ".SH SEE ALSO",
              ", ".join(bold(page[:-3]) + page[-3:] for page in SEE_ALSO)]
    return "\n".join(lines) + "\n"


def run_man(args) -> int:
    out(render())
    return 0
