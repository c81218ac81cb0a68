"""One directory of one tree in the compact form verify compares, made where that tree is listed.

    main process:  SRC listing ─► SideView.make ─► Side ──┐
                                                          ├─► compare: equal Sides settle the whole directory
    DST lister:    DST listing ─► SideView.make ─► Side ──┘   (sent through the march's pipe)

A Side holds, in name order, what must be equal on both sides for each entry
(a file's size, a symlink's target, the kind of anything else) and what the
hash cache knows of its files: one string per directory, made by SQLite
(``HashCache.lookup_packed``). Two Sides that are equal, with every file
found in the cache, mean an unchanged directory, settled by a few tuple
comparisons instead of Python work per file; the DST half of that work runs
in the lister process, beside the main process's SRC half.
"""

from __future__ import annotations

import os
import time
from typing import Iterator, NamedTuple, Optional

from ..content import cache as hashcache
from ..content.cache import HashCache, failure_kind, listing_fingerprint
from ..errors import describe
from ..fs.beneath import DirFd
from ..fs.scan import Listing
from ..model.entries import DIR, FILE, SYMLINK, kind_name

DIRECTORY = "directory"  # the shape of a directory entry


class Side(NamedTuple):
    names: tuple  # every entry's name, sorted
    shape: tuple  # per name: a file's size (int; -1 when not stat'ed), DIRECTORY, ("symlink", target), or a kind name
    files: int  # regular files among the names
    hits: int  # of those, how many the cache knows
    digests: str  # the cache's "i:digest,..." for them (i indexes names; content.cache.unpack)
    problems: tuple = ()  # (name, message): symlinks whose target could not be read
    cache_error: Optional[tuple] = None  # (kind, message): the cache failed while this Side was made
    fingerprint: Optional[bytes] = None  # no stored listing, every file old enough: one may be stored


def word(shape) -> str:
    """The kind of an entry in words, from its shape (for "file in SRC, directory in DST")."""
    if type(shape) is int:
        return "file"
    if type(shape) is tuple:
        return "symlink"
    return shape


def subdirs(side: Side) -> Iterator[str]:
    return (name for name, shape in zip(side.names, side.shape, strict=True) if shape == DIRECTORY)


class SideView:
    """Makes Sides, in the main process and (inherited through fork) in the march's DST lister.

    The main process looks files up through its own HashCache (``cache``);
    any other process opens a read-only connection of its own, which never
    writes or deletes, and reports its failure once, in the next Side.
    """

    def __init__(self, algo: str, cache: Optional[HashCache]) -> None:
        self.algo = algo
        self.cache = cache
        self.path = cache.path if cache is not None else None
        self._owner = os.getpid()
        self._reader: Optional[HashCache] = None
        self._reader_pid = 0
        self._reported = False

    def subdirs(self, side: Side) -> Iterator[str]:
        return subdirs(side)

    def make(self, root: str, listing: Listing) -> Side:
        entries = listing.entries
        names = tuple([e[0] for e in entries])
        shape: list = []
        packed: list = []
        links: list = []
        files = 0
        look = self.path is not None
        for i, e in enumerate(entries):
            kind = e[1]
            if kind == FILE:
                shape.append(e[2])
                files += 1
                if look:
                    packed += (i, e[7], e[6], e[2], e[3], e[11])  # i, dev, ino, size, mtime_ns, ctime_ns
            elif kind == DIR:
                shape.append(DIRECTORY)
            elif kind == SYMLINK:
                links.append(i)
                shape.append(None)
            else:
                shape.append(kind_name(e[5]))
        problems = _read_links(root, listing.reldir, names, shape, links) if links else ()
        hits, digests, error, fingerprint = self._lookup(packed) if packed else (0, "", None, None)
        if fingerprint is not None and max(packed[5::6]) > time.time_ns() - hashcache.RACY_NS:  # racy: see cache
            fingerprint = None
        return Side(names, tuple(shape), files, hits, digests, problems, error, fingerprint)

    def _lookup(self, packed: list):
        """``(hits, digests, cache error, fingerprint)`` (see ``HashCache.lookup_listing``)."""
        if os.getpid() == self._owner:
            if self.cache is None:
                return 0, "", None, None
            return _with_error(self.cache.lookup_listing(self.algo, packed), None)
        if self._reader is None or self._reader_pid != os.getpid():
            self._reader, self._reader_pid = HashCache(self.path, readonly=True), os.getpid()
        reader = self._reader
        found = reader.lookup_listing(self.algo, packed)
        error = None
        if reader.error is not None and not self._reported:
            self._reported = True
            error = (failure_kind(reader.error), str(reader.error))
        return _with_error(found, error)


def _with_error(found: tuple, error: Optional[tuple]) -> tuple:
    hits, digests, fingerprint = found
    return hits, digests, error, fingerprint


class Reading:
    """A directory whose files are all being read (the cache knew none of them): its listings are stored
    once every file's digest is back with the very key it was listed with (a file changed meanwhile
    spoils its side's listing; its own digest is still cached under its new key)."""

    def __init__(self, s: Side, d: Side) -> None:
        self.at = {name: i for i, name in enumerate(s.names)}  # the Sides are equal: one labelling
        self.files = s.files
        self.fingerprints = [s.fingerprint, d.fingerprint]
        self.read: tuple = ({}, {})  # per side: {label: (key, digest)}
        self.units = 0  # units still out

    def add(self, side: int, name: str, key: tuple, digest: str) -> None:
        self.read[side][self.at[name]] = (key, digest)

    def spoil(self) -> None:
        self.fingerprints = [None, None]

    def store(self, cache: HashCache, algo: str) -> None:
        for side, fingerprint in enumerate(self.fingerprints):
            got = self.read[side]
            if fingerprint is None or len(got) != self.files:
                continue
            order = sorted(got)
            if listing_fingerprint(algo, [v for i in order for v in (i, *got[i][0])]) == fingerprint:
                cache.put_listing(algo, fingerprint, ",".join(f"{i}:{got[i][1]}" for i in order))


def _read_links(root: str, reldir: str, names: tuple, shape: list, links: list) -> tuple:
    """Fill in the symlinks' targets (read beneath the root, with the directory opened once)."""
    problems = []
    try:
        with DirFd(root, reldir) as fd:
            for i in links:
                try:
                    shape[i] = ("symlink", os.readlink(names[i], dir_fd=fd))
                except OSError as exc:
                    shape[i] = ("symlink", None)
                    problems.append((names[i], f"cannot read symlink: {describe(exc)}"))
    except OSError as exc:
        for i in links:
            shape[i] = ("symlink", None)
            problems.append((names[i], f"cannot open its directory: {describe(exc)}"))
    return tuple(problems)
