"""Streaming digests and the manifest format that ``xxhsum -c`` checks.

A manifest line is ``<32 lowercase hex>  <relative path>`` as ``xxhsum -H2``
prints it. A name holding a newline or carriage return cannot be written
plainly; such a line starts with a backslash and escapes ``\\``, ``\\n`` and
``\\r`` (the coreutils/xxhsum ≥ 0.8.2 rule). Other names, backslashes
included, are written raw, which every xxhsum version reads back.
Names are written as the bytes they have on disk (surrogateescape).
"""

from __future__ import annotations

import io
import os
from typing import Callable, NamedTuple, Optional

import xxhash

ALGORITHMS = ("xxh128", "none")


def new_hasher(algo: str) -> Optional[Callable]:
    """A hasher factory for ``algo``; None when hashing is off."""
    if algo == "xxh128":
        return xxhash.xxh3_128
    if algo == "none":
        return None
    if algo in DIGESTS:
        return digest_factory(algo)
    raise ValueError(f"unknown hash algorithm: {algo}")


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
        # the same bytes manifest_line makes, written through a text layer for speed
        self._text = io.TextIOWrapper(self._file, encoding="utf-8", errors="surrogateescape", newline="\n",
                                      write_through=True)

    def add(self, digest: str, relpath: str) -> None:
        self._file.write(manifest_line(digest, relpath))

    def write_bytes(self, data: bytes) -> None:
        """Append ready-made manifest lines."""
        self._file.write(data)

    def add_many(self, results) -> None:
        """Write a line for every result that carries a digest (copied or verified-unchanged)."""
        plain = []
        for r in results:
            if r.digest is not None and r.status != "failed":
                if "\n" in r.relpath or "\r" in r.relpath:
                    self._file.write(manifest_line(r.digest, r.relpath))  # escaped form, rare
                else:
                    plain.append(f"{r.digest}  {r.relpath}\n")
        if plain:
            self._text.write("".join(plain))

    def close(self) -> None:
        self._text.detach()
        self._file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self._text.detach()
        self._file.close()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------- checksum files
#
# Reading manifests back, for ``pcopy verify --manifest``. Accepted, one per line:
#
#   <hex>  <path>          GNU form (xxhsum, sha256sum); ``<hex> *<path>`` (binary flag) too
#   XXH3_<hex>  <path>     GNU form of XXH3-64 (xxhsum >= 0.8.2)
#   ALGO (<path>) = <hex>  BSD tag form (``xxhsum --tag``, ``sha256sum --tag``)
#
# Either form may start with a backslash: the path is then escaped (\\\\, \\n, \\r).
# The algorithm comes from the tag, or from the digest length in the GNU form.

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
_BY_TAG = {tag: algo for algo, (_, tag) in DIGESTS.items()}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def digest_factory(algo: str) -> Callable:
    """A hasher factory (``factory()`` → object with update/hexdigest) for any of DIGESTS."""
    if algo == "xxh128":
        return xxhash.xxh3_128
    if algo == "sha256":
        import hashlib

        return hashlib.sha256
    if algo == "xxh64":
        return xxhash.xxh64
    if algo == "xxh32":
        return xxhash.xxh32
    if algo == "xxh3":
        return xxhash.xxh3_64
    raise ValueError(f"unknown hash algorithm: {algo}")


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


def read_manifest(stream):
    """Yield a ManifestEntry for every non-blank line of a binary stream."""
    for lineno, line in enumerate(stream, 1):
        line = line.rstrip(b"\n")
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.strip():
            yield parse_manifest_line(line, lineno)
