"""Streaming digests and the manifest format that ``xxhsum -c`` checks.

A manifest line is ``<32 lowercase hex>  <relative path>`` as ``xxhsum -H2``
prints it. A name holding a newline or carriage return cannot be written
plainly; such a line starts with a backslash and escapes ``\\``, ``\\n`` and
``\\r`` (the coreutils/xxhsum ≥ 0.8.2 rule). Other names, backslashes
included, are written raw, which every xxhsum version reads back.
Names are written as the bytes they have on disk (surrogateescape).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import xxhash

ALGORITHMS = ("xxh128", "none")


def new_hasher(algo: str) -> Optional[Callable]:
    """A hasher factory for ``algo``; None when hashing is off."""
    if algo == "xxh128":
        return xxhash.xxh3_128
    if algo == "none":
        return None
    raise ValueError(f"unknown hash algorithm: {algo}")


def file_digest(path_or_fd, algo: str = "xxh128", chunk: int = 1 << 20) -> str:
    """Digest of a whole file, read in bounded chunks."""
    factory = new_hasher(algo)
    if factory is None:
        raise ValueError("hash algorithm 'none' has no digest")
    hasher = factory()
    own = not isinstance(path_or_fd, int)
    fd = os.open(path_or_fd, os.O_RDONLY) if own else path_or_fd
    try:
        while True:
            data = os.read(fd, chunk)
            if not data:
                return hasher.hexdigest()
            hasher.update(data)
    finally:
        if own:
            os.close(fd)


def manifest_line(digest: str, relpath: str) -> bytes:
    """One manifest line (with its newline) as bytes."""
    name = os.fsencode(relpath)
    if b"\n" in name or b"\r" in name:
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return b"\\" + digest.encode() + b"  " + name + b"\n"
    return digest.encode() + b"  " + name + b"\n"


class ManifestWriter:
    """Streams manifest lines to ``FILE.pcopy-tmp`` and renames it into place on close.

    Lines are written as results arrive, so memory stays flat however many
    files the tree holds; an interrupted run leaves no half manifest under
    the final name.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.tmp = path + ".pcopy-tmp"
        self._file = open(self.tmp, "wb")

    def add(self, digest: str, relpath: str) -> None:
        self._file.write(manifest_line(digest, relpath))

    def add_many(self, results) -> None:
        """Write a line for every result that carries a digest (copied or verified-unchanged)."""
        self._file.write(b"".join([manifest_line(r.digest, r.relpath) for r in results
                                   if r.digest is not None and r.status != "failed"]))

    def close(self) -> None:
        self._file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self._file.close()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass
