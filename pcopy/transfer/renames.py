"""Renames in DST instead of copies: watch's moves (``apply_moves``) and the renames of sync --track-renames.

A rename is done only when the DST entry is the one pcopy expects: the same kind as the
SRC entry that now holds the new name and, for files and symlinks, its size and mtime (to
the ns: pcopy's own copies keep them), checked through the same directory fd just before
the ``renameat``. Anything else is left to the re-read (watch) or the sync that follows,
which copies what differs: a rename not done costs bytes, never correctness. All DST
access is beneath the DST root (``fs.beneath``: O_NOFOLLOW per component), so a symlink
planted in DST cannot take a rename outside it.
"""

from __future__ import annotations

import bisect
import functools
import os
import stat
from typing import Callable, NamedTuple, Optional

from ..content import cache, digest
from ..fs.beneath import DirFd, lstat_beneath, make_dir_beneath, rename_beneath
from ..model.entries import DIR, FILE, SYMLINK
from ..model.results import MOVED, Result
from ..options import Options

FILE_ITEM, DIR_ITEM, LINK_ITEM = ">f.........", "cd.........", "cL........."
MAX_MOVES = 20_000  # a batch with more moves than this copies the rest (the re-read stays correct)


class Move(NamedTuple):
    """``old`` was renamed to ``new`` in SRC (paths relative to SRC; ``is_dir`` as the event said).

    A half move (``old`` or ``new`` empty) is a file deletion or creation: watchdog could not pair
    the two halves of a rename (a move into a directory it is not watching yet, a busy queue).
    """

    old: str
    new: str
    is_dir: bool = False


def renames_allowed(options: Options) -> bool:
    """A rename removes the old name, so only a run that would delete it may rename: --delete, and no
    backups of it to keep, no transformed names, nothing that forbids a new name in DST."""
    return bool(options.delete and not options.backup and options.transform is None and not options.existing
                and not options.ignore_existing and not options.dry_run)


def same_entry(dst: os.stat_result, src: os.stat_result) -> bool:
    """Is this DST entry what pcopy would have made of the SRC entry? (kind; size and mtime for non-dirs)"""
    return same_facts(dst, src.st_mode, src.st_size, src.st_mtime_ns)


def same_facts(dst: os.stat_result, mode: int, size: int, mtime_ns: int) -> bool:
    """``same_entry`` against the SRC entry's mode, size and mtime (as they travel to a remote DST)."""
    if stat.S_IFMT(dst.st_mode) != stat.S_IFMT(mode):
        return False
    if stat.S_ISDIR(mode):
        return True  # its contents are compared by the re-read that follows
    return dst.st_size == size and dst.st_mtime_ns == mtime_ns


def _same_as(src: os.stat_result, dst: os.stat_result) -> bool:
    return same_entry(dst, src)


def kind_item(mode: int) -> tuple:
    if stat.S_ISDIR(mode):
        return DIR, DIR_ITEM
    if stat.S_ISLNK(mode):
        return SYMLINK, LINK_ITEM
    return FILE, FILE_ITEM


def rename_checked(dst_root: str, old: str, new: str, expect: Callable[[os.stat_result], bool],
                   make_parents: Optional[Callable[[str], Optional[int]]] = None) -> Optional[os.stat_result]:
    """Rename DST ``old`` to ``new`` when ``expect(lstat of old)``; the lstat when done, None when not.

    ``make_parents(reldir)``: the mode to create a missing DST directory on the way to ``new`` with
    (SRC's; the run that follows sets the rest of its metadata), None when it may not be created.
    """
    seen: list = []

    def check(st: os.stat_result) -> bool:
        seen.append(st)
        return expect(st)

    try:
        if make_parents is not None:
            _make_parents(dst_root, new.rpartition(os.sep)[0], make_parents)
        rename_beneath(dst_root, old, new, check)
    except OSError:
        return None  # gone, changed, of another kind, a non-empty directory in the way: copy instead
    return seen[-1] if seen else None


