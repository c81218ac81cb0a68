"""Where each Result of copy, sync and watch goes on its way out: -v lines, --log-file, --json-log.

A dry run prints its itemized lines without -v (that is what a dry run is
for); -q keeps it to errors. The --log-file header of each run names the
command as it was given, shell-quoted, with SRC and DST made absolute, so a
log read months later says exactly what ran where.
"""

from __future__ import annotations

import os
import shlex
import time
from typing import Optional

from ..errors import Interrupted
from ..fs.outputs import OutputFile
from ..model.results import FAILED, INTERRUPTED, Report, Result
from ..version import __version__
from .jsonlog import JsonLog
from .output import absolute, itemized, printable, say, summary


class Reporter:
    """Prints (-v, dry runs) and logs (--log-file, --json-log) one line per change or error, as results arrive."""

    def __init__(self, args) -> None:
        quiet = getattr(args, "quiet", False)
        self.verbose = bool(getattr(args, "verbose", False) or (getattr(args, "dry_run", False) and not quiet))
        self.json: Optional[JsonLog] = None
        self.log: Optional[OutputFile] = None
        if getattr(args, "json_log", None):  # first: a usage error must leave no trace in the other log
            self.json = JsonLog(args.json_log, verbose=bool(getattr(args, "verbose", False)),
                                json_report=bool(getattr(args, "json", False)))
        if getattr(args, "log_file", None):
            self.log = OutputFile(args.log_file, "log file", append=True)
            self._log(header(args))
        if self.json is not None:
            self.json.start(args)
        # Unchanged files make no line here unless the JSON log lists skips (-v): the engine then only counts them.
        self.wants_unchanged = self.json is not None and self.json.verbose

    @property
    def wanted(self) -> bool:
        """Whether the run needs to call this for its results at all."""
        return self.verbose or self.log is not None or self.json is not None

    def _log(self, line: str) -> None:
        if self.log is not None:
            self.log.write((line + "\n").encode("utf-8", "backslashreplace"))

    def __call__(self, result: Result) -> None:
        if self.json is not None:
            self.json(result)
        line = itemized(result)
        if line is None:
            return
        if self.verbose and result.status != FAILED:
            say(line)
        self._log(line)

    def fail(self, exc: BaseException) -> None:
        """The run ended with a fatal error or a signal: say so in the logs, then close them."""
        if isinstance(exc, Interrupted):
            message, reason = f"interrupted by {exc}, in-flight files discarded", INTERRUPTED
        else:
            message, reason = str(exc), "fatal"
        self._log(f"{'fatal: ' if reason == 'fatal' else 'pcopy: '}{message}")
        if self.json is not None:
            self.json.fatal(message, reason)
        self.close(None)

    def close(self, report: Optional[Report], delete: bool = False) -> None:
        json_log, self.json = self.json, None
        if json_log is not None:
            json_log.close(report)
        if self.log is None:
            return
        if report is not None:
            self._log(summary(report, delete))
        self.log.commit()
        self.log = None


def header(args) -> str:
    """``2026-12-01 16:36:16 pcopy sync /abs/src /abs/dst --delete --exclude '*.tmp' (pid N, pcopy V)``."""
    words = ["pcopy", args.command, absolute(args.src), absolute(args.dst)]
    argv = getattr(args, "argv", None)
    if argv is not None:
        words += options_given(list(argv), args.command)
    line = shlex.join(printable(os.fsdecode(w)) for w in words)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line} (pid {os.getpid()}, pcopy {__version__})"


def options_given(argv: list, command: str) -> list:
    """The options of ``argv`` (with their values) in the order given, without the SRC and DST operands."""
    from .parser import build_parser

    sub = build_parser()._subparser(command)  # type: ignore[attr-defined]
    table = sub._option_string_actions if sub is not None else {}
    longs = [name for name in table if name.startswith("--")]
    words = iter(argv[argv.index(command) + 1:] if command in argv else argv)
    kept: list = []
    for word in words:
        if word == "--":
            break  # only operands follow
        if word == "-" or not word.startswith("-"):
            continue  # an operand: SRC or DST
        kept.append(word)
        if word.startswith("--"):
            name, eq, _ = word.partition("=")
            action = table.get(name)
            if action is None:  # argparse takes unambiguous abbreviations
                matches = [long for long in longs if long.startswith(name)]
                action = table[matches[0]] if len(matches) == 1 else None
            if action is not None and action.nargs != 0 and not eq:
                kept.append(next(words, ""))
            continue
        for i in range(1, len(word)):  # a cluster of short options: -vn, -j4, -j 4
            action = table.get("-" + word[i])
            if action is None or action.nargs != 0:
                if action is not None and i == len(word) - 1:
                    kept.append(next(words, ""))
                break
    return kept
