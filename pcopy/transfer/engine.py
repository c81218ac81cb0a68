"""The only module that knows the whole flow of a copy or sync.

    preflight (SRC/DST/output paths; nothing written) ─► scheduler ─► create DST ─► manifest
       │
    Run.produce: March(SRC, DST) ─► plan_directory ─► batches ─► bundles ─► BoundedPool ─► worker.run_bundle
       │                                                                        │ one Result per task
       │   Consumer ◄───────────────────────────────────────────────────────────┘
       │     ├─► Report (counts, failures)   ├─► manifest lines (streamed)
       │     └─► progress counters           └─► on_result callback (-v, --log-file)
       ▼
    finish: -H hard links, then --delete (refused past --max-delete, skipped after
    failures), then directory modes and times, deepest first.

Data flows one way. The walker runs in this process and is pulled only when
the pool has a free slot, so at most ``max_in_flight`` bundles exist beyond
the directory being planned: memory is flat for any tree size. Watch mode
calls ``copy_tree`` with ``targets`` (directories to re-read) and its own pool.
"""

from __future__ import annotations

import functools
import os
import stat
import threading
import time
from typing import Callable, Optional

from ..content.manifest import ManifestWriter
from ..errors import Interrupted, PcopyError, describe
from ..fs import filters, probe, temps
from ..fs.scan import require_dir
from ..model.results import Report
from ..options import Options
from ..runtime.pool import ABORT_GRACE, BoundedPool, make_pool
from ..runtime.progress import Counters
from ..runtime.signals import SignalGuard
from . import finish, worker
from .consumer import Consumer
from .run import Run


def _inside(path: str, root: str) -> bool:
    return path.startswith(root.rstrip(os.sep) + os.sep)


def preflight(options: Options, keep: Optional[Callable] = None) -> bool:
    """Refuse impossible runs before touching anything; True when DST does not exist yet (``keep``:
    the run's filter, which decides what --delete may delete)."""
    src, dst = options.src, options.dst
    require_dir(src, "source")
    real_src, real_dst = os.path.realpath(src), os.path.realpath(dst)
    if real_src == real_dst:
        raise PcopyError(f"{dst}: source and destination are the same directory")
    if _inside(real_dst, real_src):
        raise PcopyError(f"{dst}: destination is inside the source")
    if options.delete and _inside(real_src, real_dst):
        raise PcopyError(f"{src}: source is inside the destination; --delete would remove it")
    for root in options.link_dest:
        if not os.path.isdir(root):
            raise PcopyError(f"{root}: --link-dest directory does not exist")
    dst_is_new = not os.path.lexists(dst)
    if not dst_is_new and not os.path.isdir(dst):
        raise PcopyError(f"{dst}: destination exists and is not a directory")
    if options.delete and not options.delete_anyway and not dst_is_new:
        _guard_mistaken_dst(src, dst, None if options.delete_excluded else keep)
    check_manifest_path(options, dst_is_new, real_dst)
    return dst_is_new


def _guard_mistaken_dst(src: str, dst: str, keep: Optional[Callable]) -> None:
    """rsync's habit ``rsync -a photos backup`` copies into backup/photos; pcopy copies the *contents* of
    SRC. With --delete that habit would delete backup/photos, the earlier copy: refuse when DST holds an
    entry named like SRC that SRC itself lacks and the filters do not protect."""
    name = os.path.basename(os.path.realpath(src))
    try:
        if os.path.lexists(os.path.join(src, name)):
            return
        is_dir = stat.S_ISDIR(os.lstat(os.path.join(dst, name)).st_mode)
    except OSError:
        return  # DST has no such entry (or it cannot be seen: the run reports that itself)
    if keep is not None and not keep(name, is_dir):
        return  # excluded: --delete leaves it alone
    target = os.path.join(dst, name)
    raise PcopyError(f"{dst}: refusing --delete: it holds '{name}' but {src} has no '{name}', so --delete "
                     f"would delete {target}; pcopy copies the contents of SRC: did you mean "
                     f"'pcopy sync {src} {target} --delete'? (--delete-anyway to go ahead)")


