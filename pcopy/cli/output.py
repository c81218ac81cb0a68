"""What the CLI prints and where: one-line messages on stderr, machine output on stdout.

Human output (progress, itemized lines, errors, summaries) goes to stderr;
machine output (``--json``, manifests, ``map`` results) to stdout. A closed
stdout or stderr (``| head``) raises ``OutputClosed``, which ends the command
quietly; any other write error names the stream and the reason.
"""

from __future__ import annotations

import sys
from typing import Optional

from ..errors import OutputClosed, PcopyError, describe
from ..model.entries import DIR
from ..model.results import (
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
from ..runtime.progress import human_bytes, lines_above


def _write(stream, name: str, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        raise OutputClosed(name) from None
    except OSError as exc:
        raise PcopyError(f"{name}: cannot write: {describe(exc)}") from None


def say(line: str) -> None:
    """One line on stderr (above the progress bar, when one is shown)."""
    with lines_above():
        _write(sys.stderr, "stderr", line + "\n")


def out(text: str) -> None:
    """Text on stdout (machine output)."""
    _write(sys.stdout, "stdout", text)


class Stdout:
    """stdout as a binary sink for manifest lines (``hash``): the same error rules as ``out``."""

    def write(self, data: bytes) -> None:
        try:
            sys.stdout.buffer.write(data)
        except BrokenPipeError:
            raise OutputClosed("stdout") from None
        except OSError as exc:
            raise PcopyError(f"stdout: cannot write: {describe(exc)}") from None

    def flush(self) -> None:
        try:
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise OutputClosed("stdout") from None
        except OSError as exc:
            raise PcopyError(f"stdout: cannot write: {describe(exc)}") from None


def printable(path: str) -> str:
    """A path on one line: control characters escaped, undecodable bytes as \\xNN."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if any(c in text for c in "\n\r\t"):
        text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return text


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary(report: Report, delete: bool = False) -> str:
    rate = report.bytes_copied / report.seconds if report.seconds > 0 else 0.0
    links = f", {plural(report.symlinks, 'symlink')}" if report.symlinks else ""
    if report.dry_run:
        parts = [f"would copy {plural(report.copied, 'file')} ({human_bytes(report.bytes_copied)}){links}"]
        if report.linked:
            parts.append(f"link {report.linked}")
        if report.updated:
            parts.append(f"update {report.updated}")
        if report.renamed:
            parts.append(f"rename {report.renamed}")
        if delete or report.deleted:
            parts.append(f"delete {report.deleted}")
        parts.append(f"create {plural(report.dirs, 'directory').replace('directorys', 'directories')}")
        return (f"pcopy: dry run: {', '.join(parts)}; {report.skipped} unchanged, {report.failed} failed; "
                "nothing was changed")
    extra = "".join(f", {label} {n}" for label, n in (("updated", report.updated), ("linked", report.linked),
                                                       ("renamed", report.renamed), ("deleted", report.deleted)) if n)
    return (f"pcopy: copied {plural(report.copied, 'file')} ({human_bytes(report.bytes_copied)}){links}, "
            f"skipped {report.skipped}{extra}, failed {report.failed} in {report.seconds:.2f} s "
            f"({human_bytes(rate)}/s)")


_QUIET_SKIPS = ("", UNCHANGED, SAME_CONTENT, LINK_IN_PLACE)


def itemized(result: Result) -> Optional[str]:
    """The rsync -i style line for a change, or None for results that are not changes."""
    status = result.status
    if status == MOVED:  # rclone logs "Renamed from"; the old name follows the arrow's tail
        suffix = "/" if result.kind == DIR else ""
        return f"{result.item} {printable(result.relpath)}{suffix} <= {printable(result.message or '')}"
    if status in (COPIED, LINKED, DELETED, CREATED, UPDATED):
        suffix = "/" if result.kind == DIR else ""  # rsync: "cd+++++++++ new/", "*deleting   old/"
        code = result.item or ">f+++++++++"
        target = f" => {printable(result.message)}" if status == LINKED and result.message else ""
        return f"{code} {printable(result.relpath)}{suffix}{target}"
    if status == FAILED:
        return f"error {printable(result.relpath)}: {result.message}"
    if status == SKIPPED and result.reason not in _QUIET_SKIPS:
        return f"skipping {printable(result.relpath)}: {result.message}"  # specials, vanished files
    return None


def absolute(path: str) -> str:
    """A path as logs show it: made absolute, except a ``[user@]host:path`` (another machine's)."""
    import os

    from ..remote.transport import parse

    return path if parse(path) is not None else os.path.abspath(path)
