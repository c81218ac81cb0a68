"""Options: what a copy, sync or watch should do, and the one place they are checked.

``Options`` travels, pickled, to every worker, so it holds only plain values.
``build`` makes one from keyword arguments and ``validate`` checks it; the
Python API calls them and the CLI calls the API, so a rule written here holds
for both. ``check_run`` checks what every command shares (jobs, backend,
scheduler).
"""

from __future__ import annotations

import os
import pickle
import re
from typing import NamedTuple, Optional

from .content import digest, transforms
from .errors import UsageError, describe
from .fs import filters
from .model.batching import BATCH_BYTES, BATCH_FILES, RANGE_BYTES
from .model.modes import parse_chmod
from .runtime import inner
from .runtime.backend import BACKENDS, check_scheduler_address

COPY_HASHES = ("xxh128", "none")  # what copy/sync --hash takes


class Options(NamedTuple):
    """Everything a run needs (``options._replace(field=value)`` makes a changed copy)."""

    src: str
    dst: str
    hash: str = "xxh128"  # or "none": then the kernel copies (copy_file_range)
    force: bool = False
    follow_symlinks: bool = False
    manifest: Optional[str] = None  # path of the manifest: skipped files must be hashed too
    fsync: bool = False
    token: str = "0"  # names this run's temporary files
    batch_files: int = BATCH_FILES
    batch_bytes: int = BATCH_BYTES
    range_bytes: int = RANGE_BYTES  # files this big are copied in ranges by several workers; 0: never
    bundle_scale: int = 1  # a bundle carries up to this many batches' worth of files and bytes
    # sync
    delete: bool = False
    delete_excluded: bool = False
    max_delete: Optional[int] = None
    checksum: bool = False  # decide "changed" by content instead of size + mtime
    dry_run: bool = False
    hard_links: bool = False
    link_dest: tuple = ()  # absolute paths
    owner: bool = False  # preserve uid/gid (numeric); set when running as root
    replace: bool = False  # replace a DST entry of another kind (sync) instead of failing (copy)
    filters: tuple = ()  # gitignore-style lines, in order ("!pat" re-includes)
    sparse: bool = False  # write runs of zeros as holes
    # Transforms: a name, "module:function", a Transform or a top-level function
    # (pickled by reference); None copies bytes unchanged.
    transform: object = None
    transform_level: Optional[int] = None
    jobs: Optional[int] = None  # workers (None: one per CPU, or the cluster's size)
    backend: str = "process"
    # threads per worker process, raised and lowered while the run goes (runtime.inner); set by
    # validate: the default -j gets them, a -j the user fixed, threads, a cluster, --bwlimit do not
    inner_threads: int = 1
    # what counts as changed (rsync's meanings)
    size_only: bool = False  # same size = unchanged
    modify_window_ns: int = -1  # mtimes this close are equal; -1: what DST can store (probed)
    update: bool = False  # -u: skip files newer in DST
    ignore_existing: bool = False  # skip files that exist in DST
    existing: bool = False  # only update what exists in DST (create nothing)
    # what is copied
    min_size: int = -1
    max_size: int = -1
    one_file_system: bool = False  # -x
    prune_empty_dirs: bool = False  # -m
    exclude_if_present: tuple = ()  # names whose presence excludes a directory
    files_from: Optional[str] = None  # a file listing relpaths below SRC ("-": stdin)
    recursive: bool = False  # with files_from: listed directories are copied whole (-r)
    # what happens to what is replaced or deleted
    backup: bool = False
    backup_dir: Optional[str] = None  # absolute
    suffix: str = "~"
    delete_anyway: bool = False  # skip the guard against a mistaken DST (see transfer.engine.preflight)
    track_renames: str = ""  # "modtime" or "hash": rename DST files instead of copy + delete (transfer.track)
    partial: bool = False  # keep an interrupted big file and resume it
    bwlimit: int = 0  # bytes/s over all workers; 0: no limit
    # metadata
    xattrs: bool = True  # extended attributes and file capabilities
    acls: bool = True  # POSIX ACLs
    chmod: tuple = ()  # model.modes rules
    chown: tuple = (-1, -1)  # uid, gid (-1: keep the source's)
    dst_modes: bool = True  # DST stores permission bits (not FAT): found by the engine's probe
    dst_unstored: frozenset = frozenset()  # attribute namespaces DST does not store ("user", "acl"): the probe


def filter_lines(exclude=(), include=(), exclude_from=None, filters_=()) -> tuple:
    """gitignore-style lines from the convenience arguments: excludes, then re-includes, then ``filters``."""
    if isinstance(exclude, str):
        exclude = (exclude,)
    if isinstance(include, str):
        include = (include,)
    lines = list(exclude) + [f"!{p}" for p in include]
    if exclude_from is not None:
        lines += filters.read_pattern_file(os.fspath(exclude_from))
    return tuple(lines + list(filters_))


def build(src, dst, *, link_dest=(), exclude=(), include=(), exclude_from=None, filters=(), manifest=None,
          level=None, delete_excluded=False, delete=False, modify_window=None, backup_dir=None, suffix=None,
          chmod=None, chown=None, files_from=None, **fields) -> Options:
    """Options from API-style keyword arguments, validated."""
    dst = os.fspath(dst)
    roots = tuple(os.path.abspath(os.path.join(dst, os.fspath(d))) for d in link_dest)
    if backup_dir is not None:
        fields["backup"] = True
        backup_dir = os.path.abspath(os.path.join(dst, os.fspath(backup_dir)))
    if suffix is None:
        suffix = "" if backup_dir is not None else "~"
    options = Options(src=os.fspath(src), dst=dst, link_dest=roots,
                      filters=filter_lines(exclude, include, exclude_from, filters),
                      manifest=os.fspath(manifest) if manifest is not None else None,
                      transform_level=level, delete=delete or delete_excluded, delete_excluded=delete_excluded,
                      owner=os.geteuid() == 0, backup_dir=backup_dir, suffix=suffix,
                      modify_window_ns=-1 if modify_window is None else _window_ns(modify_window),
                      chmod=_chmod_rules(chmod), chown=_owner_ids(chown),
                      files_from=os.fspath(files_from) if files_from is not None else None, **fields)
    return validate(options)


