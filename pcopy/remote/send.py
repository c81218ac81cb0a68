"""The sending side of a batch: read each file once through ``content.digest.read_through`` (the one
read loop), hash what was read, and emit it as frames (see ``protocol``). The same code runs in the
client (push) and in ``pcopy serve`` (pull).

As the local worker does: the file's xattrs and ACLs are read after its data and before the change
check (a change to them moves ctime) and travel in its header; a file with holes is read by
``content.copydata.copy_holes`` and its holes travel as ``hole`` frames (no zeros on the wire); a
file changed in the last 2 s is read a second time after a pause before it counts as sent (small
ones are held, up to ``HOLD_FILES``/``HOLD_BYTES``, so that a batch pauses once, as
``transfer.young`` does; a big one is confirmed before its ``end`` frame).
"""

from __future__ import annotations

import os
import stat
import time
from typing import Any, Callable, NamedTuple, Optional

from ..content import digest as digests
from ..content import metadata
from ..content.copydata import copy_holes, looks_sparse
from ..errors import describe
from ..fs.beneath import DirFd
from ..model.entries import FILE, SYMLINK, relpath_join
from ..model.results import ERROR, NOT_REGULAR, NOTE, SKIPPED, SOURCE_CHANGED, VANISHED, Result, failure
from .protocol import CHUNK, attrs_out, compress

HOLD_FILES = 64  # young small files held for one pause (transfer.young's MAX_FILES, MAX_BYTES)
HOLD_BYTES = 64 << 20


def _meta(st: os.stat_result) -> dict:
    return {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "atime": st.st_atime_ns,
            "mtime": st.st_mtime_ns, "size": st.st_size}


def policy_for(xattrs: bool, acls: bool) -> Optional[metadata.Policy]:
    """What the sender reads besides the data (-X, -A); None: nothing."""
    policy = metadata.Policy.for_run(xattrs, acls)
    return policy if policy.active else None


def read_attrs(target, policy: Optional[metadata.Policy], notes: list) -> Optional[dict]:
    """The source's attributes for the header (None without -X/-A); as ``transfer.attrs.AttrCopier.read``:
    {} and a note for the run's warnings when they cannot be read."""
    if policy is None:
        return None
    try:
        return attrs_out(metadata.read(target, policy))
    except OSError as exc:
        notes.append(attrs_note(exc))
        return {}


def attrs_note(exc: OSError) -> str:
    return f"cannot read extended attributes: {describe(exc)}"


class Sender(NamedTuple):
    """What every file of one batch is sent with."""

    emit: Callable
    flags: int
    stop: Any  # a threading.Event or None
    codec: str
    policy: Optional[metadata.Policy]
    notes: list  # one-line warnings for the run (NOTE results)


class Held(NamedTuple):
    """A young small file read once, waiting for its second read (its fd stays open)."""

    name: str
    why: str
    fd: int
    before: os.stat_result
    data: bytes
    digest: str
    seconds: float
    attrs: Optional[dict]


def send_batch(root: str, reldir: str, files: list, emit: Callable, follow: bool = False, stop=None,
               codec: str = "", attrs: tuple = (False, False)) -> list:
    """Emit ``files`` ([name, why, is_link] in ``root/reldir``) and a final ``done``; returns the Results
    decided here (a file that vanished or kept changing), as plain lists. ``attrs``: (-X, -A)."""
    out: list = []
    flags = digests.READ_FLAGS if not follow else (digests.READ_FLAGS & ~os.O_NOFOLLOW)
    sender = Sender(emit, flags, stop, codec, policy_for(*attrs), [])
    held: list = []
    try:
        handle = DirFd(root, reldir, follow)
    except OSError as exc:
        for name, _, is_link, *_ in files:
            out.append(list(failure(relpath_join(reldir, name), SYMLINK if is_link else FILE,
                                    f"source directory: {describe(exc)}")))
        emit({"t": "done"})
        return out
    try:
        with handle as dir_fd:
            for name, why, is_link, *kept in files:  # --partial: the bytes the DST end kept of it
                relpath = relpath_join(reldir, name)
                if stop is not None and stop.is_set():
                    break
                try:
                    if is_link:
                        _send_link(dir_fd, name, why, sender)
                        continue
                    result = _send_file(dir_fd, name, why, sender, held, kept[0] if kept else 0)
                    if result is not None:
                        out.append(list(result._replace(relpath=relpath)))
                except FileNotFoundError:
                    out.append(list(Result(relpath, SKIPPED, SYMLINK if is_link else FILE, 0, None, "", VANISHED,
                                           "vanished before it could be copied")))
                except OSError as exc:
                    out.append(list(failure(relpath, SYMLINK if is_link else FILE, f"source: {describe(exc)}")))
                if len(held) >= HOLD_FILES or sum(len(h.data) for h in held) >= HOLD_BYTES:
                    _send_held(dir_fd, reldir, held, sender, out)
            _send_held(dir_fd, reldir, held, sender, out)
    finally:
        for h in held:
            os.close(h.fd)
    emit({"t": "done"})
    return out + [list(Result("", NOTE, FILE, 0, None, "", "", note)) for note in dict.fromkeys(sender.notes)]


