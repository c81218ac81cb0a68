"""The worker's side of a big file copied by several workers at once (``transfer.ranges`` plans it).

    parent: SRC fstat'ed, the temp created once (O_EXCL) ─► HASH + RANGE pieces ─► all done ─► SEAL
    HASH   xxh128 of the whole source, read in order (``content.digest.hash_fd``)
    RANGE  bytes [start, end) to the same offsets of the temp (``content.copydata.copy_range``)
    SEAL   the source unchanged and the temp complete: metadata, then the rename into place

Each piece opens the source and the temp by name beneath its directory's fd (``O_NOFOLLOW``, no
``O_CREAT``) and checks that both are still the files the parent saw (device and inode; for the
source also size, mtime and ctime), so a name swapped meanwhile is never written through. A piece
can run twice (the pool reruns a dead worker's items): a range rewrites the same bytes, a seal
that finds its temp already renamed says so.
"""

from __future__ import annotations

import errno
import os
from typing import NamedTuple

from ..content import digest as digests
from ..content.copydata import copy_range, dst_error
from ..content.digest import Cancelled, SourceChanged
from ..model.entries import FILE, Batch, relpath_join
from ..model.results import CANCELLED, COPIED, INTERRUPTED, SOURCE_CHANGED, Result, failure

HASH, RANGE, SEAL = "hash", "range", "seal"
_OPEN_TEMP = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class Piece(NamedTuple):
    """One pool item of a split file; travels like a ``model.batching.Bundle`` (``reldirs``, ``files``)."""

    batch: Batch  # the file's one-task batch
    key: int  # the file in the parent's table
    part: str  # HASH, RANGE or SEAL
    start: int
    end: int
    tmp: str
    tmp_id: tuple  # (st_dev, st_ino) of the temp the parent created
    source: tuple  # ``identity`` of the source when the parent split it
    kept: int = 0  # --partial: bytes of a kept copy, compared before they are rewritten

    @property
    def reldirs(self) -> set:
        return {self.batch.reldir}

    @property
    def files(self) -> int:
        """What an interruption discards: the file counts once, on its hash (or seal) piece."""
        return 0 if self.part == RANGE else 1


def identity(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def run_piece(copier, piece: Piece) -> Result:
    """The piece's Result (for a range: the bytes written; for the hash: the digest); never raises."""
    task = piece.batch.tasks[0]
    relpath = relpath_join(piece.batch.reldir, task.name)
    copier.reldir = piece.batch.reldir
    try:
        fd = os.open(task.source or task.name, copier.src_flags, dir_fd=copier.src_fd)
        try:
            st = os.fstat(fd)
            if identity(st) != piece.source:
                raise SourceChanged
            if piece.part == HASH:
                digest = digests.hash_fd(fd, st.st_size, copier.hasher, copier.stop)
                digests.check_unchanged(fd, st)
                return Result(relpath, COPIED, FILE, 0, digest)
            if piece.part == RANGE:
                out = _open_temp(copier, piece)[0]
                try:
                    written = copy_range(fd, out, piece.start, piece.end, copier.stop, piece.kept, None,
                                         copier.throttle)
                finally:
                    _close(out)
                return Result(relpath, COPIED, FILE, written)
            return _seal(copier, relpath, task, fd, st, piece)
        finally:
            os.close(fd)
    except Cancelled:
        return Result(relpath, CANCELLED, FILE, 0, None, "", INTERRUPTED, "interrupted")
    except SourceChanged:
        return failure(relpath, FILE, "source changed while being copied", SOURCE_CHANGED)
    except OSError as exc:
        return copier.error_result(relpath, FILE, exc)


def _seal(copier, relpath: str, task, fd: int, st: os.stat_result, piece: Piece) -> Result:
    attrs = copier.meta.read(fd)  # before the last check: a change to them moves ctime
    if identity(os.fstat(fd)) != piece.source:
        raise SourceChanged
    try:
        out, have = _open_temp(copier, piece)
    except FileNotFoundError:
        if _renamed(copier, task.name, piece.tmp_id):  # a rerun: this seal's first run got that far
            return Result(relpath, COPIED, FILE, st.st_size, None, task.why)
        raise
    try:
        if have.st_size != st.st_size:
            raise dst_error(OSError(errno.EIO, f"the temporary file holds {have.st_size} of {st.st_size} bytes"))
        copier.seal(out, st, born_right=False, attrs=attrs)
    except BaseException:
        os.close(out)
        raise
    copier.publish(out, piece.tmp, task.name)
    return Result(relpath, COPIED, FILE, st.st_size, None, task.why)


def _open_temp(copier, piece: Piece) -> tuple:
    """(fd, fstat) of the piece's temp, which must be the very file the parent created."""
    try:
        out = os.open(piece.tmp, _OPEN_TEMP, dir_fd=copier.dst_fd)
    except OSError as exc:
        raise dst_error(exc) from None
    st = os.fstat(out)
    if (st.st_dev, st.st_ino) != piece.tmp_id:
        os.close(out)
        raise dst_error(OSError(errno.ESTALE, "the temporary file was replaced", piece.tmp))
    return out, st


def _close(out: int) -> None:
    try:
        os.close(out)
    except OSError as exc:
        raise dst_error(exc) from None


def _renamed(copier, name: str, tmp_id: tuple) -> bool:
    try:
        st = os.stat(name, dir_fd=copier.dst_fd, follow_symlinks=False)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == tmp_id
