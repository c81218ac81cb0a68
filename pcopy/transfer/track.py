"""sync --track-renames (rclone's option): DST files that would be deleted are renamed to the names of
SRC files that would be copied, when they hold the same file, instead of copying and deleting.

    March(SRC, DST) ─► SRC files DST lacks, DST files SRC lacks (DST-only directories walked)
         │              memory: only these changes, never the whole tree
         ▼
    match by (size, mtime) — one SRC file per DST file, else (or with --track-renames-by hash)
         │                    by xxh128 of both (hash cache, else a read); a cached pair that
         │                    differs vetoes a match by mtime
         ▼
    renames.rename_checked beneath DST (the DST entry must still be the one listed)
         ▼
    the ordinary sync runs next and finds the renamed files unchanged

A dry run does no rename and returns the matches it would make; ``api`` hides the copy and the
deletion the dry sync would show for them.
"""

from __future__ import annotations

import functools
import os
import stat
from typing import Callable, NamedTuple, Optional

from ..fs import filters
from ..fs.beneath import lstat_beneath
from ..fs.march import March
from ..fs.scan import walk
from ..fs.temps import TMP_PREFIX
from ..model.entries import DIR, FILE, relpath_join
from ..model.results import COPIED, DELETED, LINKED, MOVED, Report, Result
from ..options import Options
from . import engine
from .plan import NEW_FILE
from .renames import FILE_ITEM, Digests, link_checked, rename_checked, src_dir_mode

BY_MODTIME, BY_HASH = "modtime", "hash"


class Candidate(NamedTuple):
    relpath: str
    size: int
    mtime_ns: int
    ino: int


def collect(options: Options, keep: Optional[Callable]) -> tuple:
    """``(src_only, dst_only)``: regular files SRC has and DST lacks, and the reverse (size > 0)."""
    src_only: list = []
    dst_only: list = []
    march = March(options.src, options.dst, follow_symlinks=options.follow_symlinks, keep=keep,
                  dst_keep=None if options.delete_excluded else keep, need_stat=True)
    try:
        for pair in march.pairs():
            names = {e.name for e in pair.src.entries}
            for e in pair.src.entries:
                if e.kind == FILE and e.size > 0 and (pair.dst is None or e.name not in pair.dst):
                    src_only.append(Candidate(relpath_join(pair.reldir, e.name), e.size, e.mtime_ns, e.ino))
            for name, e in (pair.dst or {}).items():
                if name in names or name.startswith(TMP_PREFIX):
                    continue
                relpath = relpath_join(pair.reldir, name)
                if e.kind == FILE and e.size > 0:
                    dst_only.append(Candidate(relpath, e.size, e.mtime_ns, e.ino))
                elif e.kind == DIR:
                    dst_only.extend(_below(options.dst, relpath, None if options.delete_excluded else keep))
    finally:
        march.close()
    return src_only, dst_only


def _below(dst: str, reldir: str, keep: Optional[Callable]) -> list:
    """The files of a DST-only directory (the march does not enter it: SRC has nothing there)."""
    found = []
    for listing in walk(dst, keep=keep, start=reldir):
        for e in listing.entries:
            if e.kind == FILE and e.size > 0 and not e.name.startswith(TMP_PREFIX):
                found.append(Candidate(relpath_join(listing.reldir, e.name), e.size, e.mtime_ns, e.ino))
    return found


