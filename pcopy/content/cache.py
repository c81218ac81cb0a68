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

Only the parent process (the single result consumer) touches the cache: it
looks keys up in bulk per directory and writes new digests in batches
(``put`` buffers, one transaction per ``FLUSH_ROWS``), never per worker.

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
from typing import Callable, Dict, Iterable, Optional

from .manifest import DIGESTS

SCHEMA_VERSION = 1
RACY_NS = 2_000_000_000  # do not store digests of files changed less than 2 s ago
BUSY_TIMEOUT = 2.0  # seconds to wait for another process's lock
FLUSH_ROWS = 20_000
_CHUNK = 500  # inode numbers per lookup query (well under SQLite's parameter limit)
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

    def __init__(self, path: Optional[str] = None, warn: Callable[[str], None] = lambda msg: None) -> None:
        self.path = os.fspath(path) if path is not None else default_path()
        self.warn = warn
        self.db: Optional[sqlite3.Connection] = None
        self._rows: Dict[str, list] = {}
        self._buffered = 0
        self.hits = 0
        self.misses = 0
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

    def _connect(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            wanted = {f"digests_{algo}" for algo in DIGESTS}
            if version != SCHEMA_VERSION or tables != wanted:
                if version != 0 or tables:
                    raise sqlite3.DatabaseError(f"unexpected schema (version {version})")
                db.execute("BEGIN IMMEDIATE")
                for table in sorted(wanted):
                    db.execute(f"CREATE TABLE {table} (dev INTEGER NOT NULL, ino INTEGER NOT NULL, "
                               "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, "
                               "digest TEXT NOT NULL, PRIMARY KEY (dev, ino)) WITHOUT ROWID")
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
        self._buffered = 0

    def _failed(self, exc: sqlite3.Error) -> None:
        """An error in mid-run: stop using the cache; delete it when it is damaged."""
        if isinstance(exc, sqlite3.OperationalError) and _is_locked(exc):
            self._disable(f"cache {self.path} is locked by another process ({exc}); running without it")
            return
        self._disable(f"cache {self.path} failed ({exc}); running without it, it will be rebuilt")
        self._remove_files()

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
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._failed(exc)
            return
        self._rows.clear()
        self._buffered = 0

    def close(self) -> None:
        self.flush()
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
