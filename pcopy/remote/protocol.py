"""The wire format between pcopy and ``pcopy serve`` on the other end of an ssh session.

Every message is one frame: ``>II`` (header length, payload length), a JSON header (a dict,
``ensure_ascii`` so names that are not UTF-8 travel as ``\\udcXX`` escapes and come back as
the same bytes), then the raw payload (file data). JSON, not pickle: the remote program
must never run anything the client sends, only the operations ``serve`` knows.

    client                                   pcopy serve (remote)
    {"op": "hello", "proto": N}   ──────►    checks N before it reads or writes anything
                                  ◄──────    {"ok": true, "proto": N, "version": ...}
    {"op": ..., ...} [frames]     ──────►    one operation at a time
                                  ◄──────    its frames, then {"ok": true|false, ...}

A ``walk`` streams its ``{"t": "listing"}`` frames and a final ``{"t": "walked"}`` from a thread of
its own, between the answers of the operations that follow it on the same session.

File data (``send``/``recv``): per file a ``{"t": "file"|"link", ...}`` header, ``chunk``
frames holding the bytes, and ``end`` with the sender's digest of the bytes it read; a batch
ends with ``{"t": "done"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Optional

from ..errors import PcopyError
from ..model.entries import Entry, make_entry
from ..model.results import Result

PROTO = 2  # bump on any incompatible change: both ends refuse another number. 2 adds: metadata ops and
# fields (fit, srcmeta, fix, links, dirs; xattrs/ACLs in file headers, hole frames), verify ops, ropts' ops
# (dsttasks, kept, a 4th item in send file lists), a walk streamed from a thread ending in "walked",
# posted mkdirs (recv's "mkdir" flag) and frames in BUFFER blocks
HEAD = struct.Struct(">II")
MAX_HEADER = 64 << 20
MAX_PAYLOAD = 64 << 20
CHUNK = 1 << 20
BUFFER = 256 << 10  # both ends write and read frames in blocks of about this size, not one syscall (and
# one ssh packet) per frame: a small file's frame is a few KiB


class ProtocolError(PcopyError):
    """The other end broke the protocol (exit 1, one line)."""


def encode(header: dict, payload: bytes = b"") -> bytes:
    data = json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return HEAD.pack(len(data), len(payload)) + data + payload


def _read_exact(stream, size: int) -> bytes:
    if size == 0:
        return b""
    data = stream.read(size)
    if data is None or len(data) < size:
        chunks = [data or b""]
        got = len(chunks[0])
        while got < size:
            more = stream.read(size - got)
            if not more:
                raise EOFError("connection closed")
            chunks.append(more)
            got += len(more)
        data = b"".join(chunks)
    return data


def read_frame(stream) -> tuple:
    """(header dict, payload bytes); EOFError when the stream ends, ProtocolError for garbage."""
    head = stream.read(HEAD.size)
    if not head:
        raise EOFError("connection closed")
    if len(head) < HEAD.size:
        head += _read_exact(stream, HEAD.size - len(head))
    size, payload_size = HEAD.unpack(head)
    if size > MAX_HEADER or payload_size > MAX_PAYLOAD:
        raise ProtocolError("frame too large: the other end does not speak pcopy's protocol")
    try:
        header = json.loads(_read_exact(stream, size))
    except ValueError:
        raise ProtocolError("bad frame: the other end does not speak pcopy's protocol") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad frame: not an object")
    return header, _read_exact(stream, payload_size)


def check_name(name) -> str:
    """A directory entry's name as the other end sent it: one component, never ``..`` (a hostile end
    must not steer a write outside the root, as rsync's 2024 advisories were about)."""
    if not isinstance(name, str) or not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ProtocolError(f"bad name from the other end: {name!r}")
    return name


def check_relpath(relpath) -> str:
    """A relative path below the root ("" is the root): components checked like names."""
    if not isinstance(relpath, str):
        raise ProtocolError(f"bad path from the other end: {relpath!r}")
    if relpath:
        for part in relpath.split("/"):
            check_name(part)
    return relpath


def entry_out(entry: Entry) -> list:
    return list(entry)


def entry_in(plain) -> Entry:
    entry = make_entry(tuple(plain))
    check_name(entry.name)
    return entry


def result_out(result: Result) -> list:
    return list(result)


def result_in(plain) -> Result:
    return Result(*plain)


def error_out(exc: Optional[OSError]) -> Optional[list]:
    return None if exc is None else [exc.errno, exc.strerror or str(exc)]


def error_in(plain) -> Optional[OSError]:
    return None if plain is None else OSError(plain[0], plain[1])


def attrs_out(attrs: dict) -> dict:
    """xattrs and ACLs (name -> bytes) as JSON can carry them."""
    return {name: base64.b64encode(value).decode("ascii") for name, value in attrs.items()}


def attrs_in(plain) -> Optional[dict]:
    """The attributes as sent (None: the sender read none)."""
    if plain is None:
        return None
    if not isinstance(plain, dict) or not all(isinstance(n, str) and isinstance(v, str) for n, v in plain.items()):
        raise ProtocolError("bad attributes from the other end")
    try:
        return {name: base64.b64decode(value, validate=True) for name, value in plain.items()}
    except binascii.Error:
        raise ProtocolError("bad attributes from the other end") from None


# --------------------------------------------------------------------------- -z: chunk compression

def codecs() -> list:
    """The chunk codecs this end can use, best first (zstd with the optional zstandard package)."""
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return ["zlib"]
    return ["zstd", "zlib"]


def pick_codec(theirs) -> str:
    """The best codec both ends have (zlib is always there)."""
    return next((c for c in codecs() if c in (theirs or ["zlib"])), "zlib")


def compress(codec: str, data: bytes) -> bytes:
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    import zlib

    return zlib.compress(data, 1)


def decompress(codec: str, data: bytes) -> bytes:
    """Bounded: a chunk never grows past MAX_PAYLOAD (a hostile end cannot send a bomb)."""
    if codec == "zstd":
        import zstandard

        try:
            return zstandard.ZstdDecompressor().decompress(data, max_output_size=MAX_PAYLOAD)
        except zstandard.ZstdError as exc:
            raise ProtocolError(f"bad zstd chunk: {exc}") from None
    if codec != "zlib":
        raise ProtocolError(f"unknown codec {codec!r}")
    import zlib

    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_PAYLOAD)
    except zlib.error as exc:
        raise ProtocolError(f"bad zlib chunk: {exc}") from None
    if inflater.unconsumed_tail:
        raise ProtocolError("compressed chunk too large")
    return out
