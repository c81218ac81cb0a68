"""``pcopy hash ROOT`` and ``pcopy verify SRC DST``: the walker and the march feeding the session."""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

from ..content.manifest import manifest_line
from ..errors import describe
from ..fs.beneath import DirFd
from ..fs.march import March
from ..fs.scan import require_dir, walk_paths
from ..model.batching import group
from ..model.entries import DIR, FILE, SPECIAL, SYMLINK, kind_name
from ..runtime.progress import Counters
from ..runtime.signals import SignalGuard
from .report import DIFFER, ERROR, EXTRA, MISSING, VANISHED, Difference, IntegrityReport
from .session import Session, Slot, Unit, key_of, open_cache, relpath
from .worker import DIR_ERROR, GONE, HashJob


def run_session(session: Session, units, job: HashJob, finish: Callable, jobs, backend, started: float) -> None:
    """Run the units under the signal guard (``session.guard`` while it runs); close cache and progress."""
    with SignalGuard() as guard:
        session.guard = guard
        session.counters.start()
        try:
            session.run(units, job, finish, jobs, backend, guard.check)
        finally:
            session.counters.close()
            if session.cache is not None:
                session.cache.close()
    session.report.seconds = time.monotonic() - started


def _size(slot) -> int:
    return slot.size


def hash_tree(root: str, write: Callable[[bytes], None], *, algo: str = "xxh128", jobs: Optional[int] = None,
              backend: str = "process", cache=True, counters: Optional[Counters] = None,
              on_difference: Optional[Callable] = None, on_warning: Optional[Callable] = None,
              skip: frozenset = frozenset(), keep: bool = True) -> IntegrityReport:
    """Hash every regular file below ``root``; ``write`` gets manifest lines in sorted path order.

    Symlinks and special files are not followed or listed. Unreadable files
    and directories are ``error`` differences; a file deleted while the tree
    is hashed is a ``vanished`` one (not listed, not an error).
    """
    started = time.monotonic()
    require_dir(root, "root")
    report = IntegrityReport(differences=[] if keep else None)
    session = Session(report, counters if counters is not None else Counters(), open_cache(cache, report, on_warning),
                      on_difference)

    def units():
        for listing in walk_paths(root, True, skip):
            reldir = listing.reldir
            if listing.error is not None:
                session.difference(ERROR, reldir or ".", f"cannot read directory: {describe(listing.error)}")
                continue
            for name, exc in listing.entry_errors:
                session.difference(ERROR, relpath(reldir, name), f"cannot stat: {describe(exc)}")
            slots = [Slot(0, e.name, key_of(e), e.size) for e in listing.entries if e.kind == FILE]
            for chunk in group(slots, _size):
                yield session.prepare(Unit(reldir, algo, chunk, chunk))

    def finish(unit: Unit) -> None:
        lines = []
        for slot in unit.slots:
            path = relpath(unit.reldir, slot.name)
            if slot.digest is not None:
                lines.append(manifest_line(slot.digest, path))
            elif slot.error[0] == GONE:
                session.difference(VANISHED, path, "deleted while the tree was hashed; not listed")
            else:
                session.difference(ERROR, path, slot.error[1])
        if lines:
            write(b"".join(lines))

    run_session(session, units(), HashJob((root,)), finish, jobs, backend, started)
    return report


