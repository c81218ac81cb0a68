"""The command line's grammar: one argparse parser per command, with rsync's option names.

Only the grammar lives here (types, choices, defaults); what the options mean
together is checked by ``pcopy.options`` when the API is called.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys

from ..content.manifest import HASH_ALGORITHMS
from ..errors import UsageError
from ..fs.filters import read_pattern_file
from ..options import COPY_HASHES
from ..runtime.backend import BACKENDS
from ..version import __version__

COMPLETION_SHELLS = ("bash", "zsh", "fish")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose unknown options are reported by the subcommand they were given to,
    with a "did you mean" for near misses."""

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            sub = self._subparser(getattr(namespace, "command", None))
            target = sub or self
            message = f"unrecognized arguments: {' '.join(extras)}"
            hint = _suggest(target, extras)
            target.error(message + (f" (did you mean {hint}?)" if hint else ""))
        return namespace

    def _subparser(self, name):
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                return action.choices[name]
        return None


def _suggest(parser: argparse.ArgumentParser, extras: list) -> str:
    options = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    for extra in extras:
        if extra.startswith("-"):
            close = difflib.get_close_matches(extra.split("=", 1)[0], options, n=1, cutoff=0.6)
            if close:
                return close[0]
    return ""


def _whole(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}" if minimum
                                         else f"must be 0 or more, not {value}")
    return value


def positive_int(text: str) -> int:
    return _whole(text, 1)


def count(text: str) -> int:
    return _whole(text, 0)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


class FilterAction(argparse.Action):
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


def _progress_options(sub: argparse.ArgumentParser, default_help: str) -> None:
    bar = sub.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help=f"show a progress bar (default: {default_help})")
    bar.add_argument("--no-progress", dest="progress", action="store_false")


def _copy_options(sub: argparse.ArgumentParser, manifest: bool = True) -> None:
    sub.add_argument("src", metavar="SRC")
    sub.add_argument("dst", metavar="DST")
    sub.add_argument("-j", "--jobs", type=positive_int, metavar="N",
                     help="parallel workers (default: CPU count; with --scheduler, the cluster's worker threads)")
    sub.add_argument("--backend", choices=BACKENDS, default="process",
                     help="worker kind (default: process; threads suit a few big files; ignored with --scheduler)")
    sub.add_argument("--scheduler", metavar="ADDRESS", default=os.environ.get("PCOPY_SCHEDULER") or None,
                     help="run the per-file work on the Dask cluster at ADDRESS (tcp://HOST:PORT; default: "
                          "$PCOPY_SCHEDULER); its workers must see SRC and DST at the same paths. "
                          "Needs pip install 'pcopy[dask]'")
    sub.add_argument("--hash", choices=COPY_HASHES, default="xxh128",
                     help="checksum written files (default xxh128); 'none' uses the kernel's fast copy")
    if manifest:
        sub.add_argument("--manifest", metavar="FILE",
                         help="write an 'xxhsum -H2' manifest of every file in DST (check: cd DST && xxhsum -c FILE)")
    sub.add_argument("-L", "--follow-symlinks", action="store_true",
                     help="copy what symlinks point to instead of the links")
    sub.add_argument("--force", action="store_true", help="rewrite files even when size and mtime match")
    sub.add_argument("--fsync", action="store_true",
                     help="fsync each file before its rename and each directory after (survives power loss)")
    sub.add_argument("--sparse", action="store_true", help="turn runs of zeros (64 KiB blocks) into holes in DST")
    _progress_options(sub, "when stderr is a terminal and not -v")
    sub.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    sub.add_argument("--log-file", metavar="FILE", help="append itemized actions and errors to FILE")
    talk = sub.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true", help="print one itemized line per change")
    talk.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    sub.add_argument("--debug", action="store_true", help="show tracebacks for fatal errors")
    sub.add_argument("--transform", metavar="NAME",
                     help="rewrite each file as it is written: gzip, gunzip, xz, unxz, zstd, unzstd, a plugin's "
                          "name (entry points 'pcopy.transforms') or module:function "
                          "(see the README section 'Transforms and map')")
    sub.add_argument("--level", type=int, metavar="N", help="compression level for --transform gzip/xz/zstd")


