"""Command line: parse arguments, run, print, choose the exit code.

This package is the only one that prints (``output``); the grammar is in
``parser``, one function per command in ``commands``. Every error ends as one
``pcopy: error:`` line (tracebacks only with ``--debug``); a closed stdout
ends the command quietly, as coreutils tools do.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from typing import NoReturn

from ..errors import EXIT_FATAL, Interrupted, OutputClosed, PcopyError, describe

__all__ = ["main", "run"]


def _silence_stdout() -> None:
    """After the reader of stdout went away: point fd 1 at /dev/null so the exit flush cannot complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _traceback(args) -> None:
    if getattr(args, "debug", False):
        import traceback

        traceback.print_exc()


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # stderr is gone too: the exit code is all that is left


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:  # the remote end of a host:path run (pcopy.remote), not a user command
        from ..remote.serve import main as serve

        return serve()
    from .commands import COMMANDS
    from .parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv)  # as given: the --log-file header quotes it
    try:
        return COMMANDS[args.command](args)
    except Interrupted as exc:
        _say(f"pcopy: interrupted by {exc}, in-flight files discarded")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("pcopy: interrupted")
        return Interrupted(2).exit_code
    except OutputClosed as exc:
        _silence_stdout()
        return exc.exit_code
    except PcopyError as exc:
        _traceback(args)
        _say(f"pcopy: error: {exc}")
        return exc.exit_code
    except OSError as exc:  # a bug: an OS error that no stage turned into a message; still one line
        _traceback(args)
        where = exc.filename if exc.filename else "pcopy"
        _say(f"pcopy: error: {os.fsdecode(where)}: {describe(exc)}")
        return EXIT_FATAL


def leave(code: int) -> NoReturn:
    """Exit with the command's code: a signal arriving while the interpreter shuts down (when
    Python puts the default handlers back, but leaves ignored ones) must not turn it into a death
    by that signal."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(code)


def run() -> None:
    """Console-script entry point."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # until the command's guard is in place: end quietly
        signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))
    multiprocessing.freeze_support()
    leave(main())
