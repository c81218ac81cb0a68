"""Command line: parse arguments, run, print, choose the exit code.

This is the only module that prints. Human output (progress, per-file lines,
errors, the summary) goes to stderr; machine output (``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from typing import Optional

from . import api
from .errors import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, Interrupted, PcopyError, UsageError
from .filters import read_pattern_file
from .hashing import ALGORITHMS
from .model import COPIED, CREATED, DELETED, DIR, FAILED, LINKED, SKIPPED, Report, Result
from .pool import BACKENDS
from .version import __version__


def printable(path: str) -> str:
    """A path on one line: control characters escaped, undecodable bytes as \\xNN."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") \
        if any(c in text for c in "\n\r\t") else text


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def summary(report: Report) -> str:
    rate = report.bytes_copied / report.seconds if report.seconds > 0 else 0.0
    if report.dry_run:
        return (f"pcopy: dry run: would copy {report.copied} files ({human_bytes(report.bytes_copied)}), "
                f"link {report.linked}, delete {report.deleted}, create {report.dirs} directories; "
                f"{report.skipped} unchanged, {report.failed} failed; nothing was changed")
    extra = "".join(f", {label} {n}" for label, n in (("linked", report.linked), ("deleted", report.deleted)) if n)
    return (f"pcopy: copied {report.copied} files ({human_bytes(report.bytes_copied)}), "
            f"skipped {report.skipped}{extra}, failed {report.failed} in {report.seconds:.2f} s "
            f"({human_bytes(rate)}/s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcopy", description="Parallel file-tree copier with xxHash checksums.")
    parser.add_argument("--version", action="version", version=f"pcopy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    copy = commands.add_parser("copy", help="copy SRC's contents into DST in parallel, checksumming",
                               description="Copy the contents of SRC into DST (created if missing). "
                                           "Files whose size and mtime match at DST are skipped.")
    _add_copy_options(copy)
    _add_transform_options(copy)
    copy.add_argument("-H", "--hard-links", action="store_true", help="keep hard-linked files hard-linked in DST")

    sync = commands.add_parser("sync", help="make DST a copy of SRC (incremental, optional --delete)",
                               description="Make DST a copy of SRC: copy new and changed files (size + mtime, "
                                           "or content with -c), replace entries of another kind, and with "
                                           "--delete remove what SRC does not have.")
    _add_copy_options(sync)
    _add_transform_options(sync)
    sync.add_argument("--delete", action="store_true", help="delete DST entries that are not in SRC (after copying)")
    sync.add_argument("--delete-excluded", action="store_true",
                      help="also delete excluded entries from DST (implies --delete)")
    sync.add_argument("--max-delete", type=_count, metavar="N",
                      help="refuse to delete more than N entries (exit 1, nothing deleted)")
    sync.add_argument("-c", "--checksum", action="store_true",
                      help="decide what changed by xxh128 of the contents, not size + mtime")
    sync.add_argument("-n", "--dry-run", action="store_true", help="show what would be done; change nothing")
    sync.add_argument("--exclude", dest="filters", action=_FilterAction, metavar="PAT",
                      help="skip paths matching PAT (gitignore syntax; repeatable; last match wins)")
    sync.add_argument("--include", dest="filters", action=_FilterAction, metavar="PAT",
                      help="re-include paths matching PAT that an earlier --exclude dropped")
    sync.add_argument("--exclude-from", dest="filters", action=_FilterAction, metavar="FILE",
                      help="read exclude patterns from FILE (a .gitignore-style file)")
    links = sync.add_mutually_exclusive_group()
    links.add_argument("-H", "--hard-links", dest="hard_links", action="store_true", default=True,
                       help="keep hard-linked files hard-linked in DST (default for sync)")
    links.add_argument("--no-hard-links", dest="hard_links", action="store_false")
    sync.add_argument("--link-dest", action="append", default=[], metavar="DIR",
                      help="hard-link files unchanged against DIR instead of copying (repeatable; relative to DST)")
    _add_map_command(commands)
    _add_integrity_parsers(commands)
    _add_watch_command(commands)
    return parser


class _FilterAction(argparse.Action):
    """Keeps --exclude/--include/--exclude-from in command-line order, as gitignore lines."""

    def __call__(self, parser, namespace, value, option_string=None):
        lines = list(getattr(namespace, self.dest, None) or [])
        if option_string == "--include":
            lines.append("!" + value)
        elif option_string == "--exclude-from":
            try:
                lines.extend(read_pattern_file(value))
            except UsageError as exc:
                parser.error(str(exc))
        else:
            lines.append(value)
        setattr(namespace, self.dest, lines)


