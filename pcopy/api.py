"""The public Python API: the CLI's commands as functions that return a Report."""

from __future__ import annotations

import os
from typing import Callable, Optional

from . import engine
from .errors import UsageError
from .hashing import ALGORITHMS
from .model import Options, Report
from .pool import BACKENDS
from .progress import make_progress


def copytree(src, dst, *, jobs: Optional[int] = None, backend: str = "process", hash: str = "xxh128",
             manifest=None, progress: bool = False, follow_symlinks: bool = False, force: bool = False,
             keep_results: bool = True, on_result: Optional[Callable] = None, scheduler=None) -> Report:
    """Copy the tree at ``src`` into ``dst`` in parallel, checksumming as it writes.

    Like ``pcopy copy``: files whose size and mtime already match at ``dst``
    are skipped unless ``force``. Per-file failures do not raise: they are in
    ``report.failures``. Raises ``PcopyError`` when the copy cannot start and
    ``Interrupted`` on SIGINT/SIGTERM (after cleaning up).

    ``scheduler``: a Dask scheduler address (``tcp://host:port``) or a
    ``distributed.Client``; the per-file work then runs on that cluster's
    workers, which must see ``src`` and ``dst`` at the same paths (needs
    ``pip install 'pcopy[dask]'``).
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if hash not in ALGORITHMS:
        raise UsageError(f"unknown hash {hash!r} (choose from {', '.join(ALGORITHMS)})")
    if manifest is not None and hash == "none":
        raise UsageError("a manifest needs checksums: do not combine manifest with hash='none'")
    if jobs is not None and jobs < 1:
        raise UsageError("jobs must be at least 1")
    options = Options(src=os.fspath(src), dst=os.fspath(dst), hash=hash, force=force,
                      follow_symlinks=follow_symlinks, manifest=manifest is not None)
    return engine.copy_tree(options, jobs=jobs, backend=backend, counters=make_progress(progress),
                            manifest_path=os.fspath(manifest) if manifest is not None else None,
                            keep_results=keep_results, on_result=on_result, scheduler=scheduler)