def _window_ns(seconds) -> int:
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise UsageError(f"--modify-window must be a number of seconds, not {seconds!r}") from None
    if not 0 <= value < float("inf"):
        raise UsageError("--modify-window must be 0 or more seconds")
    return int(value * 1e9)


def _chmod_rules(spec) -> tuple:
    if spec is None or spec == ():
        return ()
    if isinstance(spec, tuple):
        return spec
    try:
        return parse_chmod(str(spec))
    except ValueError as exc:
        raise UsageError(f"--chmod {spec!r}: {exc}") from None


def _owner_ids(spec) -> tuple:
    """``USER:GROUP``, ``USER``, ``:GROUP`` (names or numbers) as (uid, gid), -1 where not given."""
    if spec is None or spec == ():
        return (-1, -1)
    if isinstance(spec, tuple):
        return spec
    user, _, group = str(spec).partition(":")
    uid = gid = -1
    try:
        if user:
            import pwd

            uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        if group:
            import grp

            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise UsageError(f"--chown {spec!r}: no such user or group") from None
    return (uid, gid)


REMOTE = re.compile(r"^(?:[^@/:]+@)?\[?[^/:\]]+\]?:")


def check_local(path: str) -> None:
    """``host:path`` and ``user@host:path`` name another machine, as in rsync and scp: refused for now."""
    if REMOTE.match(path) and not path.startswith(("/", "./", "../")):
        raise UsageError(f"{path}: remote paths (host:path) are not supported yet; "
                         f"for a local name with a colon write ./{path}")


def check_run(jobs: Optional[int] = None, backend: str = "process", scheduler=None) -> None:
    """What every command shares: worker count, backend, scheduler address."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise UsageError(f"jobs must be at least 1, not {jobs!r}")
    if isinstance(scheduler, str):
        check_scheduler_address(scheduler)


def check_algo(name: str, allowed=digest.ALGORITHMS) -> None:
    if name not in allowed:
        raise UsageError(f"unknown hash {name!r} (choose from {', '.join(allowed)})")


def validate(options: Options, scheduler=None) -> Options:
    """UsageError for options that make no sense (together); returns them ready to run."""
    check_run(options.jobs, options.backend, scheduler)
    check_algo(options.hash, COPY_HASHES)
    if options.manifest is not None and options.hash == "none":
        raise UsageError("--manifest needs checksums; drop --hash none")
    if options.dry_run and options.manifest is not None:
        raise UsageError("a dry run writes no manifest; drop --manifest or --dry-run")
    if options.max_delete is not None and (not isinstance(options.max_delete, int) or options.max_delete < 0):
        raise UsageError("--max-delete must be 0 or more")
    for name in ("src", "dst"):
        if not getattr(options, name):
            raise UsageError(f"{name.upper()} must not be empty")
        check_local(getattr(options, name))
    if options.min_size >= 0 and options.max_size >= 0 and options.min_size > options.max_size:
        raise UsageError("--min-size is larger than --max-size: nothing would be copied")
    if options.partial and options.transform is not None:
        raise UsageError("--partial cannot resume a --transform output; drop one of them")
    if options.bwlimit < 0:
        raise UsageError("--bwlimit must be 0 or more")
    filters.check_patterns(options.filters)
    _check_transform(options)
    adapts = (options.jobs is None and options.backend == "process" and scheduler is None
              and not options.bwlimit and options.transform is None)
    return _check_track_renames(options._replace(inner_threads=inner.LIMIT if adapts else 1))


TRACK_RENAMES_BY = ("modtime", "hash")


def _check_track_renames(options: Options) -> Options:
    """--track-renames renames what --delete would remove; it cannot keep a backup of it or a transformed name."""
    by = options.track_renames
    if by is True:
        by = "modtime"
    if not by:
        return options._replace(track_renames="")
    if by not in TRACK_RENAMES_BY:
        raise UsageError(f"--track-renames-by must be one of {', '.join(TRACK_RENAMES_BY)}, not {by!r}")
    clashes = [name for name, on in (("--backup", options.backup), ("--transform", options.transform is not None),
                                     ("--existing", options.existing), ("--ignore-existing", options.ignore_existing),
                                     ("--files-from", options.files_from is not None)) if on]
    if not options.delete:
        raise UsageError("--track-renames needs --delete (it renames what --delete would remove)")
    if clashes:
        raise UsageError(f"--track-renames cannot be combined with {clashes[0]}")
    return options._replace(track_renames=by)


def _check_transform(options: Options) -> None:
    """A bad transform fails before any work: it must resolve, and pickle for worker processes."""
    if options.transform is None:
        if options.transform_level is not None:
            raise UsageError("--level needs --transform")
        return
    transforms.resolve(options.transform, options.transform_level)  # raises UsageError
    if options.backend == "process" and not isinstance(options.transform, str):
        try:
            pickle.dumps(options.transform)
        except Exception as exc:
            raise UsageError(f"the process backend needs a transform it can pickle (a top-level function, "
                             f"or a 'module:function' name): {describe(exc)}") from None
