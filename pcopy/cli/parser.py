"""The command line's grammar: one argparse parser per command, with rsync's option names.

Only the grammar lives here (types, choices, defaults); what the options mean
together is checked by ``pcopy.options`` when the API is called.
"""

from __future__ import annotations

import argparse
import difflib
import sys

from ..content.manifest import HASH_ALGORITHMS
from ..runtime.backend import BACKENDS
from ..version import __version__
from .argtypes import positive_int, seconds
from .transfer_options import add_transfer_options

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


def _progress_options(sub: argparse.ArgumentParser, default_help: str) -> None:
    bar = sub.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help=f"show a progress bar (default: {default_help})")
    bar.add_argument("--no-progress", dest="progress", action="store_false")


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

    copy = commands.add_parser("copy", help="copy SRC's contents into DST in parallel, checksumming", add_help=False,
                               usage="pcopy copy [options] SRC [SRC...] DST",
                               description="Copy the contents of SRC into DST (created if missing); a file SRC "
                                           "goes to DST/NAME when DST is a directory, else becomes DST; several "
                                           "SRCs each go to DST/their name. Files whose size and mtime match at "
                                           "DST are skipped; an entry of another kind in DST is a failure.")
    add_transfer_options(copy, "copy")

    sync = commands.add_parser("sync", help="make DST a copy of SRC (incremental, optional --delete)", add_help=False,
                               usage="pcopy sync [options] SRC [SRC...] DST",
                               description="Make DST a copy of SRC: copy new and changed files (size + mtime, "
                                           "or content with -c), replace entries of another kind, and with "
                                           "--delete remove what SRC does not have.")
    add_transfer_options(sync, "sync")

    watch = commands.add_parser(
        "watch", help="sync SRC to DST, then keep DST following changes (Ctrl-C to stop)", add_help=False,
        usage="pcopy watch [options] SRC DST",
        description="Sync SRC to DST, then follow changes in SRC (inotify; polling with --poll) and apply them "
                    "in debounced batches through the same copy path as sync. Takes sync's options, except "
                    "--dry-run and --manifest.")
    add_transfer_options(watch, "watch")
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
    hash_cmd.add_argument("-e", "--rsh", metavar="CMD", help="remote shell for a [user@]host:ROOT (default: ssh)")
    hash_cmd.add_argument("--remote-pcopy", metavar="CMD",
                          help="the pcopy to run on the remote (default: pcopy on its PATH, then python3 -m pcopy)")

    verify = commands.add_parser(
        "verify", help="compare two trees by content, or a tree against a manifest",
        description="pcopy verify SRC DST: compare the trees by content (xxh128), symlink targets and kinds. "
                    "pcopy verify --manifest FILE ROOT: check ROOT against a manifest written by pcopy or by "
                    "xxhsum/sha256sum (GNU or --tag form). One line per difference on stderr. "
                    "Exit 0 identical, 4 differences found, 3 some files could not be checked, 1 fatal.")
    verify.add_argument("paths", nargs="+", metavar="SRC DST | ROOT")
    verify.add_argument("-m", "--manifest", metavar="FILE", help="check ROOT against FILE ('-' for stdin)")
    _integrity_options(verify)
    verify.add_argument("-e", "--rsh", metavar="CMD", help="remote shell for a [user@]host:path side (default: ssh)")
    verify.add_argument("--remote-pcopy", metavar="CMD",
                        help="the pcopy to run on the remote (default: pcopy on its PATH, then python3 -m pcopy)")

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