def _add_copy_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("src", metavar="SRC")
    sub.add_argument("dst", metavar="DST")
    sub.add_argument("-j", "--jobs", type=_positive_int, metavar="N",
                     help="parallel workers (default: CPU count; with --scheduler, the cluster's worker threads)")
    sub.add_argument("--backend", choices=BACKENDS, default="process",
                     help="worker kind (default: process; threads suit a few big files; ignored with --scheduler)")
    sub.add_argument("--scheduler", metavar="ADDRESS", default=os.environ.get("PCOPY_SCHEDULER") or None,
                     help="run the per-file work on the Dask cluster at ADDRESS (tcp://HOST:PORT; default: "
                          "$PCOPY_SCHEDULER); its workers must see SRC and DST at the same paths. "
                          "Needs pip install 'pcopy[dask]'")
    sub.add_argument("--hash", choices=ALGORITHMS, default="xxh128",
                     help="checksum written files (default xxh128); 'none' uses the kernel's fast copy")
    sub.add_argument("--manifest", metavar="FILE",
                     help="write an 'xxhsum -H2' manifest of every file in DST (check: cd DST && xxhsum -c FILE)")
    sub.add_argument("-L", "--follow-symlinks", action="store_true",
                     help="copy what symlinks point to instead of the links")
    sub.add_argument("--force", action="store_true", help="rewrite files even when size and mtime match")
    sub.add_argument("--fsync", action="store_true",
                     help="fsync each file before its rename and each directory after (survives power loss)")
    sub.add_argument("--sparse", action="store_true", help="turn runs of zeros (64 KiB blocks) into holes in DST")
    bar = sub.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar (default: when stderr is a terminal and not -v)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    sub.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    sub.add_argument("--log-file", metavar="FILE", help="append itemized actions and errors to FILE")
    talk = sub.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true", help="print one itemized line per change")
    talk.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    sub.add_argument("--debug", action="store_true", help="show tracebacks for fatal errors")


