"""One function per command: call the API, print what happened, return the exit code."""

from __future__ import annotations

import json
import os
import sys
import time

from .. import api
from ..errors import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, Interrupted, PcopyError, UsageError
from ..model.results import FAILED, Report, Result
from ..runtime.progress import make_progress
from .completion import run_completion
from .manpage import run_man
from .output import Stdout, out, plural, printable, say, summary
from .reporter import Reporter


def _progress(args) -> bool:
    if args.quiet:
        return False
    return args.progress if args.progress is not None else (sys.stderr.isatty() and not getattr(args, "verbose", 0))


def _paths(args, most: int = 0) -> tuple:
    """(SRCs, DST) from the positional paths; ``most``: how many SRCs the command takes (0: any)."""
    if len(args.paths) < 2:
        raise UsageError(f"{args.command} needs SRC and DST")
    sources, dst = args.paths[:-1], args.paths[-1]
    if most and len(sources) > most:
        raise UsageError(f"{args.command} takes one SRC and one DST")
    args.src, args.dst = " ".join(sources), dst  # for the log header
    return sources, dst


def _copy_kwargs(args) -> dict:
    """The options copy, sync and watch share, from the parsed command line (cli.transfer_options)."""
    return dict(jobs=args.jobs, backend=args.backend, hash=args.hash, follow_symlinks=args.follow_symlinks,
                force=args.force, fsync=args.fsync, sparse=args.sparse, hard_links=args.hard_links,
                transform=args.transform, level=args.level, checksum=args.checksum,
                filters=args.filters or (), link_dest=args.link_dest,
                size_only=args.size_only, modify_window=args.modify_window, update=args.update,
                ignore_existing=args.ignore_existing, existing=args.existing,
                min_size=-1 if args.min_size is None else args.min_size,
                max_size=-1 if args.max_size is None else args.max_size,
                one_file_system=args.one_file_system, prune_empty_dirs=args.prune_empty_dirs,
                exclude_if_present=tuple(args.exclude_if_present), files_from=args.files_from,
                recursive=args.recursive, backup=args.backup or args.backup_dir is not None,
                backup_dir=args.backup_dir, suffix=args.suffix, partial=args.partial or args.partial_progress,
                bwlimit=args.bwlimit or 0, xattrs=args.xattrs, acls=args.acls, chmod=args.chmod, chown=args.chown,
                **_remote_kwargs(args))


def _remote_kwargs(args) -> dict:
    """-e/--rsh, --remote-pcopy and -z, only when given."""
    return {k: getattr(args, k) for k in ("rsh", "remote_pcopy", "compress") if getattr(args, k, None) is not None}


def _sync_kwargs(args) -> dict:
    kwargs = dict(delete=args.delete, delete_excluded=args.delete_excluded, max_delete=args.max_delete,
                  delete_anyway=args.delete_anyway)
    by = getattr(args, "track_renames_by", None) or ("modtime" if getattr(args, "track_renames", False) else "")
    if by:
        kwargs["track_renames"] = by
    return kwargs


def run_copy(args) -> int:
    sources, dst = _paths(args)
    if args.partial_progress and args.progress is None:
        args.progress = True  # -P
    reporter = Reporter(args)
    common = dict(_copy_kwargs(args), manifest=args.manifest, progress=_progress(args), keep_results=False,
                  scheduler=args.scheduler, on_result=reporter if reporter.wanted else None, dry_run=args.dry_run)
    delete = args.command == "sync" and (args.delete or args.delete_excluded)
    src = sources if len(sources) > 1 else sources[0]
    report = None
    try:
        if args.command == "sync":
            report = api.sync(src, dst, **_sync_kwargs(args), **common)
        else:
            report = api.copytree(src, dst, **common)
    except (PcopyError, Interrupted) as exc:
        reporter.fail(exc)
        raise
    finally:
        if report is not None:
            reporter.close(report, delete=delete)
    for failure in report.failures:
        say(f"pcopy: error: {printable(failure.relpath)}: {failure.message}")
    for warning in report.warnings:
        say(f"pcopy: warning: {warning}")
    if not args.quiet:
        say(summary(report, delete))
    if args.stats:
        from .stats import stats_lines

        for line in stats_lines(report, args.human_readable):
            say(line)
    if args.json:
        out(json.dumps(report.to_dict()) + "\n")
    if report.stopped_early and report.copied == 0 and report.linked == 0:
        return EXIT_FATAL  # nothing could be written at all
    return EXIT_OK if report.ok else EXIT_PARTIAL


