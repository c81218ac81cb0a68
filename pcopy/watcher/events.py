"""Pure mapping of file events to the source directories a watch batch must re-read.

Nothing here touches the disk or imports watchdog, so every rule is testable
with plain values.
"""

from __future__ import annotations

import os
from typing import Optional

FULL = ("", True)  # the whole tree


def parent_of(rel: str) -> str:
    return rel.rpartition(os.sep)[0]


def map_event(event_type: str, is_dir: bool, rel: Optional[str], dest_rel: Optional[str] = None) -> Optional[list]:
    """Source directories to re-read for one event, as ``[(reldir, recursive)]``.

    ``rel``/``dest_rel`` are paths relative to SRC ("" is SRC itself), or None
    for a path outside SRC (or one to ignore). Returns None when the event
    cannot be mapped (the caller then re-reads the whole tree) and [] when it
    needs nothing.
    """
    if event_type == "moved":
        if rel == "" or dest_rel == "":
            return None  # SRC itself moved
        targets = []
        if rel is not None:
            targets.append((parent_of(rel), False))
        if dest_rel is not None:
            targets.append((parent_of(dest_rel), False))
            if is_dir:
                targets.append((dest_rel, True))
        return targets if targets else None
    if rel is None:
        return None
    if event_type == "created":
        if rel == "":
            return [FULL]
        return [(rel, True), (parent_of(rel), False)] if is_dir else [(parent_of(rel), False)]
    if event_type == "deleted":
        return [("", False)] if rel == "" else [(parent_of(rel), False)]
    if event_type in ("modified", "attrib", "closed"):
        return [(rel, False)] if is_dir else [(parent_of(rel), False)]
    return []  # opened, closed_no_write: nothing changed


def move_of(event_type: str, is_dir: bool, rel: Optional[str], dest_rel: Optional[str],
            synthetic: bool = False) -> Optional[tuple]:
    """``(old, new, is_dir)`` for a move inside SRC that DST may replay as a rename, else None.

    A file deletion (``new`` "") or creation (``old`` "") is half of a rename watchdog could not
    pair; the batch may still pair it (``transfer.renames.pair_halves``). A synthetic move (a file
    inside a moved directory) is carried by its directory's move.
    """
    if rel and dest_rel:
        return None if synthetic else (rel, dest_rel, is_dir)
    if is_dir or event_type not in ("deleted", "created", "moved"):
        return None
    gone = rel if event_type == "deleted" or (event_type == "moved" and not dest_rel) else None
    born = rel if event_type == "created" else (dest_rel if event_type == "moved" and not rel else None)
    return (gone or "", born or "", False) if (gone or born) else None


def _covered(reldir: str, recursive_dirs: set, include_self: bool) -> bool:
    if include_self and reldir in recursive_dirs:
        return True
    while reldir:
        reldir = parent_of(reldir)
        if reldir in recursive_dirs:
            return True
    return False


def coalesce(targets) -> list:
    """Drop targets covered by a recursive ancestor (or by themselves, recursively); parents first."""
    targets = set(targets)
    recursive_dirs = {d for d, r in targets if r}
    if "" in recursive_dirs:
        return [FULL]
    kept = [(d, r) for d, r in targets if not _covered(d, recursive_dirs, include_self=not r)]
    kept.sort(key=lambda t: (t[0].split(os.sep) if t[0] else [], t[1]))
    return kept


