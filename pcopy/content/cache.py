"""A persistent digest cache: (device, inode, size, mtime_ns, ctime_ns) → digest.

One SQLite file (standard library ``sqlite3``) serves every tree on the
machine, because (device, inode) already names a file machine-wide. It lives at

    $PCOPY_CACHE                                  (a file path), else
    ${XDG_CACHE_HOME:-~/.cache}/pcopy/hashes.sqlite3

or wherever ``--cache FILE`` / ``cache=PATH`` says. One table per algorithm,
keyed by (dev, ino); a row also holds size, mtime_ns and ctime_ns, and it is
used only when *all* of them match a fresh ``lstat``. ctime cannot be set by
users, so a content change with the mtime put back (``touch -r``, ``utime``)
still misses; a replaced file has a new inode.

Racy entries: timestamps advance in clock ticks, so a file written again in the
same tick as it was hashed would keep its key. Like git's index, a digest is
stored only when the file's ctime is at least ``RACY_NS`` older than the moment
it is stored; such young files are simply hashed again next time.

Only the parent process (the single result consumer) writes the cache: new
digests go in batches (``put`` buffers, one transaction per ``FLUSH_ROWS``),
never per worker. Lookups are in bulk, a directory at a time: ``lookup`` for
a list of keys, ``lookup_packed`` for verify's unchanged path, where SQLite
joins the keys against the table and hands back one string per directory
rather than a row per file. A directory whose files all hit is also stored
whole (``put_listing``): its *fingerprint*, a hash of every file's full key
in listing order, maps to that string, so the next run settles the directory
with one indexed query (``lookup_listing``); the fingerprint is only stored
when every file is past ``RACY_NS``, and it matches only while every key
does, so it is exactly as trustworthy as the rows it was made from. Like the
rows of deleted files, the listings of directories that changed stay behind
(a few dozen bytes each). verify's DST lister process reads through its
own ``readonly`` connection, which never creates, rebuilds or deletes
anything: its failures go back to the parent (``failed``), which decides.

Failure is never fatal and never trusted: a file that is not a usable cache
(garbage, truncated, wrong schema) is deleted and rebuilt with a warning; a
cache locked by another process for longer than ``BUSY_TIMEOUT`` seconds is
bypassed for this run with a warning; any SQLite error in mid-run turns the
cache off for the rest of the run (and, if the file is damaged, deletes it).

This catches changes made through the file system. It cannot see bit rot on
the medium (content changing with no metadata change): scrub with ``--no-cache``.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from array import array
from typing import Callable, Dict, Iterable, Optional, Tuple

import xxhash

from .manifest import DIGESTS

SCHEMA_VERSION = 2  # 2 added the listings table (a version-1 cache is upgraded in place)
RACY_NS = 2_000_000_000  # do not store digests of files changed less than 2 s ago
BUSY_TIMEOUT = 2.0  # seconds to wait for another process's lock
FLUSH_ROWS = 20_000
_CHUNK = 500  # inode numbers per lookup query (well under SQLite's parameter limit)
_PACKED = 160  # keys per lookup_packed query: 960 parameters, under the 999 of SQLite before 3.32
_I64 = 1 << 63


def default_path() -> str:
    env = os.environ.get("PCOPY_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pcopy", "hashes.sqlite3")


def _signed(n: int) -> int:
    """SQLite integers are signed 64-bit; st_ino and st_dev are unsigned."""
    return n - (1 << 64) if n >= _I64 else n


class HashCache:
    """Bulk lookups and batched writes of digests; see the module docstring."""

    def __init__(self, path: Optional[str] = None, warn: Callable[[str], None] = lambda msg: None,
                 readonly: bool = False) -> None:
        self.path = os.fspath(path) if path is not None else default_path()
        self.warn = warn
        self.readonly = readonly
        self.error: Optional[sqlite3.Error] = None  # readonly: what turned the cache off
        self.db: Optional[sqlite3.Connection] = None
        self._rows: Dict[str, list] = {}
        self._listings: list = []  # (algo, fingerprint, digests) to store
        self._buffered = 0
        self._sql: Dict[tuple, str] = {}
        self.hits = 0
        self.misses = 0
        if readonly:
            self._open_readonly()
        else:
            self._open()

    # ------------------------------------------------------------------ opening

    def _open(self) -> None:
        try:
            self.db = self._connect()
            return
        except sqlite3.OperationalError as exc:
            if _is_locked(exc):
                self._disable(f"cache {self.path} is locked by another process ({exc}); running without it")
                return
            reason = str(exc)
        except sqlite3.DatabaseError as exc:
            reason = str(exc)
        except OSError as exc:
            self._disable(f"cannot use cache {self.path}: {os.strerror(exc.errno or errno.EIO)}; running without it")
            return
        self.warn(f"cache {self.path} is not usable ({reason}); rebuilding it")
        self._remove_files()
        try:
            self.db = self._connect()
        except (sqlite3.Error, OSError) as exc:
            self._disable(f"cannot rebuild cache {self.path} ({exc}); running without it")

    def _open_readonly(self) -> None:
        """A connection that cannot write; if it cannot open, there are simply no hits (nothing is reported)."""
        path = os.path.abspath(self.path).replace("%", "%25").replace("?", "%3f").replace("#", "%23")
        try:
            self.db = sqlite3.connect("file:" + path + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT,
                                      isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, ValueError):  # ValueError: a name that is not valid UTF-8
            self.db = None

    def _connect(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            files = {f"digests_{algo}" for algo in DIGESTS}
            if version != SCHEMA_VERSION or tables != files | {"listings"}:
                if not ((version == 0 and not tables) or (version == 1 and tables == files)):
                    raise sqlite3.DatabaseError(f"unexpected schema (version {version})")
                db.execute("BEGIN IMMEDIATE")
                for table in sorted(files - tables):
                    db.execute(f"CREATE TABLE {table} (dev INTEGER NOT NULL, ino INTEGER NOT NULL, "
                               "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, "
                               "digest TEXT NOT NULL, PRIMARY KEY (dev, ino)) WITHOUT ROWID")
                db.execute("CREATE TABLE listings (algo TEXT NOT NULL, fingerprint BLOB NOT NULL, "
                           "digests TEXT NOT NULL, PRIMARY KEY (algo, fingerprint)) WITHOUT ROWID")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("COMMIT")
            db.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            db.close()
            raise
        return db

    def _remove_files(self) -> None:
        for suffix in ("", "-journal", "-wal", "-shm"):
            try:
                os.unlink(self.path + suffix)
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.warn(f"cannot remove damaged cache {self.path + suffix}: {os.strerror(exc.errno or errno.EIO)}")

    def _disable(self, message: str) -> None:
        self.warn(message)
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
        self.db = None
        self._rows.clear()
        self._listings.clear()
        self._buffered = 0

    def _failed(self, exc: sqlite3.Error) -> None:
        """An error in mid-run: stop using the cache; delete it when it is damaged (never when readonly)."""
        if self.readonly:
            self.error = exc
            self._disable_quietly()
            return
        if isinstance(exc, sqlite3.OperationalError) and _is_locked(exc):
            self._disable(f"cache {self.path} is locked by another process ({exc}); running without it")
            return
        self._disable(f"cache {self.path} failed ({exc}); running without it, it will be rebuilt")
        self._remove_files()

    def _disable_quietly(self) -> None:
        db, self.db = self.db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass

    def failed(self, kind: str, message: str) -> None:
        """A reader elsewhere (the DST lister) hit ``kind`` ("locked", "damaged"): act as if we had."""
        if self.db is None:
            return
        self._failed(sqlite3.OperationalError(message) if kind == "locked" else sqlite3.DatabaseError(message))

    @property
    def enabled(self) -> bool:
        return self.db is not None

    # ------------------------------------------------------------------ use

    def lookup(self, algo: str, keys: Iterable[tuple]) -> Dict[tuple, str]:
        """Digests for the keys (dev, ino, size, mtime_ns, ctime_ns) whose every field matches.

        Keys are looked up in bulk (one query per device and few hundred inodes);
        returns {key: digest} for the hits.
        """
        keys = list(keys)
        if self.db is None or not keys:
            self.misses += len(keys)
            return {}
        table = f"digests_{algo}"
        by_dev: Dict[int, list] = {}
        for key in keys:
            by_dev.setdefault(key[0], []).append(key)
        found = {}
        try:
            for dev, group in by_dev.items():
                # Rows come back as (dev, ino, size, mtime_ns, ctime_ns): a hit is a row equal to a key.
                wanted = {(dev, k[1] if k[1] < _I64 else _signed(k[1])) + k[2:]: k for k in group}
                inos = [k[1] for k in wanted]
                for i in range(0, len(inos), _CHUNK):
                    chunk = inos[i:i + _CHUNK]
                    sql = (f"SELECT dev, ino, size, mtime_ns, ctime_ns, digest FROM {table} "
                           f"WHERE dev = ? AND ino IN ({','.join('?' * len(chunk))})")
                    signed_dev = dev if dev < _I64 else _signed(dev)
                    for row in self.db.execute(sql, (signed_dev, *chunk)):
                        hit = wanted.get((dev,) + row[1:5])
                        if hit is not None:
                            found[hit] = row[5]
        except sqlite3.Error as exc:
            self._failed(exc)
            self.misses += len(keys)
            return {}
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def lookup_packed(self, algo: str, packed: list) -> Tuple[int, str]:
        """``(hits, "i:digest,i:digest")`` for keys packed flat as ``[i, dev, ino, size, mtime_ns, ctime_ns, ...]``.

        ``i`` is the caller's label of the key (an index). SQLite itself
        matches every field of every key (one indexed search per key) and
        joins the hits into one string, so no Python object is made per file.
        The pieces come in no guaranteed order: two results are the same set
        of (label, digest) pairs when their strings are equal, and a caller
        that finds them unequal must compare them piece by piece
        (``unpack``). No hits (or no cache): ``(0, "")``.
        """
        if self.db is None or not packed:
            self.misses += len(packed) // 6
            return 0, ""
        if max(packed) >= _I64:  # unsigned device or inode numbers past SQLite's signed range
            packed = [_signed(v) for v in packed]
        hits, parts = 0, []
        try:
            for start in range(0, len(packed), 6 * _PACKED):
                chunk = packed[start:start + 6 * _PACKED]
                rows = _bucket(len(chunk) // 6)
                if rows * 6 > len(chunk):  # pad with keys that match nothing (no stored size is -1)
                    chunk = chunk + [-1, 0, 0, -1, 0, 0] * (rows - len(chunk) // 6)
                n, text = self.db.execute(self._packed_sql(algo, rows), chunk).fetchone()
                if n:
                    hits += n
                    parts.append(text)
        except sqlite3.Error as exc:
            self._failed(exc)
            self.misses += len(packed) // 6
            return 0, ""
        self.hits += hits
        self.misses += len(packed) // 6 - hits
        return hits, ",".join(parts)

    def lookup_listing(self, algo: str, packed: list) -> Tuple[int, str, Optional[bytes]]:
        """``lookup_packed`` for a whole directory's files, trying its stored listing first.

        Returns ``(hits, digests, fingerprint)``: the fingerprint is None when
        the listing was found (nothing to store), else the caller may
        ``put_listing`` it once every file is known.
        """
        fingerprint = listing_fingerprint(algo, packed)
        if self.db is not None and packed:
            try:
                row = self.db.execute("SELECT digests FROM listings WHERE algo = ? AND fingerprint = ?",
                                      (algo, fingerprint)).fetchone()
            except sqlite3.Error as exc:
                self._failed(exc)
                row = None
            if row is not None:
                hits = row[0].count(",") + 1 if row[0] else 0
                self.hits += hits
                self.misses += len(packed) // 6 - hits
                return hits, row[0], None
        hits, digests = self.lookup_packed(algo, packed)
        return hits, digests, fingerprint

    def put_listing(self, algo: str, fingerprint: bytes, digests: str) -> None:
        """Buffer a directory's listing: ``digests`` (every file's, as ``lookup_packed`` gives them) by fingerprint."""
        if self.db is None:
            return
        self._listings.append((algo, fingerprint, ",".join(f"{i}:{d}" for i, d in sorted(unpack(digests).items()))))
        self._buffered += 1
        if self._buffered >= FLUSH_ROWS:
            self.flush()

    def _packed_sql(self, algo: str, n: int) -> str:
        sql = self._sql.get((algo, n))
        if sql is None:
            if algo not in DIGESTS:
                raise ValueError(f"unknown hash algorithm: {algo}")
            sql = self._sql[(algo, n)] = (
                "WITH k(i, dev, ino, size, mtime_ns, ctime_ns) AS (VALUES " + ",".join(["(?,?,?,?,?,?)"] * n) + ") "
                f"SELECT count(*), group_concat(k.i || ':' || d.digest, ',') FROM k JOIN digests_{algo} d "
                "ON d.dev = k.dev AND d.ino = k.ino AND d.size = k.size AND d.mtime_ns = k.mtime_ns "
                "AND d.ctime_ns = k.ctime_ns")
        return sql

    def put(self, algo: str, key: tuple, digest: str, now_ns: Optional[int] = None) -> bool:
        """Buffer a digest for storing; False when the file is too young to be trusted (racy)."""
        if self.db is None:
            return False
        now_ns = time.time_ns() if now_ns is None else now_ns
        if key[4] > now_ns - RACY_NS:
            return False
        dev, ino, size, mtime_ns, ctime_ns = key
        self._rows.setdefault(algo, []).append((_signed(dev), _signed(ino), size, mtime_ns, ctime_ns, digest))
        self._buffered += 1
        if self._buffered >= FLUSH_ROWS:
            self.flush()
        return True

    def flush(self) -> None:
        """Write buffered digests in one transaction."""
        if self.db is None or not self._buffered:
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for algo, rows in self._rows.items():
                    self.db.executemany(f"INSERT OR REPLACE INTO digests_{algo} VALUES (?, ?, ?, ?, ?, ?)", rows)
                self.db.executemany("INSERT OR REPLACE INTO listings VALUES (?, ?, ?)", self._listings)
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._failed(exc)
            return
        self._rows.clear()
        self._listings.clear()
        self._buffered = 0

    def close(self) -> None:
        self.flush()
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None


def _bucket(n: int) -> int:
    """Key counts rounded up to a few sizes, so a handful of prepared statements serve every directory."""
    size = 8
    while size < n:
        size *= 2
    return min(size, _PACKED)


def listing_fingerprint(algo: str, packed: list) -> bytes:
    """What names a directory's files in ``lookup_listing``: xxh128 of the algorithm and every packed key field."""
    try:
        data = array("q", packed).tobytes()
    except OverflowError:  # a device or inode number past 2**63
        data = repr(packed).encode()
    return xxhash.xxh3_128_digest(algo.encode() + b"\0" + data)


def unpack(text: str) -> Dict[int, str]:
    """``{i: digest}`` from a ``lookup_packed`` string."""
    if not text:
        return {}
    return {int(i): digest for i, _, digest in (piece.partition(":") for piece in text.split(","))}


def failure_kind(exc: sqlite3.Error) -> str:
    """How a reader's error travels to the parent (``HashCache.failed``)."""
    return "locked" if isinstance(exc, sqlite3.OperationalError) and _is_locked(exc) else "damaged"


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