def verify_trees(src: str, dst: str, *, jobs: Optional[int] = None, backend: str = "process", cache=True,
                 counters: Optional[Counters] = None, on_difference: Optional[Callable] = None,
                 on_warning: Optional[Callable] = None, keep: bool = True) -> IntegrityReport:
    """Compare two trees by content (xxh128), symlink targets and entry kinds.

    A directory present on one side only is one ``missing``/``extra`` line
    (its path ends with ``/``); its contents are not listed.
    """
    started = time.monotonic()
    require_dir(src, "source")
    require_dir(dst, "destination")
    report = IntegrityReport(differences=[] if keep else None)
    session = Session(report, counters if counters is not None else Counters(), open_cache(cache, report, on_warning),
                      on_difference)
    march = March(src, dst, need_stat=True)

    def units():
        try:
            for pair in march.pairs():
                reldir = pair.reldir
                where = reldir or "."
                if pair.src.error is not None:
                    session.difference(ERROR, where, f"cannot read directory in SRC: {describe(pair.src.error)}")
                    continue
                if pair.dst_error is not None:
                    session.difference(ERROR, where, f"cannot read directory in DST: {describe(pair.dst_error)}")
                    march.prune.update(relpath(reldir, e.name) for e in pair.src.entries if e.kind == DIR)
                    continue
                unknown = set()  # names whose stat failed on a side: reported once, not compared
                for side, errors in (("SRC", pair.src.entry_errors), ("DST", pair.dst_entry_errors)):
                    for name, exc in errors:
                        unknown.add(name)
                        session.difference(ERROR, relpath(reldir, name), f"cannot stat in {side}: {describe(exc)}")
                records = _compare(src, dst, reldir, pair.src.entries, pair.dst or {}, march.prune, unknown)
                for chunk in group(records, _pair_size):
                    slots = [slot for rec in chunk if type(rec) is tuple for slot in rec]
                    yield session.prepare(Unit(reldir, "xxh128", chunk, slots))
        finally:
            march.close()

    def finish(unit: Unit) -> None:
        for record in unit.records:
            if record is True:
                report.identical += 1
            elif type(record) is Difference:
                session.difference(*record)
            else:
                a, b = record
                path = relpath(unit.reldir, a.name)
                if a.error is not None or b.error is not None:
                    slot, side = (a, "SRC") if a.error is not None else (b, "DST")
                    kind, message = slot.error
                    detail = "vanished during the check" if kind == GONE else message
                    session.difference(ERROR, path, f"in {side}: {detail}" if kind != DIR_ERROR else message)
                elif a.digest == b.digest:
                    report.identical += 1
                elif a.size != b.size:
                    session.difference(DIFFER, path, f"sizes differ ({a.size} in SRC, {b.size} in DST)")
                else:
                    session.difference(DIFFER, path, "contents differ")

    march.start_lister()
    run_session(session, units(), HashJob((src, dst)), finish, jobs, backend, started)
    return report


def _pair_size(record) -> int:
    return record[0].size + record[1].size if type(record) is tuple else 0


def _kind(entry) -> str:
    return {FILE: "file", DIR: "directory", SYMLINK: "symlink"}.get(entry.kind, kind_name(entry.mode))


def _compare(src: str, dst: str, reldir: str, src_entries: list, dst_entries: dict, prune: set,
             unknown: set) -> list:
    """Records in name order: a decided Difference, True (same), or a pair of Slots to hash."""
    records: list = []
    links: list = []
    by_name = {e.name: e for e in src_entries}
    for name in sorted((by_name.keys() | dst_entries.keys()) - unknown):
        a, b = by_name.get(name), dst_entries.get(name)
        path = relpath(reldir, name)
        if a is not None and a.kind == DIR and (b is None or b.kind != DIR):
            prune.add(path)
        if a is None or b is None:
            kind, entry, where = (MISSING, a, "not in DST") if b is None else (EXTRA, b, "not in SRC")
            records.append(Difference(kind, path + ("/" if entry is not None and entry.kind == DIR else ""), where))
        elif a.kind != b.kind:
            records.append(Difference(DIFFER, path, f"{_kind(a)} in SRC, {_kind(b)} in DST"))
        elif a.kind == FILE:
            if a.size != b.size:
                records.append(Difference(DIFFER, path, f"sizes differ ({a.size} in SRC, {b.size} in DST)"))
            else:
                records.append((Slot(0, name, key_of(a), a.size), Slot(1, name, key_of(b), b.size)))
        elif a.kind == SYMLINK:
            links.append(len(records))
            records.append(name)  # resolved below, with both directories opened once
        elif a.kind == SPECIAL and kind_name(a.mode) != kind_name(b.mode):
            records.append(Difference(DIFFER, path, f"{kind_name(a.mode)} in SRC, {kind_name(b.mode)} in DST"))
        elif a.kind != DIR:
            records.append(True)
    if links:
        _compare_links(src, dst, reldir, records, links)
    return records


def _compare_links(src: str, dst: str, reldir: str, records: list, links: list) -> None:
    try:
        with DirFd(src, reldir) as sfd, DirFd(dst, reldir) as dfd:
            for i in links:
                name = records[i]
                try:
                    same = os.readlink(name, dir_fd=sfd) == os.readlink(name, dir_fd=dfd)
                except OSError as exc:
                    records[i] = Difference(ERROR, relpath(reldir, name), f"cannot read symlink: {describe(exc)}")
                    continue
                records[i] = True if same else Difference(DIFFER, relpath(reldir, name), "symlink targets differ")
    except OSError as exc:
        for i in links:
            records[i] = Difference(ERROR, relpath(reldir, records[i]), f"cannot open its directory: {describe(exc)}")
