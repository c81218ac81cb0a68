"""Temporary names: how pcopy's unfinished files are named, found and cleaned up.

Every file pcopy writes is first ``.pcopy-tmp-<run token>-<writer pid>-<n>``
beside its final name (created with ``O_EXCL | O_NOFOLLOW``) and renamed when
complete. The pid lets a later run tell a dead writer's leftovers (removed)
from a live concurrent run's (left alone); sync hides every such name from its
plan, so ``--delete`` never deletes a temp file in use.
"""

from __future__ import annotations

import itertools
import os

from .beneath import DirFd, unlink_quietly

TMP_PREFIX = ".pcopy-tmp-"
PARTIAL_PREFIX = TMP_PREFIX + "partial."  # --partial: a kept, resumable copy (named after its file, no pid)
TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_counter = itertools.count()


def temp_name(token: str) -> str:
    """A fresh temp name for this process and run."""
    return f"{TMP_PREFIX}{token}-{os.getpid()}-{next(_counter)}"


def temp_prefix(token: str) -> str:
    """The part of temp_name that is fixed for this process (callers append a counter)."""
    return f"{TMP_PREFIX}{token}-{os.getpid()}-"


def next_number() -> int:
    return next(_counter)


def is_temp_name(name: str) -> bool:
    return name.startswith(TMP_PREFIX)


def partial_name(name: str) -> str:
    """The kept copy of ``name`` under --partial (a digest of the name when it would be too long)."""
    if len(os.fsencode(PARTIAL_PREFIX + name)) <= 255:
        return PARTIAL_PREFIX + name
    import hashlib

    return PARTIAL_PREFIX + hashlib.sha256(os.fsencode(name)).hexdigest()


def is_partial_name(name: str) -> bool:
    return name.startswith(PARTIAL_PREFIX)


def writer_pid(name: str) -> int:
    """The pid in a temp name, or -1 when the name is not one of ours (or a --partial copy: no writer pid)."""
    parts = name[len(TMP_PREFIX):].split("-") if is_temp_name(name) and not is_partial_name(name) else ()
    if len(parts) != 3 or not parts[1].isdigit():
        return -1
    return int(parts[1])


def is_stale_temp(name: str) -> bool:
    """A temp file of ours whose writer process is gone (dead, or a zombie nobody reaped)."""
    pid = writer_pid(name)
    if pid < 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    try:  # a killed writer nobody reaped yet (pid 1 in many containers) is a zombie: dead too
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False  # the writer is alive: maybe a concurrent run


def remove_temp_files(root: str, reldirs, token: str) -> int:
    """Remove this run's temporary files from the given directories below ``root``."""
    removed = 0
    prefix = f"{TMP_PREFIX}{token}-"
    for reldir in reldirs:
        try:
            handle = DirFd(root, reldir)
        except OSError:
            continue
        with handle as fd:
            try:
                names = os.listdir(fd)
            except OSError:
                continue
            for name in names:
                if name.startswith(prefix):
                    unlink_quietly(name, fd)
                    removed += 1
    return removed
