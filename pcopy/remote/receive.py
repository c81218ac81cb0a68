"""The receiving side of a batch: the worker's own write path (``transfer.worker.BatchCopier``):
a temp name created ``O_EXCL`` beside the final name in a directory opened ``O_NOFOLLOW``
component by component beneath the DST root (``fs.beneath.DirCache``), owner, mode and times set
on the temp file, renamed into place only when complete. The receiver hashes what it wrote and
compares it with the sender's digest of what it read: a mismatch discards the temp file and comes
back as a ``mismatch`` failure the client sends again. Runs in ``pcopy serve`` (push) and in the
client (pull).

Metadata as the local worker gives it: --chmod/--chown (``BatchCopier.attrs``), the sender's xattrs
and ACLs applied by ``transfer.attrs`` in ``seal``'s order, holes kept (``hole`` frames, and with
--sparse zero blocks too, ``content.copydata.SparseWriter``). The DST end's other metadata work is
here too: an unchanged file's attributes fixed in place (``fix_batch``, through
``InPlaceTasks.fix_attrs``) and the other names of a hard-link group linked (``link_names``).
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple, Optional

from ..content import digest as digests
from ..content.copydata import SPARSE_BLOCK, SparseWriter, dst_error, hash_zeros
from ..content.metadata import At
from ..errors import describe, is_disk_full
from ..fs import beneath
from ..fs.beneath import make_dir_beneath, unlink_quietly
from ..fs.temps import TMP_FLAGS, temp_name
from ..model.entries import ATTRS, FILE, SYMLINK, Task, relpath_join
from ..model.modes import ModeRule
from ..model.results import (
    COPIED,
    DISK_FULL,
    ERROR,
    LINK_IN_PLACE,
    LINKED,
    SAME_CONTENT,
    SKIPPED,
    UNCHANGED,
    Result,
    failure,
)
from ..options import Options
from ..runtime import worker
from ..transfer import dirmeta
from ..transfer.attrs import AttrCopier
from ..transfer.worker import BatchCopier
from . import resume
from .protocol import ProtocolError, attrs_in, check_name, check_relpath, decompress

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
    try:
        chmod = tuple(ModeRule(*rule) for rule in spec.get("chmod") or ())
        chown = tuple(int(i) for i in spec.get("chown") or (-1, -1))
    except (TypeError, ValueError):
        raise ProtocolError("bad --chmod/--chown from the other end") from None
    if len(chown) != 2:
        raise ProtocolError("bad --chown from the other end")
    backup = spec.get("backup") or {}  # --backup: where this end keeps what it replaces (ops.backups_of)
    where = backup.get("dir")
    return Options(src="", dst=root, token=token, owner=owner, fsync=bool(spec.get("fsync")),
                   xattrs=bool(spec.get("xattrs")), acls=bool(spec.get("acls")), chmod=chmod, chown=chown,
                   sparse=bool(spec.get("sparse")), dry_run=bool(spec.get("dry")),
                   dst_modes=bool(spec.get("modes", True)), dst_unstored=frozenset(spec.get("unstored") or ()),
                   bwlimit=int(spec.get("bwlimit") or 0), jobs=int(spec.get("streams") or 1),
                   partial=bool(spec.get("partial")), backup=bool(backup),
                   manifest="-" if spec.get("manifest") else None,  # files fixed or linked there are hashed too
                   backup_dir=os.path.expanduser(where) if where else None, suffix=str(backup.get("suffix") or ""))


def _meta(header: dict) -> Meta:
    return Meta(int(header["mode"]), int(header["uid"]), int(header["gid"]), int(header["atime"]),
                int(header["mtime"]), int(header["size"]))


def receive_batch(options: Options, reldir: str, next_frame: Callable, make: bool = False) -> list:
    """Write the files that arrive (until ``done``); one Result (as a list) per file that arrived.
    ``make``: the client's mkdir of ``reldir`` may not have run yet (it does not wait for it), so a
    missing directory is made here, beneath the root, as that mkdir would."""
    check_relpath(reldir)
    dsts = worker.dir_cache(options.token, options.dst)
    try:
        try:
            dst_fd = dsts.acquire(reldir)
        except FileNotFoundError:
            if not make:
                raise
            parts = reldir.split("/")
            for depth in range(1, len(parts) + 1):
                make_dir_beneath(options.dst, "/".join(parts[:depth]), 0o700)
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
        return results + [list(r) for r in copier.notes()]
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
        offset = int(header.get("offset") or 0)
        if kept:
            tmp, out, error, hasher = resume.open_resumed(self.dst_fd, name, meta.st_size, offset)
        else:
            tmp, out, error = self.new_temp(), -1, None
            try:
                out = os.open(tmp, TMP_FLAGS, 0o600, dir_fd=self.dst_fd)
            except OSError as exc:
                error = dst_error(exc)
            hasher = digests.XXH128.new()
        holes = not offset and (bool(header.get("holes")) or (self.options.sparse and meta.st_size >= SPARSE_BLOCK))
        self.sink = SparseWriter(out, None) if holes and out >= 0 else None
        try:
            if header.get("whole"):  # a small file in one frame: its bytes came with the header
                frame = {"t": "end", "digest": header.get("digest"), "error": None, "x": header.get("x")}
                self._write(out, hasher, header, payload)
            else:
                frame = self._take_chunks(out, hasher, next_frame)
            if self.sink is not None and out >= 0 and self.write_error is None and not frame.get("error"):
                try:
                    os.ftruncate(out, meta.st_size)  # a trailing hole still counts in the size
                except OSError as exc:
                    self.write_error = dst_error(exc)
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
            self.seal(out, meta, False, attrs_in(frame.get("x")))  # type: ignore[arg-type]
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
            if frame.get("t") == "hole":
                self._hole(out, hasher, frame.get("n"))
                continue
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
            if self.sink is not None:
                self.sink(payload)  # --sparse: blocks of zeros become holes
            else:
                view = memoryview(payload)
                while view:
                    view = view[os.write(out, view):]
            hasher.update(payload)
            self.throttle_bytes(len(payload))
        except OSError as exc:
            self.write_error = dst_error(exc)

    sink: Optional[SparseWriter] = None

    def _hole(self, out: int, hasher, count) -> None:
        """A hole of the source: skipped in the temp file (it reads as zeros, and hashes as them)."""
        if not isinstance(count, int) or count <= 0:
            raise ProtocolError("bad hole frame from the other end")
        if out < 0 or self.write_error is not None:
            return
        if self.sink is None:
            raise ProtocolError("hole frame in a file sent without holes")
        try:
            self.sink.skip(count)
        except OSError as exc:
            self.write_error = exc
        hash_zeros(hasher, count)

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
            attrs = attrs_in(header.get("x"))
            if attrs is not None:
                self.meta.apply(At(self.dst_fd, tmp), attrs, fresh=True)
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



def fix_batch(options: Options, reldir: str, items: list) -> list:
    """Unchanged files whose mode, owner, times or attributes differ, fixed in place by the local
    worker's own ``fix_attrs``: each item is [name, why, source meta, source attrs or None, -c matched]."""
    check_relpath(reldir)
    dsts = worker.dir_cache(options.token, options.dst)
    try:
        dst_fd = dsts.acquire(reldir)
    except OSError as exc:
        return [list(failure(relpath_join(reldir, item[0]), FILE, f"destination directory: {describe(exc)}"))
                for item in items]
    try:
        copier = Receiver(options, -1, dst_fd)
        copier.reldir = reldir
        results: list = []
        for name, why, meta, attrs, same_content in items:
            relpath = relpath_join(reldir, check_name(name))
            try:
                st = _meta(meta)
                task = Task(ATTRS, name, st.st_size, why)
                same = SAME_CONTENT if same_content else UNCHANGED
                result = copier.fix_attrs(relpath, task, st, None, same, attrs_in(attrs))  # type: ignore[arg-type]
            except OSError as exc:
                result = copier.error_result(relpath, FILE, exc)
            results.append(list(result))
        return results + [list(r) for r in copier.notes()]
    finally:
        dsts.release(dst_fd)