def link_checked(from_root: str, old: str, dst_root: str, new: str, expect: Callable[[os.stat_result], bool],
                 make_parents: Callable[[str], Optional[int]]) -> bool:
    """Hard-link ``from_root/old`` (a --link-dest tree, never written) as DST ``new`` when
    ``expect(lstat of old)``; never over an existing DST entry (link(2) fails then)."""
    old_dir, _, old_name = old.rpartition(os.sep)
    new_dir, _, new_name = new.rpartition(os.sep)
    try:
        with DirFd(from_root, old_dir) as from_fd:
            if not expect(os.stat(old_name, dir_fd=from_fd, follow_symlinks=False)):
                return False
            _make_parents(dst_root, new_dir, make_parents)
            with DirFd(dst_root, new_dir) as to_fd:
                os.link(old_name, new_name, src_dir_fd=from_fd, dst_dir_fd=to_fd, follow_symlinks=False)
    except OSError:
        return False  # gone, changed, a name in the way: the sync that follows copies it
    return True


def _make_parents(root: str, reldir: str, mode_of: Callable[[str], Optional[int]]) -> None:
    if not reldir:
        return
    try:
        if stat.S_ISDIR(lstat_beneath(root, reldir).st_mode):
            return
    except FileNotFoundError:
        pass
    mode = mode_of(reldir)
    if mode is None:
        raise FileNotFoundError(reldir)
    _make_parents(root, reldir.rpartition(os.sep)[0], mode_of)
    make_dir_beneath(root, reldir, mode)


def src_dir_mode(src: str, follow_symlinks: bool = False) -> Callable[[str], Optional[int]]:
    """``make_parents`` for rename_checked: a DST directory may be made where SRC has one, with its mode."""

    def mode_of(reldir: str) -> Optional[int]:
        try:
            st = os.stat(os.path.join(src, reldir)) if follow_symlinks else lstat_beneath(src, reldir)
        except OSError:
            return None
        return stat.S_IMODE(st.st_mode) | 0o700 if stat.S_ISDIR(st.st_mode) else None

    return mode_of


class Digests:
    """xxh128 of files below a root: from the hash cache when it holds the file's exact key (it is only
    read, and only if it exists: a sync does not create one), else read through content.digest."""

    def __init__(self) -> None:
        self.memo: dict = {}
        self.reads = 0
        self._cache = None
        path = os.environ.get("PCOPY_CACHE") or cache.default_path()
        if os.path.isfile(path):
            self._cache = cache.HashCache(path)

    def get(self, root: str, relpath: str, read: bool = True) -> Optional[str]:
        """The digest, or None (unreadable; with ``read=False`` also: not in the cache)."""
        key = (root, relpath)
        if key not in self.memo:
            found = self._digest(root, relpath, read)
            if found is None and not read:
                return None
            self.memo[key] = found
        return self.memo[key]

    def may_match(self, root_a: str, a: str, root_b: str, b: str) -> bool:
        """False only when the cache holds both digests and they differ (nothing is read)."""
        one, other = self.get(root_a, a, read=False), self.get(root_b, b, read=False)
        return one is None or other is None or one == other

    def _digest(self, root: str, relpath: str, read: bool = True) -> Optional[str]:
        parent, _, name = relpath.rpartition(os.sep)
        try:
            with DirFd(root, parent) as fd:
                if self._cache is not None:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                    hit = self._cache.lookup("xxh128", [key]).get(key)
                    if hit is not None:
                        return hit
                if not read:
                    return None
                self.reads += 1
                return digest.digest_at(fd, name, digest.algo("xxh128")).digest
        except (OSError, digest.SourceChanged, digest.NotRegular):
            return None

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()


# --------------------------------------------------------------------------- watch


def _index(moves: list) -> dict:
    by_old: dict = {}
    for i, move in enumerate(moves):
        by_old.setdefault(move.old, []).append(i)
    return by_old


