"""Command line: parse arguments, run, print, choose the exit code.

This is the only module that prints. Human output (progress, per-file lines,
errors, the summary) goes to stderr; machine output (``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import traceback
from typing import Optional

from . import __version__, api
from .errors import EXIT_OK, EXIT_PARTIAL, Interrupted, PcopyError, UsageError
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
    _add_integrity_parsers(commands)
    return parser


def _add_run_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("-j", "--jobs", type=_positive_int, metavar="N", help="parallel workers (default: CPU count)")
    sub.add_argument("--backend", choices=BACKENDS, default="process",
                     help="worker kind (default: process; threads suit a few big files)")
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
                          on_result=_verbose_printer(args))
    for failure in report.failures:
        print(f"pcopy: error: {printable(failure.relpath)}: {failure.message}", file=sys.stderr)
    if not args.quiet:
        print(summary(report), file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict()))
    return EXIT_OK if report.ok else EXIT_PARTIAL


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


COMMANDS = {"copy": run_copy, "hash": run_hash, "verify": run_verify}


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

