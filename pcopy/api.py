"""The public Python API: the CLI's commands as functions that return a Report."""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator, Optional

from . import engine, mapping, transforms
from .errors import PcopyError, UsageError, describe
from .filters import read_pattern_file
from .hashing import ALGORITHMS
from .mapping import MapResult
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


def _run(options: Options, *, jobs, backend, manifest, progress, keep_results, on_result, stop_event=None,
         scheduler=None) -> Report:
    _check(backend, options.hash, manifest, jobs)
    return engine.copy_tree(options, jobs=jobs, backend=backend, counters=make_progress(progress),
                            manifest_path=os.fspath(manifest) if manifest is not None else None,
                            keep_results=keep_results, on_result=on_result, stop_event=stop_event,
                            scheduler=scheduler)


def copytree(src, dst, *, jobs: Optional[int] = None, backend: str = "process", hash: str = "xxh128",
             manifest=None, progress: bool = False, follow_symlinks: bool = False, force: bool = False,
             hard_links: bool = False, fsync: bool = False, sparse: bool = False, keep_results: bool = True,
             on_result: Optional[Callable] = None, transform=None, level: Optional[int] = None,
             scheduler=None) -> Report:
    """Copy the tree at ``src`` into ``dst`` in parallel, checksumming as it writes.

    Like ``pcopy copy``: files whose size and mtime already match at ``dst``
    are skipped unless ``force``; an entry of another kind at ``dst`` is a
    failure (``sync`` replaces it). ``transform`` (a built-in or plugin name,
    ``"module:function"``, a ``pcopy.transforms.Transform`` or a top-level
    function ``f(src, dst, relpath)``) rewrites each file as it is written;
    ``level`` is its compression level. Per-file failures do not raise: they are in
    ``report.failures``. Raises ``PcopyError`` when the copy cannot start and
    ``Interrupted`` on SIGINT/SIGTERM (after cleaning up).

    ``scheduler``: a Dask scheduler address (``tcp://host:port``) or a
    ``distributed.Client``; the per-file work then runs on that cluster's
    workers, which must see ``src`` and ``dst`` at the same paths (needs
    ``pip install 'pcopy[dask]'``).
    """
    options = Options(src=os.fspath(src), dst=os.fspath(dst), hash=hash, force=force,
                      follow_symlinks=follow_symlinks, manifest=manifest is not None, fsync=fsync,
                      sparse=sparse, hard_links=hard_links, owner=os.geteuid() == 0,
                      **_transform_options(transform, level, backend))
    return _run(options, jobs=jobs, backend=backend, manifest=manifest, progress=progress,
                keep_results=keep_results, on_result=on_result, scheduler=scheduler)


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
         fsync: bool = False, sparse: bool = False, keep_results: bool = True, on_result: Optional[Callable] = None,
         stop_event=None, transform=None, level: Optional[int] = None, scheduler=None) -> Report:
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
                      manifest=manifest is not None, fsync=fsync, sparse=sparse, delete=delete or delete_excluded,
                      delete_excluded=delete_excluded, max_delete=max_delete, checksum=checksum, dry_run=dry_run,
                      hard_links=hard_links, link_dest=roots, owner=os.geteuid() == 0, replace=True,
                      filters=filter_lines(exclude, include, exclude_from, filters),
                      **_transform_options(transform, level, backend))
    return _run(options, jobs=jobs, backend=backend, manifest=manifest, progress=progress,
                keep_results=keep_results, on_result=on_result, stop_event=stop_event, scheduler=scheduler)


def _transform_options(transform, level: Optional[int], backend: str) -> dict:
    """Options fields for ``transform``, checked here so a bad one fails before any work."""
    if transform is None:
        if level is not None:
            raise UsageError("level needs a transform")
        return {}
    transforms.resolve(transform, level)  # raises UsageError
    if backend == "process" and not isinstance(transform, str):
        import pickle

        try:
            pickle.dumps(transform)
        except Exception as exc:
            raise UsageError(f"the process backend needs a transform it can pickle (a top-level function, "
                             f"or a 'module:function' name): {describe(exc)}") from None
    return {"transform": transform, "transform_level": level}


def map_files(fn, root, *, jobs: Optional[int] = None, backend: str = "process", exclude=(),
              progress: bool = False) -> Iterator[MapResult]:
    """Run ``fn(path)`` on every regular file under ``root`` in parallel; yield a MapResult per file.

    Results come as they complete (not in tree order), with bounded memory for
    any tree size. ``fn`` is a top-level function (pickled by reference) or a
    ``"module:function"`` name; lambdas and local functions need
    ``backend="thread"``. A file whose call raises gets ``MapResult.error``
    (one line) and the run goes on. ``exclude``: gitignore-style patterns.
    Under the process backend a result that cannot be pickled becomes an error.
    """
    return mapping.map_files(fn, root, jobs=jobs, backend=backend, exclude=exclude,
                             counters=make_progress(progress))


# --------------------------------------------------------------------------- integrity (hash, verify)


