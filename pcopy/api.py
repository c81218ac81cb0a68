"""The public Python API: the CLI's commands as functions that return a Report."""

from __future__ import annotations

import os
from typing import Callable, Iterable, Optional

from . import engine
from .errors import UsageError
from .filters import read_pattern_file
from .hashing import ALGORITHMS
from .model import Options, Report
from .pool import BACKENDS
from .progress import make_progress


def _check(backend: str, hash: str, manifest, jobs: Optional[int]) -> None:
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if hash not in ALGORITHMS:
        raise UsageError(f"unknown hash {hash!r} (choose from {', '.join(ALGORITHMS)})")
    if manifest is not None and hash == "none":
        raise UsageError("a manifest needs checksums: do not combine manifest with hash='none'")
    if jobs is not None and jobs < 1:
        raise UsageError("jobs must be at least 1")


def _run(options: Options, *, jobs, backend, manifest, progress, keep_results, on_result, stop_event=None) -> Report:
    _check(backend, options.hash, manifest, jobs)
    return engine.copy_tree(options, jobs=jobs, backend=backend, counters=make_progress(progress),
                            manifest_path=os.fspath(manifest) if manifest is not None else None,
                            keep_results=keep_results, on_result=on_result, stop_event=stop_event)


def copytree(src, dst, *, jobs: Optional[int] = None, backend: str = "process", hash: str = "xxh128",
             manifest=None, progress: bool = False, follow_symlinks: bool = False, force: bool = False,
             hard_links: bool = False, fsync: bool = False, keep_results: bool = True,
             on_result: Optional[Callable] = None) -> Report:
    """Copy the tree at ``src`` into ``dst`` in parallel, checksumming as it writes.

    Like ``pcopy copy``: files whose size and mtime already match at ``dst``
    are skipped unless ``force``; an entry of another kind at ``dst`` is a
    failure (``sync`` replaces it). Per-file failures do not raise: they are in
    ``report.failures``. Raises ``PcopyError`` when the copy cannot start and
    ``Interrupted`` on SIGINT/SIGTERM (after cleaning up).
    """
    options = Options(src=os.fspath(src), dst=os.fspath(dst), hash=hash, force=force,
                      follow_symlinks=follow_symlinks, manifest=manifest is not None, fsync=fsync,
                      hard_links=hard_links, owner=os.geteuid() == 0)
    return _run(options, jobs=jobs, backend=backend, manifest=manifest, progress=progress,
                keep_results=keep_results, on_result=on_result)


def filter_lines(exclude: Iterable[str] = (), include: Iterable[str] = (), exclude_from=None,
                 filters: Iterable[str] = ()) -> tuple:
    """gitignore-style lines from the convenience arguments: excludes, then re-includes, then ``filters``."""
    lines = list(exclude) + [f"!{p}" for p in include]
    if exclude_from is not None:
        lines += read_pattern_file(os.fspath(exclude_from))
    return tuple(lines + list(filters))


