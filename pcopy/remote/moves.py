"""Watch's moves as renames on a remote DST: the client checks SRC (``transfer.renames``, as a local
watch does) and sends each rename with the SRC entry's mode, size and mtime; ``pcopy serve`` renames
beneath its root only when the DST entry still matches them (``renames.rename_checked``: O_NOFOLLOW
per component, the lstat taken through the same fd). A rename not done costs bytes, never
correctness: the batch's re-read copies what differs. The halves of a rename watchdog could not
pair are paired as locally (``renames.pair_halves``), DST's listing and digests asked of the remote.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple, Optional

from ..errors import PcopyError
from ..options import Options
from ..transfer import renames
from .protocol import check_relpath
from .transport import ConnectionLost


class _Stat(NamedTuple):
    """What ``renames.pair_halves`` reads of a DST entry's lstat, from the remote's listing."""

    st_mode: int
    st_size: int
    st_mtime_ns: int


class RemoteFacts:
    """DST's side of ``pair_halves`` on the remote end ``dst`` (remote.sides.Remote): one listing per
    directory of the deleted names, one digest request per candidate pair."""

    def __init__(self, dst) -> None:
        self.dst = dst
        self.dirs: dict = {}

    def stat(self, relpath: str) -> _Stat:
        parent, _, name = relpath.rpartition(os.sep)
        if parent not in self.dirs:
            self.dirs[parent] = self.dst.readdir(parent)[0] or {}
        entry = self.dirs[parent].get(name)
        if entry is None:
            raise FileNotFoundError(relpath)
        return _Stat(entry.mode, entry.size, entry.mtime_ns)

    def digest(self, relpath: str) -> Optional[str]:
        parent, _, name = relpath.rpartition(os.sep)
        return self.dst.digests(parent, [name])[0]


def push_moves(options: Options, dst, moves: list) -> list:
    """A MOVED Result per rename done on the remote DST end ``dst`` (remote.sides.Remote: its control
    session)."""
    if not moves or not renames.renames_allowed(options):
        return []
    facts = RemoteFacts(dst)
    halves = renames.pair_halves(options, moves, facts.stat, facts.digest)
    checked = renames.checked_moves(options, [m for m in moves if m.old and m.new] + halves)
    if not checked:
        return []
    mode_of = renames.src_dir_mode(options.src, options.follow_symlinks)
    parents: dict = {}  # DST directories a rename may create on the way to its new name: SRC's modes
    for move, _ in checked:
        reldir = move.new.rpartition(os.sep)[0]
        while reldir and reldir not in parents:
            parents[reldir] = mode_of(reldir)
            reldir = reldir.rpartition(os.sep)[0]
    items = [[m.old, m.new, st.st_mode, st.st_size, st.st_mtime_ns] for m, st in checked]
    try:
        done = dst.control.call({"op": "rename", "root": dst.root, "moves": items, "parents": parents})["done"]
    except ConnectionLost:
        raise
    except PcopyError:
        return []  # a remote pcopy without the operation: the re-read copies instead
    return [renames.moved(m, st) for (m, st), ok in zip(checked, done, strict=True) if ok]


def serve_renames(root: str, moves: list, parents: dict) -> list:
    """The remote half: True for each [old, new, mode, size, mtime_ns] renamed, in order."""
    out = []
    for old, new, mode, size, mtime_ns in moves:
        check_relpath(old)
        check_relpath(new)
        expect = functools.partial(_expect, mode=int(mode), size=int(size), mtime_ns=int(mtime_ns))
        out.append(renames.rename_checked(root, old, new, expect, parents.get) is not None)
    return out


def _expect(st: os.stat_result, mode: int, size: int, mtime_ns: int) -> bool:
    return renames.same_facts(st, mode, size, mtime_ns)