def _positive_int(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def itemized(result: Result) -> Optional[str]:
    """The rsync -i style line for a change, or None for results that are not changes."""
    if result.status in (COPIED, LINKED, DELETED, CREATED):
        suffix = "/" if result.kind == DIR and result.status != DELETED else ""
        code = result.message or ">f+++++++++"
        text, _, target = code.partition(" => ")
        return f"{text} {printable(result.relpath)}{suffix}" + (f" => {printable(target)}" if target else "")
    if result.status == FAILED:
        return f"error {printable(result.relpath)}: {result.message}"
    if result.status == SKIPPED and result.message and result.message.startswith("."):
        return f"{result.message} {printable(result.relpath)}"  # attributes-only update
    if result.status == SKIPPED and result.message not in (None, "unchanged", "same content",
                                                            "hard link already in place"):
        return f"skipping {printable(result.relpath)}: {result.message}"  # specials, vanished files
    return None


class _Reporter:
    """Prints (-v) and logs (--log-file) one line per change or error, as results arrive."""

    def __init__(self, args) -> None:
        self.verbose = args.verbose
        self.log = open(args.log_file, "a", encoding="utf-8", errors="backslashreplace") if args.log_file else None
        if self.log is not None:
            self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pcopy {args.command} {args.src} {args.dst}\n")

    def __call__(self, result: Result) -> None:
        line = itemized(result)
        if line is None:
            return
        if self.verbose and result.status != FAILED:
            print(line, file=sys.stderr)
        if self.log is not None:
            self.log.write(line + "\n")

    def close(self, report: Optional[Report], error: Optional[str] = None) -> None:
        if self.log is None:
            return
        if error:
            self.log.write(f"fatal: {error}\n")
        if report is not None:
            self.log.write(summary(report) + "\n")
        self.log.close()


def run_copy(args) -> int:
    reporter = _Reporter(args)
    common = dict(jobs=args.jobs, backend=args.backend, hash=args.hash, manifest=args.manifest,
                  progress=False if args.quiet or (args.verbose and args.progress is None) else args.progress,
                  follow_symlinks=args.follow_symlinks, force=args.force, fsync=args.fsync, sparse=args.sparse,
                  hard_links=args.hard_links, keep_results=False, scheduler=args.scheduler,
                  on_result=reporter if args.verbose or args.log_file else None,  # per-file work only when asked
                  **_transform_kwargs(args))
    report = None
    try:
        if args.command == "sync":
            report = api.sync(args.src, args.dst, delete=args.delete, delete_excluded=args.delete_excluded,
                              max_delete=args.max_delete, checksum=args.checksum, dry_run=args.dry_run,
                              filters=args.filters or (), link_dest=args.link_dest, **common)
        else:
            report = api.copytree(args.src, args.dst, **common)
    except PcopyError as exc:
        reporter.close(None, str(exc))
        raise
    finally:
        if report is not None:
            reporter.close(report)
    for failure in report.failures:
        print(f"pcopy: error: {printable(failure.relpath)}: {failure.message}", file=sys.stderr)
    for warning in report.warnings:
        print(f"pcopy: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print(summary(report), file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict()))
    if report.stopped_early and report.copied == 0 and report.linked == 0:
        return EXIT_FATAL  # nothing could be written at all
    return EXIT_OK if report.ok else EXIT_PARTIAL


# --------------------------------------------------------------------------- transforms and map


def _add_transform_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--transform", metavar="NAME",
                     help="rewrite each file as it is written: gzip, gunzip, xz, unxz, zstd, unzstd, a plugin's "
                          "name (entry points 'pcopy.transforms') or module:function (see docs/transforms.md)")
    sub.add_argument("--level", type=int, metavar="N", help="compression level for --transform gzip/xz/zstd")


def _transform_kwargs(args) -> dict:
    return {"transform": args.transform, "level": args.level}


def _add_map_command(commands) -> None:
    sub = commands.add_parser(
        "map", help="run module:function(path) on every file under ROOT, one JSON line per file",
        description="Run FUNCTION (module:function, importable from PYTHONPATH) on the path of every regular "
                    "file under ROOT in parallel. Prints one JSON line per file on stdout, as each completes: "
                    '{"path": ..., "result": ...} or {"path": ..., "error": "..."}. Results that are not '
                    "JSON-serialisable are printed as their repr() string. Exit 3 if any file failed.")
    sub.add_argument("root", metavar="ROOT")
    sub.add_argument("function", metavar="FUNCTION")
    sub.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                     help="skip paths matching this gitignore-style pattern (repeatable)")
    sub.add_argument("-j", "--jobs", type=_positive_int, metavar="N", help="parallel workers (default: CPU count)")
    sub.add_argument("--backend", choices=BACKENDS, default="process", help="worker kind (default: process)")
    bar = sub.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar (default: when stderr is a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    sub.add_argument("-q", "--quiet", action="store_true", help="print only errors on stderr")
    sub.add_argument("--debug", action="store_true", help="show tracebacks for fatal errors")


def run_map(args) -> int:
    from . import mapping
    from .progress import make_progress

    started = time.monotonic()
    results = mapping.map_files(args.function, args.root, jobs=args.jobs, backend=args.backend,
                                exclude=args.exclude, counters=make_progress(args.progress and not args.quiet),
                                json_results=True, handle_signals=True)
    done = failed = 0
    out = sys.stdout
    try:
        for result in results:
            done += 1
            out.write(result.to_json() + "\n")
            if result.error is not None:
                failed += 1
                print(f"pcopy: error: {printable(result.path)}: {result.error}", file=sys.stderr)
    finally:
        out.flush()
    if not args.quiet:
        print(f"pcopy: map: {done} files, {failed} failed in {time.monotonic() - started:.2f} s", file=sys.stderr)
    return EXIT_OK if failed == 0 else EXIT_PARTIAL


# --------------------------------------------------------------------------- hash, verify


def _add_integrity_parsers(commands) -> None:
    from .hashing import HASH_ALGORITHMS

    hash_cmd = commands.add_parser(
        "hash", help="print an 'xxhsum -H2' manifest of every file under ROOT, sorted by path",
        description="Hash every regular file under ROOT in parallel and print '<hex>  <relative path>' lines "
                    "in byte order of the path, so that 'cd ROOT && xxhsum -c FILE' (or 'sha256sum -c' with "
                    "--algo sha256) passes. Symlinks are not followed or listed.")
    hash_cmd.add_argument("root", metavar="ROOT")
    hash_cmd.add_argument("-o", "--output", metavar="FILE", help="write the manifest to FILE (default: stdout)")
    hash_cmd.add_argument("--algo", choices=HASH_ALGORITHMS, default="xxh128",
                          help="xxh128 (default, for xxhsum -c) or sha256 (for sha256sum -c)")
    _add_integrity_options(hash_cmd)

    verify = commands.add_parser(
        "verify", help="compare two trees by content, or a tree against a manifest",
        description="pcopy verify SRC DST: compare the trees by content (xxh128), symlink targets and kinds. "
                    "pcopy verify --manifest FILE ROOT: check ROOT against a manifest written by pcopy or by "
                    "xxhsum/sha256sum (GNU or --tag form). One line per difference on stderr. "
                    "Exit 0 identical, 4 differences found, 3 some files could not be checked, 1 fatal.")
    verify.add_argument("paths", nargs="+", metavar="SRC DST | ROOT")
    verify.add_argument("-m", "--manifest", metavar="FILE", help="check ROOT against FILE ('-' for stdin)")
    _add_integrity_options(verify)


def _add_integrity_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("-j", "--jobs", type=_positive_int, metavar="N", help="parallel workers (default: CPU count)")
    sub.add_argument("--backend", choices=BACKENDS, default="process",
                     help="worker kind (default: process; threads suit a few big files)")
    cache = sub.add_mutually_exclusive_group()
    cache.add_argument("--no-cache", dest="cache", action="store_false", default=True,
                       help="read every file; do not use or update the hash cache")
    cache.add_argument("--cache", dest="cache", metavar="FILE",
                       help="hash cache file (default: $PCOPY_CACHE or ~/.cache/pcopy/hashes.sqlite3)")
    bar = sub.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar (default: when stderr is a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    sub.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    sub.add_argument("-q", "--quiet", action="store_true", help="print only differences, errors and warnings")
    sub.add_argument("--debug", action="store_true", help="show tracebacks for fatal errors")


def _print_difference(diff) -> None:
    if diff.kind == "error":
        print(f"pcopy: error: {printable(diff.path)}: {diff.detail}", file=sys.stderr)
    else:
        print(f"pcopy: {diff.kind}: {printable(diff.path)} ({diff.detail})", file=sys.stderr)


def _print_warning(message: str) -> None:
    print(f"pcopy: warning: {message}", file=sys.stderr)


def _integrity_summary(verb: str, report) -> str:
    cached = f", {report.cache_hits} from cache" if report.cache_hits else ""
    parts = [f"pcopy: {verb} {report.files} files ({report.hashed} read, {human_bytes(report.bytes_hashed)}"
             f"{cached})"]
    if verb == "verified":
        parts.append(f"{report.identical} identical, {report.differ} differ, {report.missing} missing, "
                     f"{report.extra} extra")
    parts.append(f"{report.errors} errors in {report.seconds:.2f} s")
    return ", ".join(parts)


def run_hash(args) -> int:
    show_progress = args.progress and not args.quiet
    if args.output is None and args.json:
        raise UsageError("--json needs -o FILE (the manifest itself goes to stdout)")
    output = args.output if args.output is not None else sys.stdout.buffer
    report = api.hash_tree(args.root, output, algo=args.algo, jobs=args.jobs, backend=args.backend,
                           cache=args.cache, progress=show_progress, on_difference=_print_difference,
                           on_warning=_print_warning)
    if args.output is None:
        sys.stdout.flush()
    if not args.quiet:
        print(_integrity_summary("hashed", report), file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict()))
    return report.exit_code


def run_verify(args) -> int:
    if args.manifest is not None and len(args.paths) != 1:
        raise UsageError("verify --manifest FILE takes exactly one ROOT")
    if args.manifest is None and len(args.paths) != 2:
        raise UsageError("verify takes SRC and DST (or --manifest FILE ROOT)")
    dst = None if args.manifest is not None else args.paths[1]
    report = api.verify(args.paths[0], dst, manifest=args.manifest, jobs=args.jobs, backend=args.backend,
                        cache=args.cache, progress=args.progress and not args.quiet,
                        on_difference=_print_difference, on_warning=_print_warning)
    if not args.quiet:
        print(_integrity_summary("verified", report), file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict()))
    return report.exit_code


