"""The manifest format that ``xxhsum -c`` checks: writing it, and reading it back with bounds.

A line is ``<32 lowercase hex>  <relative path>`` as ``xxhsum -H2`` prints it.
A name holding a newline or carriage return cannot be written plainly; such a
line starts with a backslash and escapes ``\\``, ``\\n`` and ``\\r`` (the
coreutils/xxhsum ≥ 0.8.2 rule). Other names, backslashes included, are
written raw, which every xxhsum version reads back. Names are written as the
bytes they have on disk (surrogateescape).

Reading accepts, one per line:

    <hex>  <path>          GNU form (xxhsum, sha256sum); ``<hex> *<path>`` (binary flag) too
    XXH3_<hex>  <path>     GNU form of XXH3-64 (xxhsum >= 0.8.2)
    ALGO (<path>) = <hex>  BSD tag form (``xxhsum --tag``, ``sha256sum --tag``)

Either form may start with a backslash: the path is then escaped. Lines
longer than ``MAX_LINE`` are skipped with an error (memory stays bounded even
for ``/dev/zero``), and the reader calls ``check`` between reads so a signal
is honoured while it reads.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, NamedTuple, Optional

from ..fs.outputs import OutputFile

MAX_LINE = 1 << 20  # bytes; a longer line is an error, read past without keeping it
_SHOWN = 80  # characters of a bad line shown in its error

# algorithm -> (hex digits, BSD tag)
DIGESTS = {
    "xxh128": (32, "XXH128"),
    "sha256": (64, "SHA256"),
    "xxh64": (16, "XXH64"),
    "xxh32": (8, "XXH32"),
    "xxh3": (16, "XXH3"),
}
HASH_ALGORITHMS = ("xxh128", "sha256")  # what ``pcopy hash --algo`` writes
_BY_LENGTH = {32: "xxh128", 64: "sha256", 16: "xxh64", 8: "xxh32"}
_BY_TAG = {tag: name for name, (_, tag) in DIGESTS.items()}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def manifest_line(digest: str, relpath: str) -> bytes:
    """One manifest line (with its newline) as bytes."""
    name = os.fsencode(relpath)
    if b"\n" in name or b"\r" in name:
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return b"\\" + digest.encode() + b"  " + name + b"\n"
    return digest.encode() + b"  " + name + b"\n"


class ManifestWriter:
    """Streams manifest lines to an ``OutputFile`` (or any ``write(bytes)``) as results arrive.

    Memory stays flat however many files the tree holds; with an OutputFile an
    interrupted run leaves no half manifest under the final name.
    """

    def __init__(self, output, prefix: str = "") -> None:
        self.output = output
        self.prefix = prefix  # put before every path (several SRCs, each in DST/NAME, share one manifest)

    @classmethod
    def to_path(cls, path: str, token: str = "out") -> "ManifestWriter":
        return cls(OutputFile(path, "manifest", token))

    def below(self, name: str) -> "ManifestWriter":
        """A view writing the same manifest with paths below ``name``; closing it is the owner's job."""
        return ManifestWriter(_Borrowed(self.output), self.prefix + name + "/")

    def add_many(self, results) -> None:
        """Write a line for every result that carries a digest (copied or verified-unchanged)."""
        plain = []
        escaped = []
        prefix = self.prefix
        for r in results:
            if r.digest is not None and r.status != "failed":
                relpath = prefix + r.relpath if prefix else r.relpath
                if "\n" in relpath or "\r" in relpath:
                    escaped.append(manifest_line(r.digest, relpath))  # rare
                else:
                    plain.append(f"{r.digest}  {relpath}\n")
        if plain:
            self.output.write("".join(plain).encode("utf-8", "surrogateescape"))
        for line in escaped:
            self.output.write(line)

    def write_bytes(self, data: bytes) -> None:
        self.output.write(data)

    def close(self) -> None:
        if isinstance(self.output, OutputFile):
            self.output.commit()

    def discard(self) -> None:
        if isinstance(self.output, OutputFile):
            self.output.discard()


class _Borrowed:
    """Another writer's output: writes go through, committing stays with the owner."""

    def __init__(self, output) -> None:
        self.output = output
        self.real_path = getattr(output, "real_path", "")

    def write(self, data) -> None:
        self.output.write(data)


