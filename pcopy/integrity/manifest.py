"""``pcopy verify --manifest FILE ROOT``: check a tree against a manifest, in manifest order.

Lines are read in bounded memory (``content.manifest.read_manifest``) inside
the signal guard's interruptible region, so a manifest on a pipe that never
ends (``/dev/zero``) still stops on SIGINT/SIGTERM. Paths never leave ROOT
and symlinks are not followed. Files in ROOT that the manifest does not list
are not reported (as with ``xxhsum -c``). A line that cannot be parsed is an
``error``; a manifest without any valid line is fatal.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from typing import Callable, Optional

from ..content.manifest import read_manifest
from ..errors import PcopyError, describe
from ..fs.beneath import DirFd
from ..fs.scan import require_dir
from ..model.batching import BATCH_FILES, group
from ..model.entries import kind_name
from ..runtime.progress import Counters
from .report import DIFFER, ERROR, MISSING, Difference, IntegrityReport
from .session import Session, Slot, Unit, open_cache
from .tree import run_session
from .worker import DIR_ERROR, GONE, NOT_FILE, HashJob


def verify_manifest(stream, root: str, *, manifest_name: str = "manifest", jobs: Optional[int] = None,
                    backend: str = "process", cache=True, counters: Optional[Counters] = None,
                    on_difference: Optional[Callable] = None, on_warning: Optional[Callable] = None,
                    keep: bool = True) -> IntegrityReport:
    """Check ``root`` against manifest lines read from the binary ``stream``."""
    started = time.monotonic()
    require_dir(root, "root")
    report = IntegrityReport(differences=[] if keep else None)
    session = Session(report, counters if counters is not None else Counters(), open_cache(cache, report, on_warning),
                      on_difference)
    valid = [0]

    def reading():
        guard = session.guard
        return guard.interruptible() if guard is not None else contextlib.nullcontext()

    def check() -> None:
        if session.guard is not None:
            session.guard.check()

    def entries():
        it = read_manifest(stream, check)
        while True:
            with reading():
                entry = next(it, None)
            if entry is None:
                return
            yield entry

    def units():
        group_, group_dir, group_algo = [], None, None
        for entry in entries():
            if entry.error is not None:
                session.difference(ERROR, f"{manifest_name}:{entry.lineno}", entry.error)
                continue
            valid[0] += 1
            reldir, _, name = entry.relpath.rpartition("/")
            reldir = reldir.replace("/", os.sep)
            if group_ and (reldir != group_dir or entry.algo != group_algo or len(group_) >= BATCH_FILES):
                yield from _units(session, root, group_dir, group_algo, group_)
                group_ = []
            group_dir, group_algo = reldir, entry.algo
            group_.append((name, entry))
        if group_:
            yield from _units(session, root, group_dir, group_algo, group_)

    def finish(unit: Unit) -> None:
        for slot, entry in unit.records:
            if type(slot) is Difference:  # decided while statting
                session.difference(*slot)
                continue
            if slot.error is not None:
                kind, message = slot.error
                if kind == GONE:
                    session.difference(MISSING, entry.relpath, "not found")
                elif kind == NOT_FILE:
                    session.difference(DIFFER, entry.relpath, message)
                else:
                    session.difference(ERROR, entry.relpath, message)
            elif slot.digest == entry.digest:
                report.identical += 1
            else:
                session.difference(DIFFER, entry.relpath, "contents differ")

    run_session(session, units(), HashJob((root,)), finish, jobs, backend, started)
    if not valid[0]:
        raise PcopyError(f"{manifest_name}: no properly formatted checksum lines found")
    return report


def _stats(root: str, reldir: str, names: list) -> dict:
    """{name: stat_result or (kind, message)} for one directory's manifest entries."""
    try:
        handle = DirFd(root, reldir)
    except (FileNotFoundError, NotADirectoryError):
        return {name: (GONE, "not found") for name in names}
    except OSError as exc:
        return {name: (DIR_ERROR, f"cannot open its directory: {describe(exc)}") for name in names}
    stats: dict = {}
    with handle as fd:
        for name in names:
            try:
                stats[name] = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                stats[name] = (GONE, "not found")
            except OSError as exc:
                stats[name] = (ERROR, describe(exc))
    return stats


def _units(session: Session, root: str, reldir: str, algo: str, entries: list):
    """Units for the manifest entries of one directory (statted here: kinds and cache keys)."""
    stats = _stats(root, reldir, [name for name, _ in entries])
    records: list = []
    for name, entry in entries:
        st = stats[name]
        if type(st) is tuple:
            kind, message = st
            records.append((Difference(MISSING if kind == GONE else ERROR, entry.relpath, message), entry))
        elif not stat.S_ISREG(st.st_mode):
            records.append((Difference(DIFFER, entry.relpath, f"is a {kind_name(st.st_mode)}, not a regular file"),
                            entry))
        else:
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            records.append((Slot(0, name, key, st.st_size), entry))
    for chunk in group(records, lambda rec: rec[0].size if type(rec[0]) is Slot else 0):
        slots = [slot for slot, _ in chunk if type(slot) is Slot]
        yield session.prepare(Unit(reldir, algo, chunk, slots))