def link_names(root: str, token: str, items: list) -> list:
    """-H: give each [relpath, first name's relpath] the inode of its first name (already written in
    this run), unless it has it; one Result (as a list) each."""
    out: list = []
    for relpath, source, why in items:
        check_relpath(relpath)
        check_relpath(source)
        parent, _, first = source.rpartition("/")
        reldir, _, name = relpath.rpartition("/")
        try:
            with beneath.DirFd(root, parent) as from_fd, beneath.DirFd(root, reldir) as to_fd:
                linked = beneath.link_unless_same(from_fd, first, to_fd, name, temp_name(token))
        except OSError as exc:
            out.append(list(failure(relpath, FILE, f"hard link to {source}: {describe(exc)}")))
            continue
        out.append(list(Result(relpath, LINKED, FILE, 0, None, why, "", source) if linked
                        else Result(relpath, SKIPPED, FILE, 0, None, "", LINK_IN_PLACE)))
    return out


def set_dirs(options: Options, items: list) -> dict:
    """Directory modes, owners, attributes and times, deepest first, by the local copy's own
    ``transfer.dirmeta.apply_dir``: each item is [reldir, made by this run, source meta, source attrs]."""
    dsts = worker.dir_cache(options.token, options.dst)
    meta = None
    if options.xattrs or options.acls:
        with dsts.dir("") as root_fd:
            meta = AttrCopier(options.xattrs, options.acls, options.token, root_fd, options.dst_unstored)
    outcomes = []
    for reldir, new, plain, attrs in items:
        check_relpath(reldir)
        source = (_meta(plain), attrs_in(attrs) or {})
        outcomes.append(list(dirmeta.apply_dir(options, None, dsts, meta, reldir, bool(new), source)))
    return {"outcomes": outcomes, "notes": list(dict.fromkeys(meta.notes)) if meta is not None else []}
