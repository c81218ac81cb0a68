"""Fault injection inside Dask worker processes (run there with ``client.run``).

The ``io_fault`` fixture patches ``os`` in the test process, which Dask
workers are not; these helpers patch ``os`` in each worker process instead.
They import nothing from pytest so a worker can import this module (the
tests directory is on the workers' ``sys.path``: LocalCluster spawns them
with the parent's path).
"""

from __future__ import annotations

import errno
import os
import time

_saved: dict = {}  # os function name → the real one


def _patch(func: str, make_fake) -> None:
    real = _saved.get(func) or getattr(os, func)
    _saved[func] = real
    setattr(os, func, make_fake(real))


def restore() -> int:
    """Undo every patch in this worker; returns how many were undone."""
    n = len(_saved)
    for func, real in _saved.items():
        setattr(os, func, real)
    _saved.clear()
    return n


def _is_source_open(path, flags, dir_fd) -> bool:
    return dir_fd is not None and not flags & os.O_DIRECTORY and flags & os.O_ACCMODE == os.O_RDONLY


def fail_source_open(name: str, code: int = errno.EACCES) -> None:
    """Opening the source file ``name`` fails with ``code`` (an OSError: a per-file failure)."""
    def make(real):
        def fake(path, flags, *args, dir_fd=None, **kwargs):
            if path == name and _is_source_open(path, flags, dir_fd):
                raise OSError(code, os.strerror(code))
            return real(path, flags, *args, dir_fd=dir_fd, **kwargs)
        return fake
    _patch("open", make)


def crash_on_source_open(name: str) -> None:
    """Opening the source file ``name`` raises RuntimeError: the whole task errs."""
    def make(real):
        def fake(path, flags, *args, dir_fd=None, **kwargs):
            if path == name and _is_source_open(path, flags, dir_fd):
                raise RuntimeError(f"injected crash on {name}")
            return real(path, flags, *args, dir_fd=dir_fd, **kwargs)
        return fake
    _patch("open", make)


def hide_tree(prefix: str) -> None:
    """Paths under ``prefix`` do not exist for this worker (it 'mounts' something else there)."""
    def make(real):
        def fake(path, flags, *args, dir_fd=None, **kwargs):
            if dir_fd is None and os.fspath(path).startswith(prefix):
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            return real(path, flags, *args, dir_fd=dir_fd, **kwargs)
        return fake
    _patch("open", make)


def log_source_opens(log: str, seconds: float = 0.0) -> None:
    """Every source file open appends this worker's pid to ``log``, after sleeping ``seconds``."""
    def make(real):
        def fake(path, flags, *args, dir_fd=None, **kwargs):
            if _is_source_open(path, flags, dir_fd):
                time.sleep(seconds)
                fd = real(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, b"%d\n" % os.getpid())
                finally:
                    os.close(fd)
            return real(path, flags, *args, dir_fd=dir_fd, **kwargs)
        return fake
    _patch("open", make)


def stall_before_rename(name: str, marker: str, seconds: float = 120.0) -> None:
    """The first worker about to rename its finished temp file onto ``name`` writes its pid
    to ``marker`` and stalls there (so it can be killed with the temp file on disk)."""
    def make(real):
        def fake(src, dst, *args, **kwargs):
            if dst == name:
                try:
                    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    pass  # already stalled once (in the worker that was killed): go on
                else:
                    os.write(fd, str(os.getpid()).encode())
                    os.close(fd)
                    time.sleep(seconds)
            return real(src, dst, *args, **kwargs)
        return fake
    _patch("rename", make)


def pcopy_tasks(dask_scheduler) -> list:
    """Run on the scheduler: the pcopy batch tasks it still knows about."""
    return [str(key) for key in dask_scheduler.tasks if "pcopy_batch" in str(key)]
