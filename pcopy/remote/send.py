"""The sending side of a batch: read each file once through ``content.digest.read_through`` (the one
read loop), hash what was read, and emit it as frames (see ``protocol``). The same code runs in the
client (push) and in ``pcopy serve`` (pull).
"""

from __future__ import annotations

import os
import stat
from typing import Callable

from ..content import digest as digests
from ..errors import describe
from ..fs.beneath import DirFd
from ..model.entries import FILE, SYMLINK, relpath_join
from ..model.results import ERROR, NOT_REGULAR, SKIPPED, SOURCE_CHANGED, VANISHED, Result, failure
from .protocol import CHUNK, compress


def _meta(st: os.stat_result) -> dict:
    return {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "atime": st.st_atime_ns,
            "mtime": st.st_mtime_ns, "size": st.st_size}


def send_batch(root: str, reldir: str, files: list, emit: Callable, follow: bool = False, stop=None,
               codec: str = "") -> list:
    """Emit ``files`` ([name, why, is_link] in ``root/reldir``, and with --partial the bytes the DST end
    already holds of it) and a final ``done``; returns the Results decided here (a file that vanished
    or kept changing), as plain lists."""
    out: list = []
    flags = digests.READ_FLAGS if not follow else (digests.READ_FLAGS & ~os.O_NOFOLLOW)
    try:
        handle = DirFd(root, reldir, follow)
    except OSError as exc:
        for name, _, is_link in files:
            out.append(list(failure(relpath_join(reldir, name), SYMLINK if is_link else FILE,
                                    f"source directory: {describe(exc)}")))
        emit({"t": "done"})
        return out
    with handle as dir_fd:
        for name, why, is_link, *kept in files:
            relpath = relpath_join(reldir, name)
            if stop is not None and stop.is_set():
                break
            try:
                if is_link:
                    _send_link(dir_fd, name, why, emit)
                else:
                    result = _send_file(dir_fd, name, why, emit, flags, stop, codec, kept[0] if kept else 0)
                    if result is not None:
                        out.append(list(result._replace(relpath=relpath)))
            except FileNotFoundError:
                out.append(list(Result(relpath, SKIPPED, SYMLINK if is_link else FILE, 0, None, "", VANISHED,
                                       "vanished before it could be copied")))
            except OSError as exc:
                out.append(list(failure(relpath, SYMLINK if is_link else FILE, f"source: {describe(exc)}")))
    emit({"t": "done"})
    return out


def _send_link(dir_fd: int, name: str, why: str, emit: Callable) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        raise OSError(0, "no longer a symbolic link")
    target = os.readlink(name, dir_fd=dir_fd)
    emit(dict(_meta(st), t="link", name=name, why=why, target=target))


def _send_file(dir_fd: int, name: str, why: str, emit: Callable, flags: int, stop, codec: str = "",
               kept: int = 0):
    """Send one file (again after a change seen during the read: then whole); a Result only when it is
    not sent. ``kept``: --partial, the bytes the receiver holds of it (``resume``)."""
    fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        for attempt in range(digests.RETRIES + 1):
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return Result(name, SKIPPED, FILE, 0, None, "", NOT_REGULAR, "no longer a regular file")
            if before.st_size <= CHUNK:  # a small file travels whole: one frame, its digest in the header
                try:
                    pieces: list = []
                    digest = digests.read_through(fd, before.st_size, digests.XXH128, stop, pieces.append)
                    digests.check_unchanged(fd, before)
                except digests.SourceChanged:
                    continue  # nothing was sent yet
                data = pieces[0] if pieces else b""
                header = dict(_meta(before), t="file", name=name, why=why, whole=True, digest=digest)
                if codec:
                    header["z"] = codec
                    data = compress(codec, data)
                emit(header, data)
                return None
            offset = _offset_for(kept, before.st_size) if not attempt else 0
            emit(dict(_meta(before), t="file", name=name, why=why, **({"offset": offset} if offset else {})))
            sink = lambda piece: _chunks(piece, emit, codec)  # noqa: E731
            try:
                digest = digests.read_through(fd, before.st_size, digests.XXH128, stop,
                                              _skipping(offset, sink) if offset else sink)
                digests.check_unchanged(fd, before)
            except digests.SourceChanged:
                emit({"t": "end", "error": "retry"})
                continue
            except OSError as exc:
                emit({"t": "end", "error": f"source: {describe(exc)}", "reason": ERROR})
                return None
            emit({"t": "end", "digest": digest, "error": None})
            return None
    finally:
        os.close(fd)
    return failure(name, FILE, f"source changed while being copied (tried {digests.RETRIES + 1} times)",
                   SOURCE_CHANGED)


def _chunks(piece, emit: Callable, codec: str = "") -> None:
    """The bytes read, in frames of at most CHUNK; -z: each frame compressed (``codec``)."""
    for start in range(0, len(piece), CHUNK):
        data = bytes(piece[start:start + CHUNK])
        if codec:
            emit({"t": "chunk", "z": codec}, compress(codec, data))
        else:
            emit({"t": "chunk"}, data)



def _offset_for(kept: int, size: int) -> int:
    """--partial: where the sender starts, the bytes the receiver kept when they can be a prefix of this
    file (``remote.resume``), else 0."""
    return kept if 0 < kept <= size and size > CHUNK else 0


def _skipping(offset: int, sink: Callable) -> Callable:
    """A read_through sink that hands on only the bytes from ``offset`` on (the receiver holds the rest)."""
    position = [0]

    def take(piece) -> None:
        start = position[0]
        position[0] = start + len(piece)
        if position[0] <= offset:
            return
        sink(piece[offset - start:] if start < offset else piece)
    return take