def run_map(args) -> int:
    from ..mapping import run as mapping

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as ``python -m`` does: modules in the current directory import
    started = time.monotonic()
    results = mapping.map_files(args.function, args.root, jobs=args.jobs, backend=args.backend,
                                exclude=args.exclude, counters=make_progress(_progress(args)),
                                json_results=True, handle_signals=True)
    done = failed = 0
    try:
        for result in results:
            done += 1
            out(result.to_json() + "\n")
            if result.error is not None:
                failed += 1
                say(f"pcopy: error: {printable(result.path)}: {result.error}")
    finally:
        results.close()  # type: ignore[attr-defined]  # a generator: stops the workers
    if not args.quiet:
        say(f"pcopy: map: {plural(done, 'file')}, {failed} failed in {time.monotonic() - started:.2f} s")
    return EXIT_OK if failed == 0 else EXIT_PARTIAL


def _print_difference(diff) -> None:
    if diff.kind == "error":
        say(f"pcopy: error: {printable(diff.path)}: {diff.detail}")
    elif diff.kind == "vanished":
        say(f"pcopy: warning: {printable(diff.path)}: {diff.detail}")
    else:
        say(f"pcopy: {diff.kind}: {printable(diff.path)} ({diff.detail})")


def _print_warning(message: str) -> None:
    say(f"pcopy: warning: {message}")


def _integrity_summary(verb: str, report) -> str:
    cached = f", {report.cache_hits} from cache" if report.cache_hits else ""
    from .output import human_bytes

    parts = [f"pcopy: {verb} {plural(report.files, 'file')} ({report.hashed} read, {human_bytes(report.bytes_hashed)}"
             f"{cached})"]
    if verb == "verified":
        parts.append(f"{report.identical} identical, {report.differ} differ, {report.missing} missing, "
                     f"{report.extra} extra")
    parts.append(f"{report.errors} errors in {report.seconds:.2f} s")
    return ", ".join(parts)


def run_hash(args) -> int:
    to_stdout = args.output in (None, "-")
    if to_stdout and args.json:
        raise UsageError("--json needs -o FILE (the manifest itself goes to stdout)")
    stdout = Stdout() if to_stdout else None
    from ..remote import hashing

    if hashing.is_remote(args.root):  # host:ROOT: hashed on that machine, only the lines travel
        report = hashing.hash_to(args.root, stdout, args.output, algo=args.algo, jobs=args.jobs, cache=args.cache,
                                 rsh=args.rsh, remote_pcopy=args.remote_pcopy, on_difference=_print_difference,
                                 on_warning=_print_warning)
    else:
        report = api.hash_tree(args.root, stdout if stdout is not None else args.output, algo=args.algo,
                               jobs=args.jobs, backend=args.backend, cache=args.cache, progress=_progress(args),
                               on_difference=_print_difference, on_warning=_print_warning)
    if stdout is not None:
        stdout.flush()
    if not args.quiet:
        say(_integrity_summary("hashed", report))
    if args.json:
        out(json.dumps(report.to_dict()) + "\n")
    return report.exit_code