def check_manifest_path(options: Options, dst_is_new: bool, real_dst: str) -> None:
    if options.manifest is None:
        return
    parent = os.path.dirname(os.path.abspath(options.manifest))
    if not os.path.isdir(parent) and not (dst_is_new and os.path.realpath(parent) == real_dst):
        raise PcopyError(f"{options.manifest}: cannot write manifest: its directory does not exist")
    if os.path.isdir(options.manifest):
        raise PcopyError(f"{options.manifest}: cannot write manifest: Is a directory")


def preflight_file(options: Options, single: tuple) -> None:
    """A single-file run (``single`` = (source name, DST name) in options.src / options.dst)."""
    src_name, dst_name = single
    path = os.path.join(options.src, src_name)
    try:
        st = os.stat(path) if options.follow_symlinks else os.lstat(path)
    except OSError as exc:
        raise PcopyError(f"{path}: cannot read source: {describe(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise PcopyError(f"{path}: source is a directory")  # callers route directories to copy_tree
    require_dir(options.dst, "destination directory")  # cp: the directory of a new name must exist
    target = os.path.join(options.dst, dst_name)
    try:
        if os.path.samefile(path, target) and not os.path.islink(target):
            raise PcopyError(f"{target}: source and destination are the same file")
    except FileNotFoundError:
        pass
    check_manifest_path(options, False, os.path.realpath(options.dst))


def fit_to_destination(options: Options) -> Options:
    """What DST's file system can store decides how it is compared: a FAT stick keeps 2-second times
    and no permission bits or xattrs, so a second sync to it must not recopy (or re-itemize)
    everything (fs.probe).

    A dry run must not write, so it guesses from the file-system type instead of probing.
    """
    if options.modify_window_ns >= 0 and not options.owner:
        return options
    if options.dry_run or not os.path.isdir(options.dst):
        kind = probe.fs_type(options.dst)
        if kind in probe.COARSE_TYPES:
            return options._replace(modify_window_ns=max(options.modify_window_ns, probe.FAT_WINDOW_NS),
                                    dst_modes=False, owner=False, dst_unstored=probe.ALL_NAMESPACES)
        return options._replace(modify_window_ns=max(options.modify_window_ns, 0))
    try:
        caps = probe.probe(options.dst, options.token)
    except OSError:
        return options._replace(modify_window_ns=max(options.modify_window_ns, 0))  # the copy will say why
    window = caps.modify_window_ns if options.modify_window_ns < 0 else options.modify_window_ns
    return options._replace(modify_window_ns=window, dst_modes=caps.modes, owner=options.owner and caps.owners,
                            dst_unstored=probe.unstored(caps))


def _create_dst(dst: str) -> None:
    try:
        os.makedirs(dst, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise PcopyError(f"{dst}: cannot create destination: {describe(exc)}") from None


def hidden_manifest(options: Options, manifest: Optional[ManifestWriter]) -> frozenset:
    """The manifest's own path when it lies inside DST: the run neither copies over nor deletes it."""
    if manifest is None:
        return frozenset()
    real, root = manifest.output.real_path, os.path.realpath(options.dst)
    return frozenset({os.path.relpath(real, root)}) if _inside(real, root) else frozenset()


SCHEDULER_BUNDLE_SCALE = 4  # a cluster task costs milliseconds (scheduler round trips): 4x bigger bundles


def copy_tree(options: Options, *, counters: Optional[Counters] = None, keep_results: bool = False,
              on_result: Optional[Callable] = None, stop_event: Optional[threading.Event] = None,
              targets: Optional[list] = None, pool: Optional[BoundedPool] = None, scheduler=None,
              manifest: Optional[ManifestWriter] = None, single: Optional[tuple] = None) -> Report:
    """Copy or sync options.src into options.dst (validated Options); see the module docstring.

    ``targets``: [(reldir, recursive)] to re-read only those directories (watch
    mode); default the whole tree. ``pool``: a long-lived BoundedPool to reuse
    (the caller closes it); default a new one for this run. ``scheduler``: run
    the workers on the Dask cluster at that address. ``manifest``: a writer the
    caller owns (several SRCs share one manifest). ``single``: (source name,
    DST name) to copy one file of options.src into options.dst.
    """
    started = time.monotonic()
    counters = counters if counters is not None else Counters()
    listed = filters.read_files_from(options.files_from) if options.files_from else None
    keep = filters.restrict(filters.make_filter(options.filters), options.src, options.exclude_if_present,
                            listed, options.recursive)
    if single is not None:
        preflight_file(options, single)
        dst_is_new = False
    else:
        dst_is_new = preflight(options, keep)
    options = options._replace(token=os.urandom(4).hex())  # names (and later finds) this run's temp files
    if scheduler is not None:  # remote workers do not share our working directory; Dask has its own threads
        options = options._replace(src=os.path.abspath(options.src), dst=os.path.abspath(options.dst),
                                   inner_threads=1, bundle_scale=SCHEDULER_BUNDLE_SCALE)
    own_pool = pool is None
    if pool is None:  # before DST is created: a scheduler that cannot be reached must leave nothing behind
        pool = make_pool(options.backend, options.jobs, scheduler)
    own_manifest = manifest is None
    try:
        if dst_is_new and not options.dry_run:
            _create_dst(options.dst)
        if scheduler is not None:
            pool.backend.check_roots(options.src, options.dst)
        if options.manifest is not None and manifest is None:
            manifest = ManifestWriter.to_path(options.manifest, options.token)
        options = fit_to_destination(options)
    except BaseException:
        if own_pool:
            pool.abort(0)
        if dst_is_new and not options.dry_run:
            _remove_if_empty(options.dst)
        raise
    report = Report(results=[] if keep_results else None, dry_run=options.dry_run)
    if dst_is_new:
        report.created["dir"] += 1  # DST itself (rsync's "Number of created files" counts ".")
    fatal = None
    with SignalGuard(stop_event) as guard:
        consumer = Consumer(report, counters, manifest, on_result)
        run = Run(options, consumer, dst_is_new, guard.check, keep, targets, hidden_manifest(options, manifest), single)
        if listed is not None and "" not in listed and "" in run.dirs:
            run.dirs.remove("")  # --files-from without "." leaves DST's root as it is, as rsync does
        run.start_lister()  # forks: before any thread of ours exists
        counters.start()
        try:
            work = functools.partial(worker.run_bundle, options)
            for batch, results, exc in pool.map_unordered(work, run.produce(), guard.check):
                run.consume(batch, results, exc, pool.push)
            lost = pool.take_lost()
            if lost:  # a worker died mid-batch (its batches ran again): its temp files are garbage
                temps.remove_temp_files(options.dst, {d for b in lost for d in b.reldirs}, options.token)
            guard.check()
            finish.link_hardlinks(run)
            fatal = finish.delete_extraneous(run)
            if manifest is not None and own_manifest:
                manifest.close()  # before directory times are set: the manifest may live in DST
                manifest = None
            if not options.dry_run:
                finish.finish_dirs(run, pool)
            if own_pool:
                pool.close()
        except BaseException as exc:
            run.close()
            in_flight = pool.abort(ABORT_GRACE)
            temps.remove_temp_files(options.dst, {d for b in in_flight for d in b.reldirs}, options.token)
            if isinstance(exc, Interrupted):
                exc.discarded += sum(b.files for b in in_flight)
            counters.close()
            if manifest is not None and own_manifest:
                manifest.discard()
            raise
        finally:
            run.close_dirs()
        report.stopped_early = run.disk_full
        if run.stale_removed:
            report.warnings.append(f"removed {run.stale_removed} temporary files left by an interrupted run")
        counters.close()
    if fatal:
        raise PcopyError(fatal)
    report.seconds = time.monotonic() - started
    return report


def _remove_if_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass
