"""Exceptions and exit codes.

Every error knows the exit code it ends the program with, so the CLI never
has to guess. Per-file failures are *not* exceptions: workers turn them into
failed results (see ``pcopy.model.Result``) and the run goes on.

    BaseException
    ├── Exception
    │   └── PcopyError ............ exit 1  (fatal: could not start or continue)
    │       └── UsageError ........ exit 2  (bad command line / API arguments)
    └── KeyboardInterrupt
        └── Interrupted ........... exit 130 (SIGINT) / 143 (SIGTERM)

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


class PcopyError(Exception):
    """A fatal error: the run could not start or could not continue."""

    exit_code = EXIT_FATAL


class UsageError(PcopyError):
    """The arguments make no sense together."""

    exit_code = EXIT_USAGE


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM after cleaning up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


DISK_FULL = "(disk full)"  # marks the reasons after which writing more is pointless

# Reasons worded for people; strerror is used for everything else.
_REASONS = {
    errno.ENOSPC: f"no space left on device {DISK_FULL}",
    errno.EDQUOT: f"disk quota exceeded {DISK_FULL}",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links (refusing to follow)",
}


def describe(exc: BaseException) -> str:
    """One-line reason for an exception, without the path (callers add it)."""
    if isinstance(exc, OSError):
        if exc.errno in _REASONS:
            return _REASONS[exc.errno]
        if exc.errno is not None:
            return exc.strerror or os.strerror(exc.errno)
    text = str(exc).strip().splitlines()
    detail = text[0] if text else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