def _add_watch_command(commands) -> None:
    """``pcopy watch``: every ``sync`` option (inherited from its parser), plus the watch settings."""
    watch = commands.add_parser(
        "watch", parents=[commands.choices["sync"]], conflict_handler="resolve",
        help="sync SRC to DST, then keep DST following changes (Ctrl-C to stop)",
        description="Sync SRC to DST, then follow changes in SRC (inotify; polling with --poll) and apply them "
                    "in debounced batches through the same copy path as sync. Takes sync's options, except "
                    "--dry-run and --manifest.")
    watch.add_argument("--debounce", type=_seconds, metavar="SECONDS",
                       help="apply a batch once no change came for SECONDS (default 0.05)")
    watch.add_argument("--poll", action="store_true",
                       help="poll the tree instead of using inotify (network file systems; slower)")
    watch.add_argument("--poll-interval", type=_seconds, metavar="SECONDS", help="with --poll (default 1)")
    watch.add_argument("--rescan-interval", type=_seconds, metavar="SECONDS",
                       help="also re-read the whole tree every SECONDS (default: only when events were lost)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


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
    if args.dry_run:
        raise UsageError("watch does not take --dry-run")
    if args.manifest:
        raise UsageError("watch does not take --manifest (a manifest describes one finished run)")
    reporter = _Reporter(args)
    line = _StatusLine(not args.quiet and (args.progress if args.progress is not None else sys.stderr.isatty()))
    errors: dict = {}  # relpath -> message already printed, so a file failing again is not repeated
    warned = [0]

    def on_result(result: Result) -> None:
        if result.status == FAILED:
            if errors.get(result.relpath) != result.message:
                errors[result.relpath] = result.message
                line.clear()
                print(f"pcopy: error: {printable(result.relpath)}: {result.message}", file=sys.stderr)
        else:
            errors.pop(result.relpath, None)
            if args.verbose:
                line.clear()
        reporter(result)

    def on_status(status) -> None:
        for warning in status.warnings[warned[0]:]:
            line.clear()
            print(f"pcopy: warning: {warning}", file=sys.stderr)
        warned[0] = len(status.warnings)
        if status.cycles == 1 and status.last_report is not None and not args.quiet:
            line.clear()
            print(f"{summary(status.last_report)} (initial sync)", file=sys.stderr)
            print(f"pcopy: watching {printable(args.src)} ({status.observer}); Ctrl-C to stop", file=sys.stderr)
        line.draw(status, force=status.last_report is not None)

    settings = {name: getattr(args, name) for name in ("debounce", "poll_interval", "rescan_interval")
                if getattr(args, name) is not None}
    report = None
    try:
        report = api.watch(args.src, args.dst, poll=args.poll, delete=args.delete,
                           delete_excluded=args.delete_excluded, max_delete=args.max_delete, checksum=args.checksum,
                           filters=args.filters or (), link_dest=args.link_dest, hard_links=args.hard_links,
                           jobs=args.jobs, backend=args.backend, hash=args.hash,
                           follow_symlinks=args.follow_symlinks, force=args.force, fsync=args.fsync,
                           sparse=args.sparse, on_result=on_result, on_status=on_status,
                           **_transform_kwargs(args), **settings)
    except Interrupted as exc:
        report = getattr(exc, "report", None)
        raise
    except PcopyError as exc:
        line.clear()
        reporter.close(None, str(exc))
        raise
    finally:
        line.clear()
        if report is not None:
            reporter.close(report)
            if not args.quiet:
                print(f"{summary(report)} (watch session)", file=sys.stderr)
            if args.json:
                print(json.dumps(report.to_dict()))
    return EXIT_OK if report.ok else EXIT_PARTIAL


COMMANDS = {"copy": run_copy, "sync": run_copy, "watch": run_watch, "map": run_map, "hash": run_hash,
            "verify": run_verify}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "manifest", None) and getattr(args, "hash", None) == "none":
        parser.error("--manifest needs checksums; drop --hash none")
    if getattr(args, "dry_run", False) and args.manifest:
        parser.error("a dry run writes no manifest; drop --manifest or --dry-run")
    try:
        return COMMANDS[args.command](args)
    except Interrupted as exc:
        print(f"pcopy: interrupted by {exc}, in-flight files discarded", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pcopy: interrupted", file=sys.stderr)
        return Interrupted(2).exit_code
    except PcopyError as exc:
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        print(f"pcopy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        print(f"pcopy: error: {printable(str(exc.filename or ''))}: {exc.strerror or exc}", file=sys.stderr)
        return PcopyError.exit_code


def run() -> None:
    """Console-script entry point."""
    multiprocessing.freeze_support()
    sys.exit(main())