def run_verify(args) -> int:
    if args.manifest is not None and len(args.paths) != 1:
        raise UsageError("verify --manifest FILE takes exactly one ROOT")
    if args.manifest is None and len(args.paths) != 2:
        raise UsageError("verify takes SRC and DST (or --manifest FILE ROOT)")
    dst = None if args.manifest is not None else args.paths[1]
    report = api.verify(args.paths[0], dst, manifest=args.manifest, jobs=args.jobs, backend=args.backend,
                        cache=args.cache, progress=_progress(args), on_difference=_print_difference,
                        on_warning=_print_warning, rsh=args.rsh, remote_pcopy=args.remote_pcopy)
    if not args.quiet:
        say(_integrity_summary("verified", report))
    if args.json:
        out(json.dumps(report.to_dict()) + "\n")
    return report.exit_code


class _StatusLine:
    """The one-line watch status on a TTY, redrawn in place; cleared before any other line is printed."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.shown = False
        self._drawn_at = 0.0

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            self.shown = False

    def draw(self, status, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn_at < 0.2):
            return
        self._drawn_at = now
        last = time.strftime("%H:%M:%S", time.localtime(status.last_sync)) if status.last_sync else "never"
        text = (f"pcopy watch ({status.observer}): {status.pending} pending events, "
                f"last sync {last} ({status.last_seconds:.2f} s), {status.errors} errors")
        import shutil

        width = shutil.get_terminal_size((80, 20)).columns
        sys.stderr.write("\r\x1b[K" + text[:max(width - 1, 10)])
        sys.stderr.flush()
        self.shown = True


def run_watch(args) -> int:
    _paths(args, most=1)
    reporter = Reporter(args)
    line = _StatusLine(not args.quiet and (args.progress if args.progress is not None else sys.stderr.isatty()))
    errors: dict = {}  # relpath -> message already printed, so a file failing again is not repeated
    warned = [0]

    def on_result(result: Result) -> None:
        if result.status == FAILED:
            if errors.get(result.relpath) != result.message:
                errors[result.relpath] = result.message
                line.clear()
                say(f"pcopy: error: {printable(result.relpath)}: {result.message}")
        else:
            errors.pop(result.relpath, None)
            if args.verbose:
                line.clear()
        reporter(result)

    def on_status(status) -> None:
        for warning in status.warnings[warned[0]:]:
            line.clear()
            say(f"pcopy: warning: {warning}")
        warned[0] = len(status.warnings)
        if status.cycles == 1 and status.last_report is not None and not args.quiet:
            line.clear()
            say(f"{summary(status.last_report, args.delete or args.delete_excluded)} (initial sync)")
            say(f"pcopy: watching {printable(args.src)} ({status.observer}); Ctrl-C to stop")
        line.draw(status, force=status.last_report is not None)

    settings = {name: getattr(args, name) for name in ("debounce", "poll_interval", "rescan_interval")
                if getattr(args, name) is not None}
    report = None
    try:
        report = api.watch(args.src, args.dst, poll=args.poll, on_result=on_result, on_status=on_status,
                           **_sync_kwargs(args), **_copy_kwargs(args), **settings)
    except Interrupted as exc:
        report = exc.report if isinstance(exc.report, Report) else None
        raise
    except PcopyError as exc:
        line.clear()
        reporter.fail(exc)
        raise
    finally:  # SIGINT and SIGTERM end a watch session normally: api.watch returns its report
        line.clear()
        if report is not None:
            delete = args.delete or args.delete_excluded
            reporter.close(report, delete=delete)
            if not args.quiet:
                lost = f"; {plural(report.discarded, 'file')} in flight discarded" if report.discarded else ""
                say(f"{summary(report, delete)} (watch session{lost})")
            if args.json:
                out(json.dumps(report.to_dict()) + "\n")
    return EXIT_OK if report.ok else EXIT_PARTIAL


COMMANDS = {"copy": run_copy, "sync": run_copy, "watch": run_watch, "map": run_map, "hash": run_hash,
            "verify": run_verify, "completion": run_completion, "man": run_man}
