"""``python -m pcopy``."""

import signal
import sys


def _quit(signum, frame):  # until the command's own signal guard is in place: end quietly
    sys.exit(128 + signum)


for _signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_signum, _quit)

import multiprocessing  # noqa: E402 (after the handlers: a Ctrl-C during start-up is not a traceback)

from .cli import leave, main  # noqa: E402

if __name__ == "__main__":
    multiprocessing.freeze_support()
    leave(main())
