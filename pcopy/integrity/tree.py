"""``pcopy hash ROOT``: the walker feeding the session; ``run_session``, which hash, verify and verify -m share."""

from __future__ import annotations

import time
from typing import Callable, Optional

from ..content.manifest import manifest_line
from ..errors import describe
from ..fs.scan import require_dir, walk_paths
from ..model.batching import group
from ..model.entries import FILE
from ..runtime.progress import Counters
from ..runtime.signals import SignalGuard
from .report import ERROR, VANISHED, IntegrityReport
from .session import Session, Slot, Unit, key_of, open_cache, relpath
from .worker import GONE, HashJob


def run_session(session: Session, units, job: HashJob, finish: Callable, jobs, backend, started: float) -> None:
    """Run the units under the signal guard; close cache and progress (hash and verify -m)."""
    guarded(session, lambda check: session.run(units, job, finish, jobs, backend, check), started)


def guarded(session: Session, run: Callable[[Callable], None], started: float) -> None:
    """``run(check)`` under the signal guard (``session.guard`` while it runs); then close cache and progress."""
    with SignalGuard() as guard:
        session.guard = guard
        session.counters.start()
        try:
            run(guard.check)
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
