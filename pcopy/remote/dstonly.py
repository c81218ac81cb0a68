"""Tasks done on the DST end alone, where no file data travels: hash a file already up to date for
the manifest (HASH), hard-link an unchanged file from a --link-dest snapshot (LINKDEST). Both run
through the worker's own code (``transfer.worker.BatchCopier.run_task``: ``hash_existing`` and
``link_from``, beneath the DST root); a file ``link_from`` would copy instead (the snapshot's copy
went away) comes back DEFERRED, and the client sends it as an ordinary copy. Runs in ``pcopy serve``
(push) and in the client (pull).
"""

from __future__ import annotations

import os
from typing import Optional

from ..errors import describe
from ..model.entries import FILE, HASH, LINKDEST, Task, relpath_join
from ..model.results import DEFERRED, Result, failure
from ..runtime import worker
from ..transfer.worker import BatchCopier
from .protocol import ProtocolError, attrs_in, check_name, check_relpath
from .receive import receiver_options

ACTIONS = (HASH, LINKDEST)


def task_in(plain) -> Task:
    """A task from the client: only the DST-only actions, a name in its directory, a snapshot root."""
    action, name, size, why, source = plain
    if action not in ACTIONS or not isinstance(size, int) or not isinstance(why, str):
        raise ProtocolError(f"bad DST task from the other end: {plain!r}")
    if action == LINKDEST and not (isinstance(source, str) and source):
        raise ProtocolError(f"bad --link-dest root from the other end: {source!r}")
    return Task(action, check_name(name), size, why, os.path.expanduser(source) if source else None)


class _Given:
    """The run's AttrCopier with SRC's attributes as the SRC end read them (``given``: name -> plain):
    ``link_from`` links only when the snapshot's copy has the same, as locally."""

    def __init__(self, inner, given: dict) -> None:
        self.inner, self.given = inner, given
        self.active = inner.active

    def compare(self, src, dst) -> tuple:
        wanted, have = attrs_in(self.given.get(src.name)) or {}, self.inner.read(dst)
        x, a = self.inner.differs(wanted, have)
        return x, a, wanted, have

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


class _DstOnly(BatchCopier):
    """A BatchCopier without a source: what would need SRC's bytes is handed back."""

    def copy_file_retrying(self, relpath: str, name: str, why: str = "", *args, **kwargs):
        return Result(relpath, DEFERRED, FILE, 0, None, why)


def run_dst_tasks(root: str, token: str, reldir: str, tasks: list, spec: dict, given: Optional[dict] = None) -> list:
    """One Result (as a list) per task of ``reldir`` (``spec``: the receiver's plain options; ``given``:
    SRC's attributes of the LINKDEST files, read on the SRC end, with -X/-A)."""
    check_relpath(reldir)
    options = receiver_options(root, token, spec)
    if spec.get("manifest"):
        options = options._replace(manifest="-")  # LINKED files are hashed too (their lines)
    dsts = worker.dir_cache(token, root)
    try:
        dst_fd = dsts.acquire(reldir)
    except OSError as exc:
        return [list(failure(relpath_join(reldir, t.name), FILE, f"destination directory: {describe(exc)}"))
                for t in tasks]
    try:
        copier = _DstOnly(options, -1, dst_fd)
        copier.reldir = reldir
        if copier.meta.active:
            copier.meta = _Given(copier.meta, given or {})  # type: ignore[assignment]
        return [list(copier.run_task(relpath_join(reldir, t.name), t)) for t in tasks]
    finally:
        dsts.release(dst_fd)