def final_name(moves: list, i: int, by_old: Optional[dict] = None) -> str:
    """Where the entry that move ``i`` renamed ends up after the later moves of the same window
    (a→b then b→c: c; a→t, b→a, t→b, a swap: b; moved with a parent directory: below its new name)."""
    by_old = _index(moves) if by_old is None else by_old
    path = moves[i].new
    while True:
        best = None
        probe = path
        while probe:
            later = by_old.get(probe)
            if later:
                k = bisect.bisect_right(later, i)
                if k < len(later) and (best is None or later[k] < best[0]):
                    best = (later[k], probe)
            probe = probe.rpartition(os.sep)[0]
        if best is None:
            return path
        i, old = best
        path = moves[i].new + path[len(old):]


def apply_moves(options: Options, moves: list) -> list:
    """Replay SRC's moves of one watch batch in DST, in order; a ``MOVED`` Result per rename done.

    Each rename is checked against the SRC entry at its final name (``final_name``); one that
    does not match is skipped, and the batch's re-read copies that entry as before.
    """
    if not moves or not renames_allowed(options):
        return []
    moves = [m for m in moves if m.old and m.new] + pair_halves(options, moves)
    src_dir = src_dir_mode(options.src, options.follow_symlinks)
    return [moved(move, src_st) for move, src_st in checked_moves(options, moves)
            if rename_checked(options.dst, move.old, move.new, functools.partial(_same_as, src_st), src_dir)
            is not None]


def checked_moves(options: Options, moves: list) -> list:
    """(Move, lstat of the SRC entry at its final name) for each move worth trying, in order."""
    by_old = _index(moves)
    found = []
    for i, move in enumerate(moves):
        if not move.old or not move.new or move.old == move.new:
            continue
        try:
            found.append((move, _stat_src(options, final_name(moves, i, by_old))))
        except OSError:
            continue  # moved out of the tree or deleted since: the re-read deletes it (--delete)
    return found


def moved(move: Move, src_st: os.stat_result) -> Result:
    """The MOVED Result of a rename done (itemized as rsync would the entry at the new name)."""
    kind, item = kind_item(src_st.st_mode)
    return Result(move.new, MOVED, kind, 0 if kind == DIR else src_st.st_size, None, item, "", move.old)


def pair_halves(options: Options, moves: list, dst_stat: Optional[Callable] = None,
                dst_digest: Optional[Callable[[str], Optional[str]]] = None) -> list:
    """Moves from a file deletion and a file creation of the same batch: the created SRC file and the
    deleted name's DST file have one size and mtime, shared by no other candidate, and one xxh128
    (read: the kernel did not say they are one file; reading is still no writing). ``dst_stat`` and
    ``dst_digest``: how DST's side is seen when it is not here (a remote DST; default: beneath options.dst)."""
    gone = {m.old for m in moves if not m.new}
    born = {m.new for m in moves if not m.old}
    if not gone or not born:
        return []
    keys: dict = {}
    for side, names in (("gone", gone), ("born", born)):
        for name in names:
            try:
                st = (dst_stat or functools.partial(lstat_beneath, options.dst))(name) if side == "gone" \
                    else _stat_src(options, name)
                if side == "gone" and os.path.lexists(os.path.join(options.src, name)):
                    continue  # deleted and made again: not the old half of a move
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size > 0:
                keys.setdefault((st.st_size, st.st_mtime_ns), {"gone": [], "born": []})[side].append(name)
    pairs = [(k["gone"][0], k["born"][0]) for k in keys.values() if len(k["gone"]) == len(k["born"]) == 1]
    if not pairs:
        return []
    hashes = Digests()  # a guess by size and mtime alone could rename the wrong file: the contents decide
    digest_of = dst_digest or functools.partial(hashes.get, options.dst)
    try:
        return [Move(old, new) for old, new in pairs
                if (theirs := digest_of(old)) is not None and theirs == hashes.get(options.src, new)]
    finally:
        hashes.close()


def _stat_src(options: Options, relpath: str) -> os.stat_result:
    if options.follow_symlinks:
        return os.stat(os.path.join(options.src, relpath))
    return lstat_beneath(options.src, relpath)