# --------------------------------------------------------------------------- reading


class ManifestEntry(NamedTuple):
    lineno: int
    algo: Optional[str]  # None when the line could not be parsed
    digest: str  # lowercase hex
    relpath: str  # normalised: no leading ./, no empty or . components
    error: Optional[str] = None


def unescape_name(name: bytes) -> bytes:
    """Undo the coreutils escaping (\\\\, \\n, \\r); ValueError on anything else."""
    out = bytearray()
    i = 0
    while i < len(name):
        c = name[i]
        if c == 0x5C:  # backslash
            nxt = name[i + 1:i + 2]
            if nxt == b"\\":
                out += b"\\"
            elif nxt == b"n":
                out += b"\n"
            elif nxt == b"r":
                out += b"\r"
            else:
                raise ValueError("bad escape in file name")
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


def normalise_relpath(name: bytes) -> str:
    """A manifest path as a relative path below the root; ValueError if it would leave it."""
    if b"\0" in name:
        raise ValueError("file name contains a NUL byte")
    if name.startswith(b"/"):
        raise ValueError("absolute path")
    parts = [p for p in name.split(b"/") if p and p != b"."]
    if not parts:
        raise ValueError("empty path")
    if b".." in parts:
        raise ValueError("path leaves the root (..)")
    return os.fsdecode(b"/".join(parts))


def parse_manifest_line(line: bytes, lineno: int = 0) -> ManifestEntry:
    """Parse one manifest line (without its newline). Never raises: errors are in the entry."""
    try:
        found, digest, name = _split_line(line)
        return ManifestEntry(lineno, found, digest, normalise_relpath(name))
    except ValueError as exc:
        return ManifestEntry(lineno, None, "", "", str(exc))


def _split_line(line: bytes):
    escaped = line.startswith(b"\\")
    if escaped:
        line = line[1:]
    tag, sep, rest = line.partition(b" (")
    if sep and tag.decode("ascii", "replace") in _BY_TAG:  # BSD tag form: ALGO (path) = hex
        name, sep, digest = rest.rpartition(b") = ")
        if not sep:
            raise ValueError("improperly formatted line")
        found = _BY_TAG[tag.decode("ascii")]
    else:  # GNU form: hex, two spaces (or space and *), path
        digest, sep, name = line.partition(b" ")
        if not sep or name[:1] not in (b" ", b"*") or len(name) < 2:
            raise ValueError("improperly formatted line")
        name = name[1:]
        if digest.startswith(b"XXH3_"):
            found, digest = "xxh3", digest[5:]
        elif len(digest) in _BY_LENGTH:
            found = _BY_LENGTH[len(digest)]
        else:
            raise ValueError("improperly formatted line (unknown digest length)")
    if len(digest) != DIGESTS[found][0] or not _HEX.issuperset(digest):
        raise ValueError("improperly formatted line (bad digest)")
    if escaped:
        name = unescape_name(name)
    return found, digest.decode("ascii").lower(), name


def read_manifest(stream, check: Callable[[], None] = lambda: None) -> Iterator[ManifestEntry]:
    """Yield a ManifestEntry for every non-blank line of a binary stream, in bounded memory.

    ``check`` runs before every read (it raises to stop).
    """
    lineno = 0
    while True:
        check()
        line = stream.readline(MAX_LINE + 1)
        if not line:
            return
        lineno += 1
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while True:  # skip the rest of the line without keeping it
                check()
                more = stream.readline(MAX_LINE)
                if not more or more.endswith(b"\n"):
                    break
            yield ManifestEntry(lineno, None, "", "", f"line longer than {MAX_LINE} bytes (starts {_shown(line)})")
            continue
        line = line.rstrip(b"\n")
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.strip():
            entry = parse_manifest_line(line, lineno)
            if entry.error is not None and len(line) > _SHOWN:
                entry = entry._replace(error=f"{entry.error} (line starts {_shown(line)})")
            yield entry


def _shown(line: bytes) -> str:
    text = line[:_SHOWN].decode("utf-8", "backslashreplace")
    return repr(text + "…")