def sync(src, dst, *, delete: bool = False, checksum: bool = False, dry_run: bool = False,
         exclude: Iterable[str] = (), include: Iterable[str] = (), exclude_from=None, filters: Iterable[str] = (),
         delete_excluded: bool = False, max_delete: Optional[int] = None, link_dest: Iterable = (),
         hard_links: bool = True, jobs: Optional[int] = None, backend: str = "process", hash: str = "xxh128",
         manifest=None, progress: bool = False, follow_symlinks: bool = False, force: bool = False,
         fsync: bool = False, keep_results: bool = True, on_result: Optional[Callable] = None,
         stop_event=None) -> Report:
    """Make ``dst`` a copy of ``src`` (``pcopy sync``): copy what is new or changed, optionally delete the rest.

    ``link_dest`` directories (relative ones are taken relative to ``dst``,
    as rsync does) provide unchanged files as hard links. ``exclude`` and
    ``include`` are gitignore patterns; includes re-include what excludes
    dropped. Returns the Report; ``report.dry_run`` tells whether anything
    was really done.
    """
    dst = os.fspath(dst)
    roots = tuple(os.path.abspath(os.path.join(dst, os.fspath(d))) for d in link_dest)
    if max_delete is not None and max_delete < 0:
        raise UsageError("max_delete must be 0 or more")
    if dry_run and manifest is not None:
        raise UsageError("a dry run writes no manifest")
    options = Options(src=os.fspath(src), dst=dst, hash=hash, force=force, follow_symlinks=follow_symlinks,
                      manifest=manifest is not None, fsync=fsync, delete=delete or delete_excluded,
                      delete_excluded=delete_excluded, max_delete=max_delete, checksum=checksum, dry_run=dry_run,
                      hard_links=hard_links, link_dest=roots, owner=os.geteuid() == 0, replace=True,
                      filters=filter_lines(exclude, include, exclude_from, filters))
    return _run(options, jobs=jobs, backend=backend, manifest=manifest, progress=progress,
                keep_results=keep_results, on_result=on_result, stop_event=stop_event)


def watch(src, dst, *, stop_event=None, debounce: float = 0.05, poll: bool = False, poll_interval: float = 1.0,
          rescan_interval: Optional[float] = None, on_status: Optional[Callable] = None, delete: bool = False,
          checksum: bool = False, exclude: Iterable[str] = (), include: Iterable[str] = (), exclude_from=None,
          filters: Iterable[str] = (), delete_excluded: bool = False, max_delete: Optional[int] = None,
          link_dest: Iterable = (), hard_links: bool = True, jobs: Optional[int] = None, backend: str = "process",
          hash: str = "xxh128", follow_symlinks: bool = False, force: bool = False, fsync: bool = False,
          on_result: Optional[Callable] = None) -> Report:
    """Sync ``src`` to ``dst``, then keep ``dst`` following changes until ``stop_event`` is set.

    Takes ``sync``'s options (not ``dry_run``/``manifest``). Changes are
    debounced (``debounce`` seconds of quiet) into batches that go through the
    same planner, pool and worker as ``sync``. ``poll`` uses watchdog's polling
    observer (every ``poll_interval`` s) instead of inotify; it is also used
    when native events are unavailable. ``rescan_interval`` adds a periodic
    full check. ``on_status(WatchStatus)`` is called after each batch and a
    few times a second. Can run in a thread; in the main thread SIGINT/SIGTERM
    raise ``Interrupted`` (its ``report`` attribute holds the session's report).
    Returns the session's Report: totals over all batches; ``failures`` (and
    ``failed``) are the paths that still failed in the last batch.
    """
    from . import watcher  # imports watchdog: only in watch mode (not named "watch": that is this function)

    _check(backend, hash, None, jobs)
    if debounce < 0:
        raise UsageError("debounce must be 0 or more seconds")
    if poll_interval <= 0:
        raise UsageError("poll_interval must be more than 0 seconds")
    if rescan_interval is not None and rescan_interval <= 0:
        raise UsageError("rescan_interval must be more than 0 seconds")
    if max_delete is not None and max_delete < 0:
        raise UsageError("max_delete must be 0 or more")
    dst = os.fspath(dst)
    roots = tuple(os.path.abspath(os.path.join(dst, os.fspath(d))) for d in link_dest)
    options = Options(src=os.fspath(src), dst=dst, hash=hash, force=force, follow_symlinks=follow_symlinks,
                      fsync=fsync, delete=delete or delete_excluded, delete_excluded=delete_excluded,
                      max_delete=max_delete, checksum=checksum, hard_links=hard_links, link_dest=roots,
                      owner=os.geteuid() == 0, replace=True,
                      filters=filter_lines(exclude, include, exclude_from, filters))
    return watcher.watch(options, jobs=jobs, backend=backend, debounce=debounce, poll=poll,
                         poll_interval=poll_interval, rescan_interval=rescan_interval, on_result=on_result,
                         on_status=on_status, stop_event=stop_event)