def _sync_options(sync: argparse.ArgumentParser, dry_run: bool = True) -> None:
    sync.add_argument("--delete", action="store_true", help="delete DST entries that are not in SRC (after copying)")
    sync.add_argument("--delete-excluded", action="store_true",
                      help="also delete excluded entries from DST (implies --delete)")
    sync.add_argument("--max-delete", type=count, metavar="N",
                      help="refuse to delete more than N entries (exit 1, nothing deleted)")
    sync.add_argument("-c", "--checksum", action="store_true",
                      help="decide what changed by xxh128 of the contents, not size + mtime")
    if dry_run:
        sync.add_argument("-n", "--dry-run", action="store_true", help="show what would be done; change nothing")
    sync.add_argument("--exclude", dest="filters", action=FilterAction, metavar="PAT",
                      help="skip paths matching PAT (gitignore syntax; repeatable; last match wins)")
    sync.add_argument("--include", dest="filters", action=FilterAction, metavar="PAT",
                      help="re-include paths matching PAT that an earlier --exclude dropped")
    sync.add_argument("--exclude-from", dest="filters", action=FilterAction, metavar="FILE",
                      help="read exclude patterns from FILE (a .gitignore-style file)")
    links = sync.add_mutually_exclusive_group()
    links.add_argument("-H", "--hard-links", dest="hard_links", action="store_true", default=True,
                       help="keep hard-linked files hard-linked in DST (default for sync)")
    links.add_argument("--no-hard-links", dest="hard_links", action="store_false")
    sync.add_argument("--link-dest", action="append", default=[], metavar="DIR",
                      help="hard-link files unchanged against DIR instead of copying (repeatable; relative to DST)")