def _send_link(dir_fd: int, name: str, why: str, sender: Sender) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        raise OSError(0, "no longer a symbolic link")
    target = os.readlink(name, dir_fd=dir_fd)
    header = dict(_meta(st), t="link", name=name, why=why, target=target)
    attrs = read_attrs(metadata.At(dir_fd, name), sender.policy, sender.notes)
    if attrs:
        header["x"] = attrs
    sender.emit(header)


def _send_held(dir_fd: int, reldir: str, held: list, sender: Sender, out: list) -> None:
    """One pause for the young files held, then a second read of each: the ones that read the same are
    sent, the others read (and sent) again, each confirmed on its own."""
    if not held:
        return
    items = list(held)
    held.clear()
    stop = sender.stop
    if stop is not None and stop.is_set():  # stopping: nothing more is sent
        for h in items:
            os.close(h.fd)
        return
    try:
        digests.settle(sum(h.seconds for h in items))
    except BaseException:
        for h in items:
            os.close(h.fd)
        raise
    for i, h in enumerate(items):
        try:
            same = digests.same_version(h.fd, h.before, h.digest, digests.XXH128, sender.stop)
        except OSError:
            same = False
        except BaseException:
            for rest in items[i + 1:]:
                os.close(rest.fd)
            raise
        finally:
            os.close(h.fd)
        if same:
            _emit_whole(sender, h.name, h.why, h.before, h.data, h.digest, h.attrs)
            continue
        relpath = relpath_join(reldir, h.name)
        try:
            result = _send_file(dir_fd, h.name, h.why, sender, None)
        except FileNotFoundError:
            result = Result(h.name, SKIPPED, FILE, 0, None, "", VANISHED, "vanished before it could be copied")
        except OSError as exc:
            result = failure(h.name, FILE, f"source: {describe(exc)}")
        if result is not None:
            out.append(list(result._replace(relpath=relpath)))


def _emit_whole(sender: Sender, name: str, why: str, before: os.stat_result, data: bytes, digest: str,
                attrs: Optional[dict]) -> None:
    header = dict(_meta(before), t="file", name=name, why=why, whole=True, digest=digest)
    if attrs is not None:
        header["x"] = attrs
    if sender.codec:
        header["z"] = sender.codec
        data = compress(sender.codec, data)
    sender.emit(header, data)


