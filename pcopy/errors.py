"""Exceptions and exit codes.

Every error knows the exit code it ends the program with, so the CLI never
has to guess. Per-file failures are *not* exceptions: workers turn them into
failed results (see ``pcopy.model.results``) and the run goes on.

    BaseException
    ├── Exception
    │   └── PcopyError ............ exit 1  (fatal: could not start or continue)
    │       ├── UsageError ........ exit 2  (bad command line / API arguments)
    │       └── OutputClosed ...... exit 141 (the reader of stdout went away: end quietly)
    └── KeyboardInterrupt
        └── Interrupted ........... exit 130 (SIGINT) / 143 (SIGTERM) / 129 (SIGHUP)

``Interrupted`` derives from ``KeyboardInterrupt`` so that a script's
``except Exception`` does not swallow a Ctrl-C.
"""

from __future__ import annotations

import errno
import os
import signal

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_DIFFERENCES = 4
EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143
EXIT_PIPE = 128 + signal.SIGPIPE  # 141, as a coreutils tool killed by SIGPIPE


class PcopyError(Exception):
    """A fatal error: the run could not start or could not continue."""

    exit_code = EXIT_FATAL


class UsageError(PcopyError):
    """The arguments make no sense together."""

    exit_code = EXIT_USAGE


class OutputClosed(PcopyError):
    """Standard output was closed by its reader (``pcopy hash | head``): stop quietly."""

    exit_code = EXIT_PIPE


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT, SIGTERM or SIGHUP after cleaning up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum
        self.report: object = None  # what was done before the stop, when the command keeps a report
        self.discarded = 0  # files that were in flight (their temp files removed)


DISK_FULL_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT))

# Reasons worded for people; strerror is used for everything else.
_REASONS = {
    errno.ENOSPC: "no space left on device (disk full)",
    errno.EDQUOT: "disk quota exceeded (disk full)",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links (refusing to follow)",
}


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def describe(exc: BaseException) -> str:
    """One-line reason for an exception, without the path (callers add it)."""
    if isinstance(exc, OSError):
        if exc.errno in _REASONS:
            return _REASONS[exc.errno]
        if exc.errno is not None:
            return exc.strerror or os.strerror(exc.errno)
    try:
        text = str(exc).strip().splitlines()
    except Exception:  # a user's exception whose __str__ itself fails
        text = []
    detail = text[0] if text else ""
    if len(detail) > 500:
        detail = detail[:500] + "…"
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