def _integrity_args(backend: str, jobs: Optional[int]) -> None:
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if jobs is not None and jobs < 1:
        raise UsageError("jobs must be at least 1")


def hash_tree(root, output=None, *, algo: str = "xxh128", jobs: Optional[int] = None, backend: str = "process",
              cache=True, progress: bool = False, on_difference: Optional[Callable] = None,
              on_warning: Optional[Callable] = None):
    """Write an ``xxhsum -H2`` (or, with ``algo='sha256'``, ``sha256sum``) manifest of ``root``.

    ``output``: a path (written to a temporary name, renamed when complete),
    a binary file object, or None to only return the report. Lines are in
    byte order of the relative path. ``cache``: True (default location),
    False, or the path of a cache file. Returns an ``IntegrityReport``.
    """
    from . import integrity as _verify
    from .hashing import HASH_ALGORITHMS, ManifestWriter

    _integrity_args(backend, jobs)
    if algo not in HASH_ALGORITHMS:
        raise UsageError(f"unknown algo {algo!r} (choose from {', '.join(HASH_ALGORITHMS)})")
    root = os.fspath(root)
    writer, skip = None, frozenset()
    if output is None:
        def write(data):
            return None
    elif isinstance(output, (str, bytes, os.PathLike)):
        path = os.fsdecode(output)
        real, real_root = os.path.realpath(path), os.path.realpath(root)
        if real.startswith(real_root.rstrip(os.sep) + os.sep):  # never list the manifest being written
            rel = os.path.relpath(real, real_root)
            skip = frozenset({rel, rel + ".pcopy-tmp"})
        try:
            writer = ManifestWriter(path)
        except OSError as exc:
            raise PcopyError(f"{path}: cannot write manifest: {describe(exc)}") from None
        write = writer.write_bytes
    else:
        write = output.write
    try:
        report = _verify.hash_tree(root, write, algo=algo, jobs=jobs, backend=backend, cache=cache,
                                   counters=make_progress(progress), on_difference=on_difference,
                                   on_warning=on_warning, skip=skip)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is not None:
        writer.close()
    return report


def verify(src, dst=None, *, manifest=None, jobs: Optional[int] = None, backend: str = "process", cache=True,
           progress: bool = False, on_difference: Optional[Callable] = None,
           on_warning: Optional[Callable] = None):
    """Compare two trees by content, or (``manifest=FILE``, ``src`` = ROOT) a tree against a manifest.

    Returns an ``IntegrityReport``; ``report.exit_code`` is 0 when identical,
    4 when differences were found, 3 when some files could not be checked.
    ``manifest`` may be a path, ``"-"`` (stdin) or a binary file object.
    """
    from . import integrity as _verify

    _integrity_args(backend, jobs)
    counters = make_progress(progress)
    common = dict(jobs=jobs, backend=backend, cache=cache, counters=counters, on_difference=on_difference,
                  on_warning=on_warning)
    if manifest is None:
        if dst is None:
            raise UsageError("verify needs SRC and DST, or a manifest and a ROOT")
        return _verify.verify_trees(os.fspath(src), os.fspath(dst), **common)
    if dst is not None:
        raise UsageError("with a manifest, give only ROOT")
    if hasattr(manifest, "read"):
        return _verify.verify_manifest(manifest, os.fspath(src), manifest_name="manifest", **common)
    name = os.fsdecode(manifest)
    if name == "-":
        import sys

        return _verify.verify_manifest(sys.stdin.buffer, os.fspath(src), manifest_name="<stdin>", **common)
    try:
        stream = open(name, "rb")
    except OSError as exc:
        raise PcopyError(f"{name}: cannot read manifest: {describe(exc)}") from None
    with stream:
        return _verify.verify_manifest(stream, os.fspath(src), manifest_name=name, **common)


def watch(src, dst, *, stop_event=None, debounce: float = 0.05, poll: bool = False, poll_interval: float = 1.0,
          rescan_interval: Optional[float] = None, on_status: Optional[Callable] = None, delete: bool = False,
          checksum: bool = False, exclude: Iterable[str] = (), include: Iterable[str] = (), exclude_from=None,
          filters: Iterable[str] = (), delete_excluded: bool = False, max_delete: Optional[int] = None,
          link_dest: Iterable = (), hard_links: bool = True, jobs: Optional[int] = None, backend: str = "process",
          hash: str = "xxh128", follow_symlinks: bool = False, force: bool = False, fsync: bool = False,
          sparse: bool = False, transform=None, level: Optional[int] = None,
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
                      owner=os.geteuid() == 0, replace=True, sparse=sparse,
                      filters=filter_lines(exclude, include, exclude_from, filters),
                      **_transform_options(transform, level, backend))
    return watcher.watch(options, jobs=jobs, backend=backend, debounce=debounce, poll=poll,
                         poll_interval=poll_interval, rescan_interval=rescan_interval, on_result=on_result,
                         on_status=on_status, stop_event=stop_event)