def _same_time(a: int, b: int, window_ns: int) -> bool:
    if window_ns > 0:  # rsync's rule: whole seconds differ by at most the window
        return abs(a // 1_000_000_000 - b // 1_000_000_000) <= window_ns // 1_000_000_000
    return a == b


def match(options: Options, src_only: list, dst_only: list, by: str) -> list:
    """``[(dst Candidate, src Candidate)]``: each DST file paired with at most one SRC file."""
    window = options.modify_window_ns
    by_size: dict = {}
    for c in src_only:
        by_size.setdefault(c.size, []).append(c)
    pairs, taken = [], set()
    hashes = Digests()
    try:
        for d in dst_only:
            same = [s for s in by_size.get(d.size, ()) if _same_time(s.mtime_ns, d.mtime_ns, window)
                    and s.relpath not in taken]
            if same and (by == BY_HASH or len(same) > 1):
                want = hashes.get(options.dst, d.relpath)
                same = [s for s in same if want is not None and hashes.get(options.src, s.relpath) == want]
            elif same and not hashes.may_match(options.dst, d.relpath, options.src, same[0].relpath):
                same = []  # the hash cache knows both digests, and they differ
            if same:
                taken.add(same[0].relpath)
                pairs.append((d, same[0]))
    finally:
        hashes.close()
    return pairs


def _listed(d: Candidate, st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode) and (st.st_ino, st.st_size, st.st_mtime_ns) == (d.ino, d.size, d.mtime_ns)


def track_renames(options: Options, keep: Optional[Callable], by: str = BY_MODTIME) -> list:
    """Rename matched DST files (or, in a dry run, only say so); a ``MOVED`` Result for each."""
    if not os.path.isdir(options.dst):
        return []
    src_only, dst_only = collect(options, keep)
    if not src_only or not dst_only:
        return []
    done = []
    src_dir = src_dir_mode(options.src, options.follow_symlinks)
    for d, s in match(options, src_only, dst_only, by):
        if not options.dry_run:
            try:
                lstat_beneath(options.dst, s.relpath)
                continue  # something took the new name since the listing: the sync copies it
            except FileNotFoundError:
                pass
            except OSError:
                continue
            if rename_checked(options.dst, d.relpath, s.relpath, functools.partial(_listed, d), src_dir) is None:
                continue
        done.append(Result(s.relpath, MOVED, FILE, s.size, None, FILE_ITEM, "", d.relpath))
    return done


def _make_root(options: Options) -> bool:
    """DST itself for a new snapshot, so that its files can be linked before the sync makes the rest
    (and sets DST's metadata); False when it cannot be made here (the sync then reports why)."""
    try:
        os.mkdir(options.dst, 0o700)
    except FileExistsError:
        return os.path.isdir(options.dst)
    except OSError:
        return False
    return True


def _same_file(options: Options, src_root: str, s: Candidate, root: str, old: str) -> Callable[[os.stat_result], bool]:
    """A --link-dest file may only be linked when linking loses nothing: the same size, time, mode,
    owner and extended attributes as the SRC file (a later fix would change the old snapshot too)."""

    def same(st: os.stat_result) -> bool:
        try:
            src = lstat_beneath(src_root, s.relpath)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != (s.size, s.mtime_ns):
            return False
        if stat.S_IMODE(st.st_mode) != stat.S_IMODE(src.st_mode) or (
                options.owner and (st.st_uid, st.st_gid) != (src.st_uid, src.st_gid)):
            return False
        return not (options.xattrs or options.acls) or not (_xattrs(src_root, s.relpath) or _xattrs(root, old))

    return same


def _xattrs(root: str, relpath: str) -> bool:
    """Either side has extended attributes (then the worker's link-dest comparison decides instead)."""
    try:
        return bool(os.listxattr(os.path.join(root, relpath), follow_symlinks=False))
    except OSError:
        return True


def link_dest_renames(options: Options, keep: Optional[Callable], by: str = BY_MODTIME) -> list:
    """--track-renames with --link-dest: a SRC file that neither DST nor a link-dest tree holds under
    its own name, but a link-dest tree holds under another (matched as DST files are), is hard-linked
    from there, as --link-dest would have done had the name not changed. A ``LINKED`` Result each."""
    done: list = []
    mode_of = src_dir_mode(options.src, options.follow_symlinks)
    for root in options.link_dest:
        if not os.path.isdir(root):
            continue
        tree = options._replace(dst=root)
        src_only, old_only = collect(tree, keep)
        linked = {r.relpath for r in done}
        src_only = [s for s in src_only if s.relpath not in linked and not _exists(options.dst, s.relpath)]
        if not src_only or not old_only:
            continue
        for old, s in match(tree, src_only, old_only, by):
            if not options.dry_run and not _make_root(options):
                return done
            if options.dry_run or link_checked(root, old.relpath, options.dst, s.relpath,
                                               _same_file(options, options.src, s, root, old.relpath), mode_of):
                done.append(Result(s.relpath, LINKED, FILE, s.size, None, NEW_FILE, "",
                                   os.path.join(root, old.relpath)))
    return done


def _exists(root: str, relpath: str) -> bool:
    try:
        lstat_beneath(root, relpath)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: leave it to the sync
    return True


def sync(options: Options, *, on_result: Optional[Callable] = None, keep_results: bool = False, **hooks) -> Report:
    """``engine.copy_tree`` after the renames; a dry run's copy and deletion of a renamed file are hidden."""
    keep = filters.restrict(filters.make_filter(options.filters), options.src, options.exclude_if_present,
                            None, options.recursive)
    if engine.preflight(options._replace(dry_run=True), keep) and not options.link_dest:
        return engine.copy_tree(options, on_result=on_result, keep_results=keep_results, **hooks)  # DST is new
    moved = track_renames(options, keep, options.track_renames) + link_dest_renames(options, keep,
                                                                                   options.track_renames)
    for result in moved:
        if on_result is not None:
            on_result(result)
    hidden = {(COPIED, r.relpath) for r in moved} | {(DELETED, r.message) for r in moved} if options.dry_run else set()
    seen: list = []

    def forward(result: Result) -> None:
        if (result.status, result.relpath) in hidden:
            seen.append(result)
        elif on_result is not None:
            on_result(result)

    report = engine.copy_tree(options, on_result=forward, keep_results=keep_results, **hooks)
    for result in seen:  # the dry run's copy + deletion that the rename replaces
        if result.status == COPIED:
            report.copied -= 1
            report.bytes_copied -= result.size
            report.file_bytes -= result.size
            report.created["reg"] -= result.item.endswith("+++++++++")
        else:
            report.deleted -= 1
    report.count(moved)
    if report.results is not None:
        report.results[:0] = moved
        report.results[:] = [r for r in report.results if (r.status, r.relpath) not in hidden]
    return report