def _send_file(dir_fd: int, name: str, why: str, sender: Sender, held: Optional[list], kept: int = 0):
    """Send one file (again after a change seen during the read: then whole); a Result only when it is
    not sent. ``held``: where a young small file waits for its second read (None: confirm it now).
    ``kept``: --partial, the bytes the receiver holds of it (``remote.resume``)."""
    emit, stop = sender.emit, sender.stop
    fd = os.open(name, sender.flags, dir_fd=dir_fd)
    try:
        for attempt in range(digests.RETRIES + 1):
            before = os.fstat(fd)
            if attempt == digests.RETRIES:  # last try, as the local worker's: once the file has been quiet a while
                digests.wait_until_quiet(before)
                before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return Result(name, SKIPPED, FILE, 0, None, "", NOT_REGULAR, "no longer a regular file")
            young = digests.is_young(before)
            holes = looks_sparse(before.st_size, before.st_blocks)
            started = time.monotonic()
            if before.st_size <= CHUNK and not holes:  # a small file travels whole: one frame, digest in the header
                try:
                    pieces: list = []
                    digest = digests.read_through(fd, before.st_size, digests.XXH128, stop, pieces.append)
                    attrs = read_attrs(fd, sender.policy, sender.notes)
                    if young and held is None:
                        digests.confirm(fd, before, digest or "", digests.XXH128, stop, time.monotonic() - started)
                    else:
                        digests.check_unchanged(fd, before)
                except digests.SourceChanged:
                    continue  # nothing was sent yet
                data = bytes(pieces[0]) if pieces else b""
                if young and held is not None:
                    held.append(Held(name, why, fd, before, data, digest or "", time.monotonic() - started, attrs))
                    fd = -1  # closed once the batch's pause is over
                    return None
                _emit_whole(sender, name, why, before, data, digest or "", attrs)
                return None
            offset = _offset_for(kept, before.st_size) if not attempt and not holes else 0
            emit(dict(_meta(before), t="file", name=name, why=why, holes=holes,
                      **({"offset": offset} if offset else {})))
            try:
                if holes:
                    digest = copy_holes(fd, before.st_size, digests.XXH128, stop, _Frames(sender))
                else:
                    sink = lambda piece: _chunks(piece, emit, sender.codec)  # noqa: E731
                    digest = digests.read_through(fd, before.st_size, digests.XXH128, stop,
                                                  _skipping(offset, sink) if offset else sink)
                attrs = read_attrs(fd, sender.policy, sender.notes)
                if young:
                    digests.confirm(fd, before, digest or "", digests.XXH128, stop, time.monotonic() - started)
                else:
                    digests.check_unchanged(fd, before)
            except digests.SourceChanged:
                emit({"t": "end", "error": "retry"})
                continue
            except OSError as exc:
                emit({"t": "end", "error": f"source: {describe(exc)}", "reason": ERROR})
                return None
            end: dict = {"t": "end", "digest": digest, "error": None}
            if attrs is not None:
                end["x"] = attrs
            emit(end)
            return None
    finally:
        if fd >= 0:
            os.close(fd)
    return failure(name, FILE, f"source changed while being copied (tried {digests.RETRIES + 1} times)",
                   SOURCE_CHANGED)


class _Frames:
    """``copy_holes``'s sink on the wire: data as chunks, a hole as one ``hole`` frame."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def skip(self, count: int) -> None:
        self.sender.emit({"t": "hole", "n": count})

    def write(self, piece) -> None:
        _chunks(piece, self.sender.emit, self.sender.codec)


def _chunks(piece, emit: Callable, codec: str = "") -> None:
    """The bytes read, in frames of at most CHUNK; -z: each frame compressed (``codec``)."""
    for start in range(0, len(piece), CHUNK):
        data = bytes(piece[start:start + CHUNK])
        if codec:
            emit({"t": "chunk", "z": codec}, compress(codec, data))
        else:
            emit({"t": "chunk"}, data)



def src_meta(root: str, relpaths: list, follow: bool, attrs: tuple) -> list:
    """The stat and attributes of each entry (for an in-place fix or a directory's metadata): per
    relpath [meta dict, attrs or None, a note or None (attributes unreadable)] or [None, None, error
    text or None (vanished)]."""
    policy = policy_for(*attrs)
    out: list = []
    for relpath in relpaths:
        parent, _, name = relpath.rpartition("/")
        try:
            with DirFd(root, relpath if not name else parent, follow) as fd:
                target: metadata.Target = metadata.At(fd, name, follow) if name else fd  # "": the root
                st = os.stat(name, dir_fd=fd, follow_symlinks=follow) if name else os.fstat(fd)
                notes: list = []
                out.append([_meta(st), read_attrs(target, policy, notes), notes[0] if notes else None])
        except FileNotFoundError:
            out.append([None, None, None])
        except OSError as exc:
            out.append([None, None, describe(exc)])
    return out


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
