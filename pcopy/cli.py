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
import traceback
from typing import Optional

from . import __version__, api
from .errors import EXIT_OK, EXIT_PARTIAL, Interrupted, PcopyError
from .hashing import ALGORITHMS
from .model import COPIED, FAILED, Report, Result
from .pool import BACKENDS


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
    return (f"pcopy: copied {report.copied} files ({human_bytes(report.bytes_copied)}), "
            f"skipped {report.skipped}, failed {report.failed} in {report.seconds:.2f} s "
            f"({human_bytes(rate)}/s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcopy", description="Parallel file-tree copier with xxHash checksums.")
    parser.add_argument("--version", action="version", version=f"pcopy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    copy = commands.add_parser("copy", help="copy SRC's contents into DST in parallel, checksumming",
                               description="Copy the contents of SRC into DST (created if missing). "
                                           "Files whose size and mtime match at DST are skipped.")
    copy.add_argument("src", metavar="SRC")
    copy.add_argument("dst", metavar="DST")
    _add_run_options(copy)
    copy.add_argument("--hash", choices=ALGORITHMS, default="xxh128",
                      help="checksum written files (default xxh128); 'none' uses the kernel's fast copy")
    copy.add_argument("--manifest", metavar="FILE",
                      help="write an 'xxhsum -H2' manifest of every file in DST (check: cd DST && xxhsum -c FILE)")
    copy.add_argument("-L", "--follow-symlinks", action="store_true",
                      help="copy what symlinks point to instead of the links")
    copy.add_argument("--force", action="store_true", help="rewrite files even when size and mtime match")
    return parser


def _add_run_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("-j", "--jobs", type=_positive_int, metavar="N",
                     help="parallel workers (default: CPU count; with --scheduler, the cluster's worker threads)")
    sub.add_argument("--backend", choices=BACKENDS, default="process",
                     help="worker kind (default: process; threads suit a few big files; ignored with --scheduler)")
    sub.add_argument("--scheduler", metavar="ADDRESS", default=os.environ.get("PCOPY_SCHEDULER") or None,
                     help="run the per-file work on the Dask cluster at ADDRESS (tcp://HOST:PORT; default: "
                          "$PCOPY_SCHEDULER); its workers must see SRC and DST at the same paths. "
                          "Needs pip install 'pcopy[dask]'")
    bar = sub.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar (default: when stderr is a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    sub.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    talk = sub.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true", help="print one line per copied or failed file")
    talk.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    sub.add_argument("--debug", action="store_true", help="show tracebacks for fatal errors")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _verbose_printer(args) -> Optional[callable]:
    if not args.verbose:
        return None

    def show(result: Result) -> None:
        if result.status == COPIED:
            print(f"{result.status} {printable(result.relpath)}", file=sys.stderr)
        elif result.status != FAILED:
            print(f"{result.status} {printable(result.relpath)} ({result.message})", file=sys.stderr)
    return show


def run_copy(args) -> int:
    report = api.copytree(args.src, args.dst, jobs=args.jobs, backend=args.backend, hash=args.hash,
                          manifest=args.manifest, progress=args.progress and not args.quiet,
                          follow_symlinks=args.follow_symlinks, force=args.force, keep_results=False,
                          on_result=_verbose_printer(args), scheduler=args.scheduler)
    for failure in report.failures:
        print(f"pcopy: error: {printable(failure.relpath)}: {failure.message}", file=sys.stderr)
    if not args.quiet:
        print(summary(report), file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict()))
    return EXIT_OK if report.ok else EXIT_PARTIAL


COMMANDS = {"copy": run_copy}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "copy" and args.manifest and args.hash == "none":
        parser.error("--manifest needs checksums; drop --hash none")
    try:
        return COMMANDS[args.command](args)
    except Interrupted as exc:
        print(f"pcopy: interrupted by {exc}, in-flight files discarded", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pcopy: interrupted", file=sys.stderr)
        return Interrupted(2).exit_code
    except PcopyError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"pcopy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"pcopy: error: {printable(str(exc.filename or ''))}: {exc.strerror or exc}", file=sys.stderr)
        return PcopyError.exit_code


def run() -> None:
    """Console-script entry point."""
    multiprocessing.freeze_support()
    sys.exit(main())

