"""Streaming a transform between the source fd and the temp file's fd.

    source fd ─► BufferedReader ─► transform(src, dst, relpath) ─► BufferedWriter ─► temp fd
                 (checks for Ctrl-C,                               (hashes the bytes written,
                  tags source errors)                               tags destination errors)
"""

from __future__ import annotations

import io
import os
from typing import Callable, Optional

from ...errors import describe
from .base import Transform, TransformError

CHUNK = 1 << 20


class _SourceRaw(io.RawIOBase):
    """The source fd as a raw stream; never closes the fd; checks for a stop on each read."""

    def __init__(self, fd: int, check: Callable, hasher=None) -> None:
        self.fd = fd
        self.check = check
        self.hasher = hasher  # hashes the source bytes (the young-file check compares a second read)
        self.failure: Optional[BaseException] = None
        self.consumed = 0
        self.detached = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.detached:  # the transform kept a reference after it returned
            return 0
        try:
            self.check()
            n = os.readv(self.fd, [buffer])
        except OSError as exc:
            exc.pcopy_side = "source"  # type: ignore[attr-defined]
            self.failure = exc
            raise
        except BaseException as exc:  # a stop request
            self.failure = exc
            raise
        self.consumed += n
        if self.hasher is not None and n:
            self.hasher.update(memoryview(buffer)[:n])
        return n


class _OutputRaw(io.RawIOBase):
    """The temp file fd as a raw stream that hashes what is written; never closes the fd."""

    def __init__(self, fd: int, hasher, check: Callable) -> None:
        self.fd = fd
        self.hasher = hasher
        self.check = check
        self.failure: Optional[BaseException] = None
        self.written = 0
        self.detached = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        if self.detached:  # never write to the fd after stream() returned: it may be reused
            return size
        try:
            self.check()
            if self.hasher is not None:
                self.hasher.update(view)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            exc.pcopy_side = "destination"  # type: ignore[attr-defined]
            self.failure = exc
            raise
        except BaseException as exc:
            self.failure = exc
            raise
        self.written += size
        return size


def stream(transform: Transform, src_fd: int, out_fd: int, relpath: str, hasher, check: Callable,
           source_hasher=None):
    """Run ``transform`` from ``src_fd`` into ``out_fd``; return ``(returned_name, bytes_written)``.

    ``hasher`` hashes the bytes written, ``source_hasher`` the bytes read.

    I/O failures of our own streams (tagged with ``pcopy_side``) and stop
    requests from ``check`` are re-raised as they are, even when the transform
    caught them or wrapped them in its own exception; anything else the
    transform raises becomes ``TransformError`` with a one-line message.
    """
    source = _SourceRaw(src_fd, check, source_hasher)
    output = _OutputRaw(out_fd, hasher, check)
    reader = io.BufferedReader(source, CHUNK)
    writer = io.BufferedWriter(output, CHUNK)
    try:
        returned = transform(reader, writer, relpath)
        if not writer.closed:
            writer.flush()
    except Exception as exc:
        failure = output.failure or source.failure
        if failure is not None:
            raise failure from None
        raise TransformError(describe(exc)) from None
    finally:
        source.detached = output.detached = True
        for stream_ in (writer, reader):
            try:
                stream_.close()  # detached: drops any unflushed bytes, touches no fd
            except Exception:
                pass
    failure = output.failure or source.failure
    if failure is not None:  # the transform swallowed one of our errors: the output is incomplete
        raise failure
    return returned, output.written