def _integrity_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("-j", "--jobs", type=positive_int, metavar="N", help="parallel workers (default: CPU count)")
    sub.add_argument("--backend", choices=BACKENDS, default="process",
                     help="worker kind (default: process; threads suit a few big files)")
    cache = sub.add_mutually_exclusive_group()
    cache.add_argument("--no-cache", dest="cache", action="store_false", default=True,
                       help="read every file; do not use or update the hash cache")
    cache.add_argument("--cache", dest="cache", metavar="FILE",
                       help="hash cache file (default: $PCOPY_CACHE or ~/.cache/pcopy/hashes.sqlite3)")
    _progress_options(sub, "when stderr is a terminal")
    sub.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    sub.add_argument("-q", "--quiet", action="store_true", help="print only differences, errors and warnings")
    sub.add_argument("--debug", action="store_true", help="show tracebacks for fatal errors")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pcopy", description="Parallel file-tree copier with xxHash checksums.")
    parser.add_argument("--version", action="version", version=f"pcopy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)

    copy = commands.add_parser("copy", help="copy SRC's contents into DST in parallel, checksumming",
                               description="Copy the contents of SRC into DST (created if missing). "
                                           "Files whose size and mtime match at DST are skipped.")
    _copy_options(copy)
    copy.add_argument("-H", "--hard-links", action="store_true", help="keep hard-linked files hard-linked in DST")

    sync = commands.add_parser("sync", help="make DST a copy of SRC (incremental, optional --delete)",
                               description="Make DST a copy of SRC: copy new and changed files (size + mtime, "
                                           "or content with -c), replace entries of another kind, and with "
                                           "--delete remove what SRC does not have.")
    _copy_options(sync)
    _sync_options(sync)

    watch = commands.add_parser(
        "watch", help="sync SRC to DST, then keep DST following changes (Ctrl-C to stop)",
        description="Sync SRC to DST, then follow changes in SRC (inotify; polling with --poll) and apply them "
                    "in debounced batches through the same copy path as sync. Takes sync's options, except "
                    "--dry-run and --manifest.")
    _copy_options(watch, manifest=False)
    _sync_options(watch, dry_run=False)
    watch.add_argument("--debounce", type=seconds, metavar="SECONDS",
                       help="apply a batch once no change came for SECONDS (default 0.05)")
    watch.add_argument("--poll", action="store_true",
                       help="poll the tree instead of using inotify (network file systems; slower)")
    watch.add_argument("--poll-interval", type=seconds, metavar="SECONDS", help="with --poll (default 1)")
    watch.add_argument("--rescan-interval", type=seconds, metavar="SECONDS",
                       help="also re-read the whole tree every SECONDS (default: only when events were lost)")

    hash_cmd = commands.add_parser(
        "hash", help="print an 'xxhsum -H2' manifest of every file under ROOT, sorted by path",
        description="Hash every regular file under ROOT in parallel and print '<hex>  <relative path>' lines "
                    "in byte order of the path, so that 'cd ROOT && xxhsum -c FILE' (or 'sha256sum -c' with "
                    "--algo sha256) passes. Symlinks are not followed or listed.")
    hash_cmd.add_argument("root", metavar="ROOT")
    hash_cmd.add_argument("-o", "--output", metavar="FILE", help="write the manifest to FILE ('-' or no -o: stdout)")
    hash_cmd.add_argument("--algo", choices=HASH_ALGORITHMS, default="xxh128",
                          help="xxh128 (default, for xxhsum -c) or sha256 (for sha256sum -c)")
    _integrity_options(hash_cmd)

    verify = commands.add_parser(
        "verify", help="compare two trees by content, or a tree against a manifest",
        description="pcopy verify SRC DST: compare the trees by content (xxh128), symlink targets and kinds. "
                    "pcopy verify --manifest FILE ROOT: check ROOT against a manifest written by pcopy or by "
                    "xxhsum/sha256sum (GNU or --tag form). One line per difference on stderr. "
                    "Exit 0 identical, 4 differences found, 3 some files could not be checked, 1 fatal.")
    verify.add_argument("paths", nargs="+", metavar="SRC DST | ROOT")
    verify.add_argument("-m", "--manifest", metavar="FILE", help="check ROOT against FILE ('-' for stdin)")
    _integrity_options(verify)

    map_cmd = commands.add_parser(
        "map", help="run module:function(path) on every file under ROOT, one JSON line per file",
        description="Run FUNCTION (module:function, importable from the current directory or PYTHONPATH) on "
                    "the path of every regular file under ROOT in parallel. Prints one JSON line per file on "
                    'stdout, as each completes: {"path": ..., "result": ...} or {"path": ..., "error": "..."}. '
                    "Results that are not JSON-serialisable are printed as their repr() string. "
                    "Exit 3 if any file failed.")
    map_cmd.add_argument("root", metavar="ROOT")
    map_cmd.add_argument("function", metavar="FUNCTION")
    map_cmd.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                         help="skip paths matching this gitignore-style pattern (repeatable)")
    map_cmd.add_argument("-j", "--jobs", type=positive_int, metavar="N", help="parallel workers (default: CPU count)")
    map_cmd.add_argument("--backend", choices=BACKENDS, default="process", help="worker kind (default: process)")
    _progress_options(map_cmd, "when stderr is a terminal")
    map_cmd.add_argument("-q", "--quiet", action="store_true", help="print only errors on stderr")
    map_cmd.add_argument("--debug", action="store_true", help="show tracebacks for fatal errors")

    commands.add_parser("completion", help="print a completion script for SHELL (bash, zsh or fish) on stdout",
                        description="Print the tab-completion script for SHELL on stdout; the README section "
                                    "'Shell completion and man page' says where to put it."
                        ).add_argument("shell", choices=COMPLETION_SHELLS, metavar="SHELL")
    commands.add_parser("man", help="print the manual page (roff) on stdout",
                        description="Print pcopy's manual page in roff on stdout: read it with 'pcopy man | man -l -' "
                                    "or install it as pcopy.1.")
    return parser


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
