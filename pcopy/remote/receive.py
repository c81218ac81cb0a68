"""The receiving side of a batch: the worker's own write path (``transfer.worker.BatchCopier``):
a temp name created ``O_EXCL`` beside the final name in a directory opened ``O_NOFOLLOW``
component by component beneath the DST root (``fs.beneath.DirCache``), owner, mode and times set
on the temp file, renamed into place only when complete. The receiver hashes what it wrote and
compares it with the sender's digest of what it read: a mismatch discards the temp file and comes
back as a ``mismatch`` failure the client sends again. Runs in ``pcopy serve`` (push) and in the
client (pull).
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple

from ..content import digest as digests
from ..content.copydata import dst_error
from ..errors import describe, is_disk_full
from ..fs.beneath import unlink_quietly
from ..fs.temps import TMP_FLAGS
from ..model.entries import FILE, SYMLINK, relpath_join
from ..model.results import COPIED, DISK_FULL, ERROR, Result, failure
from ..options import Options
from ..runtime import worker
from ..transfer.worker import BatchCopier
from . import resume
from .protocol import ProtocolError, check_name, check_relpath, decompress

MISMATCH = "mismatch"  # reason of a file whose written bytes did not hash like the bytes read


class Meta(NamedTuple):
    """The sender's stat, shaped like the ``os.stat_result`` fields ``BatchCopier.seal`` reads."""

    st_mode: int
    st_uid: int
    st_gid: int
    st_atime_ns: int
    st_mtime_ns: int
    st_size: int


def receiver_options(root: str, token: str, spec: dict) -> Options:
    """The receiving side's Options: only plain fields travel (see client.receiver_spec)."""
    owner = bool(spec.get("owner")) and os.geteuid() == 0
    backup = spec.get("backup") or {}  # --backup: where this end keeps what it replaces (ops.backups_of)
    where = backup.get("dir")
    return Options(src="", dst=root, token=token, owner=owner, fsync=bool(spec.get("fsync")),
                   xattrs=False, acls=False, dry_run=False, bwlimit=int(spec.get("bwlimit") or 0),
                   jobs=int(spec.get("streams") or 1), partial=bool(spec.get("partial")), backup=bool(backup),
                   backup_dir=os.path.expanduser(where) if where else None, suffix=str(backup.get("suffix") or ""))


def _meta(header: dict) -> Meta:
    return Meta(int(header["mode"]), int(header["uid"]), int(header["gid"]), int(header["atime"]),
                int(header["mtime"]), int(header["size"]))


def receive_batch(options: Options, reldir: str, next_frame: Callable) -> list:
    """Write the files that arrive (until ``done``); one Result (as a list) per file that arrived."""
    check_relpath(reldir)
    dsts = worker.dir_cache(options.token, options.dst)
    try:
        dst_fd = dsts.acquire(reldir)
    except OSError as exc:
        return [list(r) for r in _drain(reldir, next_frame, f"destination directory: {describe(exc)}", exc)]
    try:
        copier = Receiver(options, -1, dst_fd)
        copier.reldir = reldir
        results: list = []
        while True:
            header, payload = next_frame()
            kind = header.get("t")
            if kind == "done":
                break
            name = check_name(header.get("name"))
            relpath = relpath_join(reldir, name)
            if kind == "link":
                result = copier.write_link(relpath, name, header)
            elif kind == "file":
                result = copier.write_file(relpath, name, header, next_frame, payload)
            else:
                raise ProtocolError(f"unexpected frame {kind!r}")
            if result is not None:
                results.append(list(result))
        if options.fsync:
            os.fsync(dst_fd)
        return results
    finally:
        dsts.release(dst_fd)


def _drain(reldir: str, next_frame: Callable, message: str, exc: BaseException) -> list:
    """Read a batch that cannot be written, failing each file."""
    reason = DISK_FULL if isinstance(exc, OSError) and is_disk_full(exc) else ERROR
    out: list = []
    while True:
        header, _ = next_frame()
        if header.get("t") == "done":
            return out
        if header.get("t") in ("file", "link"):
            out.append(failure(relpath_join(reldir, header["name"]), FILE if header["t"] == "file" else SYMLINK,
                               message, reason))
        elif header.get("t") == "end" and header.get("error") == "retry" and out:
            out.pop()


