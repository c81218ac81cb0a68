"""Child processes that cannot outlive their parent.

A forked child inherits every fd of its parent, including the parent's ends
of other children's pipes, so EOF alone does not tell a child that the parent
is gone. Every child pcopy starts therefore:

* asks the kernel to SIGKILL it when its parent dies (``PR_SET_PDEATHSIG``),
  and checks that the parent did not die before it asked;
* closes the parent-side pipe ends it inherited (``close_inherited``), so a
  sibling never keeps another child's pipe open.

With the forkserver start method the parent of a worker is the fork server,
which exits when pcopy does; the chain holds.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Optional

_PR_SET_PDEATHSIG = 1
_parent_ends: list = []  # Connection objects that belong to the parent (closed in forked children)


def register_parent_end(conn) -> None:
    """Remember a pipe end that only the parent may hold."""
    _parent_ends.append(conn)


def forget_parent_end(conn) -> None:
    try:
        _parent_ends.remove(conn)
    except ValueError:
        pass


def close_inherited() -> None:
    """In a freshly forked child: close the parent's pipe ends that came along with the fork."""
    for conn in _parent_ends:
        try:
            conn.close()
        except OSError:
            pass
    _parent_ends.clear()


def die_with_parent(expected_parent: Optional[int] = None) -> None:
    """SIGKILL this process when its parent exits, however it exits (Linux; elsewhere a no-op).

    ``expected_parent``: the pid that started us, to catch a parent that died
    before the request took effect (None when it is not known: forkserver).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if expected_parent is not None and os.getppid() != expected_parent:  # it died before prctl took effect
        os._exit(1)


def child_start(expected_parent: Optional[int] = None) -> None:
    """What every child process does first (see the module docstring)."""
    die_with_parent(expected_parent)
    close_inherited()
