"""``--json-log FILE|-``: one JSON object per line for every action, written as it happens.

Modelled on rclone's ``--use-json-log``: a program tailing the file sees each
copy, link, deletion, directory, permission fix, skip and error the moment
the parent learns of it, then a closing ``summary`` line with the report's
counts. A run begins with a ``start`` line, so runs appended to one file
stay apart (a killed run leaves no summary).

Streaming matters more than atomicity here: the file is appended to in place,
like ``--log-file`` and a shell's ``>>`` (a device, FIFO or symlink as any
output file), one ``write`` per line, never through a temp name. Unchanged
files get a line only with ``-v``: a no-op sync of a million files writes two
lines, not a million. Paths that are not valid UTF-8 keep their bytes as
``\\udcXX`` escapes (Python's surrogateescape; ``json.dumps`` escapes the lone
surrogates), so ``os.fsencode(json.loads(line)["path"])`` gives the name back.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Optional

from ..errors import UsageError
from ..fs.outputs import OutputFile
from ..model.results import (
    CANCELLED,
    COPIED,
    CREATED,
    DELETED,
    FAILED,
    LINK_IN_PLACE,
    LINKED,
    MOVED,
    SAME_CONTENT,
    SKIPPED,
    UNCHANGED,
    UPDATED,
    Report,
    Result,
)
from ..version import __version__
from .output import absolute, out

ACTIONS = {COPIED: "copy", LINKED: "link", DELETED: "delete", CREATED: "mkdir", UPDATED: "update", MOVED: "rename",
           SKIPPED: "skip", CANCELLED: "skip", FAILED: "error"}
UNCHANGED_REASONS = ("", UNCHANGED, SAME_CONTENT, LINK_IN_PLACE)


def now() -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-12-01T15:36:16.042Z``."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def record(result: Result, verbose: bool = False) -> Optional[dict]:
    """The log object for one Result, or None when it is not logged (unchanged files without -v)."""
    action = ACTIONS.get(result.status)
    if action is None:
        return None
    if action == "skip" and result.reason in UNCHANGED_REASONS and not verbose:
        return None
    obj = {"time": now(), "action": action, "path": result.relpath, "size": result.size,
           "digest": result.digest, "item": result.item or None,
           "error": result.message if result.status == FAILED else None, "reason": result.reason or None}
    if result.status == LINKED and result.message:
        obj["target"] = result.message  # the name it is a hard link to
    elif result.status == MOVED:
        obj["from"] = result.message  # the old name, renamed in DST instead of copied again
    return obj


def summary_record(report: Report) -> dict:
    counts = report.to_dict()
    counts.pop("results", None)
    counts.pop("failures", None)  # each already has its "error" line
    return {"time": now(), "action": "summary", **counts}


class JsonLog:
    """The --json-log sink: ``start``, one line per action, then ``summary`` (or a fatal ``error``)."""

    def __init__(self, target: str, verbose: bool = False, json_report: bool = False) -> None:
        self.verbose = verbose
        self.file: Optional[OutputFile] = None
        if target == "-":
            if json_report:
                raise UsageError("--json-log - and --json both write to stdout: give --json-log a FILE")
        else:
            self.file = OutputFile(target, "JSON log", append=True)

    def start(self, args) -> None:
        self._write({"time": now(), "action": "start", "command": args.command,
                     "src": absolute(args.src), "dst": absolute(args.dst),
                     "argv": list(getattr(args, "argv", None) or ()), "pid": os.getpid(), "version": __version__})

    def _write(self, obj: dict) -> None:
        line = json.dumps(obj) + "\n"  # ensure_ascii: lone surrogates (undecodable bytes) become \udcXX
        if self.file is None:
            out(line)
        else:
            self.file.write(line.encode("ascii"))

    def __call__(self, result: Result) -> None:
        obj = record(result, self.verbose)
        if obj is not None:
            self._write(obj)

    def fatal(self, message: str, reason: str) -> None:
        self._write({"time": now(), "action": "error", "path": None, "size": 0, "digest": None, "item": None,
                     "error": message, "reason": reason})

    def close(self, report: Optional[Report]) -> None:
        if report is not None:
            self._write(summary_record(report))
        if self.file is not None:
            self.file.commit()
            self.file = None