class Receiver(BatchCopier):
    """BatchCopier whose source is the stream: the write half of ``copy_file`` and ``copy_symlink``."""

    def write_file(self, relpath: str, name: str, header: dict, next_frame: Callable, payload: bytes = b""):
        """One file's frames into a temp file, published when complete and its digest matches."""
        meta = _meta(header)
        kept = self.options.partial and not header.get("whole")  # --partial: its kept copy (``resume``)
        if kept:
            tmp, out, error, hasher = resume.open_resumed(self.dst_fd, name, meta.st_size,
                                                          int(header.get("offset") or 0))
        else:
            tmp, out, error = self.new_temp(), -1, None
            try:
                out = os.open(tmp, TMP_FLAGS, 0o600, dir_fd=self.dst_fd)
            except OSError as exc:
                error = dst_error(exc)
            hasher = digests.XXH128.new()
        try:
            if header.get("whole"):  # a small file in one frame: its bytes came with the header
                frame = {"t": "end", "digest": header.get("digest"), "error": None}
                self._write(out, hasher, header, payload)
            else:
                frame = self._take_chunks(out, hasher, next_frame)
        except BaseException:  # the session ended mid-file: no temp file is left behind (a kept copy stays)
            if out >= 0:
                os.close(out)
                if not kept:
                    unlink_quietly(tmp, self.dst_fd)
            raise
        error = error or self.write_error
        self.write_error = None
        sent_error = frame.get("error")
        if sent_error or error is not None or out < 0:
            if out >= 0:
                os.close(out)
                if not kept:
                    unlink_quietly(tmp, self.dst_fd)
            if sent_error == "retry":
                return None  # the sender saw the file change and sends it again
            if sent_error:
                return failure(relpath, FILE, sent_error, frame.get("reason") or ERROR)
            if isinstance(error, resume.Shrunk):
                return failure(relpath, FILE, str(error.strerror), MISMATCH)
            return self.error_result(relpath, FILE, error)  # type: ignore[arg-type]
        digest = hasher.hexdigest()
        if digest != frame.get("digest"):
            os.close(out)
            unlink_quietly(tmp, self.dst_fd)  # a kept copy too: it did not hold the source's prefix
            return failure(relpath, FILE, "content differs after transfer (sent and written digests differ)",
                           MISMATCH)
        try:
            self.seal(out, meta, False)  # type: ignore[arg-type]
        except OSError as exc:
            os.close(out)
            unlink_quietly(tmp, self.dst_fd)
            return self.error_result(relpath, FILE, exc)
        try:
            self.publish(out, tmp, name)
        except OSError as exc:
            return self.error_result(relpath, FILE, exc)
        return Result(relpath, COPIED, FILE, meta.st_size, digest, header.get("why", ""))

    write_error = None

    def _take_chunks(self, out: int, hasher, next_frame: Callable) -> dict:
        """Write the file's chunks until its ``end`` frame (returned); a write error is kept in
        ``write_error`` and the rest of the file is read and dropped."""
        while True:
            frame, payload = next_frame()
            if frame.get("t") == "end":
                return frame
            if frame.get("t") != "chunk":
                raise ProtocolError(f"unexpected frame {frame.get('t')!r} inside a file")
            self._write(out, hasher, frame, payload)

    def _write(self, out: int, hasher, frame: dict, payload: bytes) -> None:
        """Write one frame's bytes (decompressed with -z) and hash what was written."""
        if out < 0 or self.write_error is not None:
            return
        if frame.get("z"):
            payload = decompress(frame["z"], payload)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(out, view):]
            hasher.update(payload)
            self.throttle_bytes(len(payload))
        except OSError as exc:
            self.write_error = dst_error(exc)

    def write_link(self, relpath: str, name: str, header: dict):
        meta = _meta(header)
        target = header["target"]
        tmp = self.new_temp()
        try:
            os.symlink(target, tmp, dir_fd=self.dst_fd)
        except OSError as exc:
            return self.error_result(relpath, SYMLINK, dst_error(exc))
        _, uid, gid = self.attrs(meta)  # type: ignore[arg-type]
        try:
            if self.chown and (uid, gid) != self.born_ids:
                os.chown(tmp, uid, gid, dir_fd=self.dst_fd, follow_symlinks=False)
            os.utime(tmp, ns=(meta.st_atime_ns, meta.st_mtime_ns), dir_fd=self.dst_fd, follow_symlinks=False)
            self.keep_backup(name)
            os.rename(tmp, name, src_dir_fd=self.dst_fd, dst_dir_fd=self.dst_fd)
        except OSError as exc:
            unlink_quietly(tmp, self.dst_fd)
            return self.error_result(relpath, SYMLINK, dst_error(exc))
        return Result(relpath, COPIED, SYMLINK, len(os.fsencode(target)), None, header.get("why", ""))

    def throttle_bytes(self, size: int) -> None:
        if self.throttle is not None:
            self.throttle(size)

