"""The public Python API: the CLI's commands as functions that return a report.

Every function validates its arguments through ``options`` (the same checks
the CLI gets, since the CLI calls these functions) and raises ``UsageError``
before doing anything when they make no sense.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

from . import options as _options
from .content.manifest import HASH_ALGORITHMS, ManifestWriter
from .errors import PcopyError, UsageError, describe
from .fs.scan import require_dir
from .integrity.report import IntegrityReport
from .mapping.worker import MapResult
from .model.results import Report
from .runtime.progress import make_progress

SourceArg = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


def copytree(src: SourceArg, dst, *, jobs: Optional[int] = None, backend: str = "process", hash: str = "xxh128",
             manifest=None, progress: bool = False, follow_symlinks: bool = False, force: bool = False,
             hard_links: bool = True, fsync: bool = False, sparse: bool = False, keep_results: bool = True,
             on_result: Optional[Callable] = None, transform=None, level: Optional[int] = None,
             scheduler=None, stop_event=None, checksum: bool = False, dry_run: bool = False,
             exclude: Iterable[str] = (), include: Iterable[str] = (), exclude_from=None,
             filters: Iterable[str] = (), link_dest: Iterable = (), **more: Any) -> Report:
    """Copy the tree at ``src`` into ``dst`` in parallel, checksumming as it writes.

    Like ``pcopy copy``: ``src`` is a directory (its contents go into ``dst``),
    a file (into ``dst/NAME`` when ``dst`` is a directory, else as ``dst``), or
    a list of them (each into ``dst/its name``). Files whose size and mtime
    already match at ``dst`` are skipped unless ``force``; an entry of another
    kind at ``dst`` is a failure (``sync`` replaces it). ``transform`` (a
    built-in or plugin name, ``"module:function"``, a
    ``pcopy.content.transforms.Transform`` or a top-level function
    ``f(src, dst, relpath)``) rewrites each file as it is written; ``level`` is
    its compression level. Per-file failures do not raise: they are in
    ``report.failures``. Raises ``PcopyError`` when the copy cannot start and
    ``Interrupted`` on SIGINT/SIGTERM (after cleaning up).

    ``scheduler``: a Dask scheduler address (``tcp://host:port``) or a
    ``distributed.Client``; the per-file work then runs on that cluster's
    workers, which must see ``src`` and ``dst`` at the same paths (needs
    ``pip install 'pcopy[dask]'``). ``**more`` takes the rsync-named options
    listed in ``RSYNC_OPTIONS`` (``update=True``, ``max_size=...``, ...).
    """
    fields = dict(jobs=jobs, backend=backend, hash=hash, manifest=manifest, follow_symlinks=follow_symlinks,
                  force=force, hard_links=hard_links, fsync=fsync, sparse=sparse, transform=transform, level=level,
                  checksum=checksum, dry_run=dry_run, exclude=exclude, include=include, exclude_from=exclude_from,
                  filters=filters, link_dest=link_dest, **_more(more))
    return _run(src, dst, fields, progress, keep_results, on_result, stop_event, scheduler)


def sync(src: SourceArg, dst, *, delete: bool = False, checksum: bool = False, dry_run: bool = False,
         exclude: Iterable[str] = (), include: Iterable[str] = (), exclude_from=None, filters: Iterable[str] = (),
         delete_excluded: bool = False, max_delete: Optional[int] = None, link_dest: Iterable = (),
         hard_links: bool = True, jobs: Optional[int] = None, backend: str = "process", hash: str = "xxh128",
         manifest=None, progress: bool = False, follow_symlinks: bool = False, force: bool = False,
         fsync: bool = False, sparse: bool = False, keep_results: bool = True, on_result: Optional[Callable] = None,
         stop_event=None, transform=None, level: Optional[int] = None, scheduler=None,
         **more: Any) -> Report:
    """Make ``dst`` a copy of ``src`` (``pcopy sync``): copy what is new or changed, optionally delete the rest.

    ``src`` is as for ``copytree``. ``link_dest`` directories (relative ones are
    taken relative to ``dst``, as rsync does) provide unchanged files as hard
    links. ``exclude`` and ``include`` are gitignore patterns; includes
    re-include what excludes dropped. Returns the Report; ``report.dry_run``
    tells whether anything was really done. ``**more``: see ``RSYNC_OPTIONS``.
    """
    fields = dict(delete=delete, checksum=checksum, dry_run=dry_run, exclude=exclude, include=include,
                  exclude_from=exclude_from, filters=filters, delete_excluded=delete_excluded, max_delete=max_delete,
                  link_dest=link_dest, hard_links=hard_links, jobs=jobs, backend=backend, hash=hash,
                  manifest=manifest, follow_symlinks=follow_symlinks, force=force, fsync=fsync, sparse=sparse,
                  transform=transform, level=level, replace=True, **_more(more))
    return _run(src, dst, fields, progress, keep_results, on_result, stop_event, scheduler)


# keyword -> meaning (rsync's names, underscores for dashes)
RSYNC_OPTIONS = {
    "size_only": "a file whose size matches is unchanged",
    "modify_window": "seconds within which mtimes are equal (default: what DST can store)",
    "update": "skip files that are newer in DST",
    "ignore_existing": "skip files that exist in DST",
    "existing": "only update files that exist in DST",
    "min_size": "skip files smaller than this many bytes",
    "max_size": "skip files larger than this many bytes",
    "one_file_system": "do not cross file-system boundaries",
    "prune_empty_dirs": "do not create directories that would stay empty",
    "exclude_if_present": "names (tuple) whose presence excludes a directory",
    "files_from": "a file listing the relative paths to copy",
    "recursive": "with files_from: copy listed directories whole",
    "backup": "keep replaced and deleted files as NAME + suffix",
    "backup_dir": "move replaced and deleted files into this directory (relative to dst)",
    "suffix": "the backup suffix",
    "partial": "keep an interrupted big file and resume it",
    "bwlimit": "bytes per second over all workers",
    "xattrs": "copy extended attributes and capabilities (default True)",
    "acls": "copy POSIX ACLs (default True)",
    "chmod": "rsync --chmod rules (a string such as 'D755,F644')",
    "chown": "'USER:GROUP' for every DST entry",
    "delete_anyway": "with delete: skip the guard against a mistaken DST",
    "track_renames": "with delete: rename DST files instead of copy + delete ('modtime' or True, 'hash')",
    "rsh": "with a [user@]host:path SRC or DST: the remote shell command (default 'ssh'), as rsync's -e",
    "remote_pcopy": "the pcopy command on the remote (default: pcopy on its PATH, then python3 -m pcopy)",
    "compress": "with a [user@]host:path SRC or DST: compress file data in transit (zstd, else zlib), rsync's -z",
}


def _more(more: dict) -> dict:
    unknown = sorted(set(more) - set(RSYNC_OPTIONS))
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r} (see pcopy.api.RSYNC_OPTIONS)")
    return more


def _run(src, dst, fields: dict, progress, keep_results, on_result, stop_event, scheduler) -> Report:
    from .transfer import engine
    from .transfer import sources as many

    sources = [os.fspath(s) for s in src] if isinstance(src, (list, tuple)) else [os.fspath(src)]
    if not sources:
        raise UsageError("no SRC given")
    rsh, remote_pcopy = fields.pop("rsh", None), fields.pop("remote_pcopy", None)
    compress = bool(fields.pop("compress", False))  # no effect on a local run, as rsync's -z
    from .remote import client as remote

    if any(map(remote.is_remote, sources + [os.fspath(dst)])):  # host:path: over ssh (pcopy.remote)
        return remote.run(sources, os.fspath(dst), fields, counters=make_progress(progress), keep_results=keep_results,
                          on_result=on_result, stop_event=stop_event, scheduler=scheduler, rsh=rsh,
                          remote_pcopy=remote_pcopy, compress=compress)
    options = _options.build(sources[0], dst, **fields)
    for extra in sources[1:]:
        _options.check_local(extra)
    _options.check_run(options.jobs, options.backend, scheduler)
    hooks = dict(counters=make_progress(progress), keep_results=keep_results, on_result=on_result,
                 stop_event=stop_event, scheduler=scheduler)
    if len(sources) > 1 or not os.path.isdir(sources[0]) or os.path.islink(sources[0].rstrip(os.sep) or "/"):
        if options.track_renames:  # its pre-pass pairs one SRC tree with one DST tree
            raise UsageError("--track-renames takes one SRC directory (run one sync per SRC)")
        return many.copy_sources(options, sources, **hooks)
    if options.track_renames:
        from .transfer import track

        return track.sync(options, **hooks)
    return engine.copy_tree(options, **hooks)


def watch(src, dst, *, stop_event=None, debounce: float = 0.05, poll: bool = False, poll_interval: float = 1.0,
          rescan_interval: Optional[float] = None, on_status: Optional[Callable] = None, delete: bool = False,
          checksum: bool = False, exclude: Iterable[str] = (), include: Iterable[str] = (), exclude_from=None,
          filters: Iterable[str] = (), delete_excluded: bool = False, max_delete: Optional[int] = None,
          link_dest: Iterable = (), hard_links: bool = True, jobs: Optional[int] = None, backend: str = "process",
          hash: str = "xxh128", follow_symlinks: bool = False, force: bool = False, fsync: bool = False,
          sparse: bool = False, transform=None, level: Optional[int] = None,
          on_result: Optional[Callable] = None, **more: Any) -> Report:
    """Sync ``src`` to ``dst``, then keep ``dst`` following changes until ``stop_event`` is set.

    Takes ``sync``'s options (not ``dry_run``/``manifest``). Changes are
    debounced (``debounce`` seconds of quiet) into batches that go through the
    same planner, pool and worker as ``sync``. ``poll`` uses watchdog's polling
    observer (every ``poll_interval`` s) instead of inotify; it is also used
    when native events are unavailable. ``rescan_interval`` adds a periodic
    full check. ``on_status(WatchStatus)`` is called after each batch and a
    few times a second. Can run in a thread. In the main thread SIGINT and
    SIGTERM end the session as ``stop_event`` does: it returns (files in flight
    are discarded, their temp files removed, and counted in
    ``report.discarded``); SIGHUP raises ``Interrupted`` (its ``report``
    attribute holds the session's report). Returns the session's Report:
    totals over all batches; ``failures`` (and ``failed``) are the paths that
    still failed in the last batch.
    """
    if debounce < 0:
        raise UsageError("debounce must be 0 or more seconds")
    if poll_interval <= 0:
        raise UsageError("poll_interval must be more than 0 seconds")
    if rescan_interval is not None and rescan_interval <= 0:
        raise UsageError("rescan_interval must be more than 0 seconds")
    fields = dict(delete=delete, checksum=checksum, exclude=exclude, include=include,
                  exclude_from=exclude_from, filters=filters, delete_excluded=delete_excluded,
                  max_delete=max_delete, link_dest=link_dest, hard_links=hard_links, jobs=jobs,
                  backend=backend, hash=hash, follow_symlinks=follow_symlinks, force=force, fsync=fsync,
                  sparse=sparse, transform=transform, level=level, replace=True, **_more(more))
    rsh, remote_pcopy = fields.pop("rsh", None), fields.pop("remote_pcopy", None)
    compress = bool(fields.pop("compress", False))
    from .remote import client as remote

    mirror = None
    if remote.is_remote(os.fspath(src)) or remote.is_remote(os.fspath(dst)):  # host:DST: over ssh
        from .remote.watch import RemoteMirror

        setting = remote.settle(os.fspath(src), os.fspath(dst), fields)
        if not setting.push:
            raise remote.not_yet(setting.arg, "watch (the events come from this machine: watch a local SRC)")
        options = setting.options
        mirror = RemoteMirror(setting, rsh, remote_pcopy, compress)
    else:
        options = _options.build(src, dst, **fields)
    from .watcher import session as watcher  # imports watchdog: only in watch mode

    return watcher.watch(options, debounce=debounce, poll=poll, poll_interval=poll_interval,
                         rescan_interval=rescan_interval, on_result=on_result, on_status=on_status,
                         stop_event=stop_event, mirror=mirror)


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
    from .mapping import run

    _options.check_local(os.fspath(root))  # host:path: remote map is not built
    return run.map_files(fn, root, jobs=jobs, backend=backend, exclude=exclude, counters=make_progress(progress))


def hash_tree(root, output=None, *, algo: str = "xxh128", jobs: Optional[int] = None, backend: str = "process",
              cache=True, progress: bool = False, on_difference: Optional[Callable] = None,
              on_warning: Optional[Callable] = None) -> IntegrityReport:
    """Write an ``xxhsum -H2`` (or, with ``algo='sha256'``, ``sha256sum``) manifest of ``root``.

    ``output``: a path (written like a shell redirect: a device or FIFO in
    place, a symlink followed, a regular file through a temp name renamed when
    complete), a binary file object, or None to only return the report. Lines
    are in byte order of the relative path. ``cache``: True (default
    location), False, or the path of a cache file.
    """
    _options.check_local(os.fspath(root))  # host:path: remote hashing is not built yet
    from .integrity import tree

    _options.check_run(jobs, backend)
    _options.check_algo(algo, HASH_ALGORITHMS)
    root = os.fspath(root)
    writer: Optional[ManifestWriter] = None
    skip: frozenset = frozenset()
    if output is None:
        def write(data):
            return None
    elif isinstance(output, (str, bytes, os.PathLike)):
        require_dir(root, "root")
        writer = ManifestWriter.to_path(os.fsdecode(output), os.urandom(4).hex())
        skip = _paths_below(root, (writer.output.real_path, writer.output.tmp))
        write = writer.write_bytes
    else:
        write = output.write
    try:
        report = tree.hash_tree(root, write, algo=algo, jobs=jobs, backend=backend, cache=cache,
                                counters=make_progress(progress), on_difference=on_difference,
                                on_warning=on_warning, skip=skip)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is not None:
        writer.close()
    return report


def _paths_below(root: str, paths) -> frozenset:
    """Relative paths of those ``paths`` that lie inside ``root`` (never list the manifest being written)."""
    real_root = os.path.realpath(root).rstrip(os.sep) + os.sep
    found = set()
    for path in paths:
        if path is not None:
            real = os.path.realpath(path)
            if real.startswith(real_root):
                found.add(os.path.relpath(real, real_root))
    return frozenset(found)


def verify(src, dst=None, *, manifest=None, jobs: Optional[int] = None, backend: str = "process", cache=True,
           progress: bool = False, on_difference: Optional[Callable] = None,
           on_warning: Optional[Callable] = None, rsh: Optional[str] = None,
           remote_pcopy: Optional[str] = None) -> IntegrityReport:
    """Compare two trees by content, or (``manifest=FILE``, ``src`` = ROOT) a tree against a manifest.

    Returns an ``IntegrityReport``; ``report.exit_code`` is 0 when identical,
    4 when differences were found, 3 when some files could not be checked.
    ``manifest`` may be a path, ``"-"`` (stdin) or a binary file object.
    One side (or ROOT) may be ``[user@]host:path``: that machine hashes its
    own files (``rsh``, ``remote_pcopy``: as for copy).
    """
    _options.check_run(jobs, backend)
    common = dict(jobs=jobs, backend=backend, cache=cache, counters=make_progress(progress),
                  on_difference=on_difference, on_warning=on_warning)
    remote = [p for p in (src, dst) if p is not None and _remote(os.fspath(p))]
    if manifest is None:
        if dst is None:
            raise UsageError("verify needs SRC and DST, or a manifest and a ROOT")
        if remote:
            from .remote import verify as remote_verify

            return remote_verify.verify_trees(os.fspath(src), os.fspath(dst), rsh=rsh, remote_pcopy=remote_pcopy,
                                              **common)
        from .integrity import compare

        return compare.verify_trees(os.fspath(src), os.fspath(dst), **common)
    if dst is not None:
        raise UsageError("with a manifest, give only ROOT")
    if remote:
        from .remote import verify as remote_verify

        remote_common = dict(jobs=jobs, cache=cache, on_difference=on_difference, on_warning=on_warning, rsh=rsh,
                             remote_pcopy=remote_pcopy)
        return _with_manifest(manifest, lambda stream, name: remote_verify.verify_manifest(
            stream, os.fspath(src), manifest_name=name, **remote_common))
    from .integrity.manifest import verify_manifest

    return _with_manifest(manifest, lambda stream, name: verify_manifest(stream, os.fspath(src), manifest_name=name,
                                                                          **common))


def _remote(path: str) -> bool:
    from .remote import transport

    return transport.parse(path) is not None


def _with_manifest(manifest, check: Callable):
    """``check(binary stream, name)`` on a manifest given as a file object, ``"-"`` or a path."""
    if hasattr(manifest, "read"):
        return check(manifest, "manifest")
    name = os.fsdecode(manifest)
    if name == "-":
        import sys

        return check(sys.stdin.buffer, "<stdin>")
    try:
        stream = open(name, "rb")
    except OSError as exc:
        raise PcopyError(f"{name}: cannot read manifest: {describe(exc)}") from None
    with stream:
        return check(stream, name)
