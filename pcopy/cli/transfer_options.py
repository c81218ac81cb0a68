"""The grammar of copy, sync and watch: rsync's option names, with rsync's meaning.

rsync, cp and rclone users reach for these without reading the manual, so the
names are theirs: ``-a``/``-r`` are accepted (pcopy always copies recursively
and keeps what ``cp -a`` keeps), ``-h`` is ``--human-readable`` as in rsync
(``--help`` prints the help), ``-P`` is ``--partial --progress``.
"""

from __future__ import annotations

import argparse
import os
import re

from ..options import COPY_HASHES
from ..runtime.backend import BACKENDS
from .argtypes import FilterAction, count, positive_int

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kmgtp]?)(i?b?)?$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def size(text: str, default_unit: str = "") -> int:
    """A size as rsync reads one: ``K``/``M``/``G`` are powers of 1024 (``KiB`` too), ``KB``/``MB`` of 1000."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (like 500, 10K, 1.5M, 2G)")
    number, unit, suffix = match.groups()
    unit = (unit or default_unit).lower()
    base = 1000 if suffix and suffix.lower() == "b" else 1024
    return int(float(number) * base ** _POWERS[unit])


def rate(text: str) -> int:
    """``--bwlimit RATE``: bytes per second; a bare number is KiB/s, as in rsync."""
    return size(text, default_unit="k")


def _help(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--help", action="help", help="show this help and exit")


def add_transfer_options(sub: argparse.ArgumentParser, command: str) -> None:
    """Every copy/sync/watch option (``command`` decides the few that differ)."""
    _help(sub)
    sub.add_argument("paths", nargs="+", metavar="SRC",
                     help="what to copy: a directory's contents, a file, or several of them (then each goes to "
                          "DST/its name, as cp does); the last path is DST")
    sub.add_argument("-a", "--archive", action="store_true",
                     help="accepted for rsync's habit: pcopy always keeps what -a keeps")
    sub.add_argument("-r", "--recursive", action="store_true",
                     help="accepted for rsync's habit: pcopy always copies recursively")
    _workers(sub, scheduler=command != "watch")  # watch runs its workers locally
    _output(sub, command)
    _selection(sub)
    _changes(sub, command)
    _metadata(sub, command)
    if command in ("sync", "watch"):
        _deletion(sub)
    sub.add_argument("--link-dest", action="append", default=[], metavar="DIR",
                     help="hard-link files unchanged against DIR instead of copying (repeatable; relative to DST)")
    sub.add_argument("--transform", metavar="NAME",
                     help="rewrite each file as it is written: gzip, gunzip, xz, unxz, zstd, unzstd, a plugin's "
                          "name (entry points 'pcopy.transforms') or module:function "
                          "(see the README section 'Transforms and map')")
    sub.add_argument("--level", type=int, metavar="N", help="compression level for --transform gzip/xz/zstd")
    sub.add_argument("-e", "--rsh", metavar="CMD",
                     help="remote shell for a [user@]host:path SRC or DST (default: ssh), as in rsync")
    sub.add_argument("--remote-pcopy", metavar="CMD",
                     help="the pcopy to run on the remote (default: pcopy on its PATH, then python3 -m pcopy); "
                          "rsync's --rsync-path")
    sub.add_argument("-z", "--compress", action="store_true", default=None,
                     help="compress file data sent to or from a host:path (zstd when installed, else zlib); "
                          "no effect on a local copy, as in rsync")


def _workers(sub: argparse.ArgumentParser, scheduler: bool) -> None:
    cluster = "; with --scheduler, the cluster's worker threads" if scheduler else ""
    sub.add_argument("-j", "--jobs", type=positive_int, metavar="N",
                     help=f"parallel workers (default: CPU count{cluster})")
    sub.add_argument("--backend", choices=BACKENDS, default="process",
                     help="worker kind (default: process; threads suit a few big files"
                          + ("; ignored with --scheduler)" if scheduler else ")"))
    if scheduler:
        sub.add_argument("--scheduler", metavar="ADDRESS", default=os.environ.get("PCOPY_SCHEDULER") or None,
                         help="run the per-file work on the Dask cluster at ADDRESS (tcp://HOST:PORT; default: "
                              "$PCOPY_SCHEDULER); its workers must see SRC and DST at the same paths. "
                              "Needs pip install 'pcopy[dask]'")
    sub.add_argument("--bwlimit", type=rate, metavar="RATE",
                     help="limit the write rate to RATE (KiB/s, or with a suffix: 500K, 10M), over all workers")
    sub.add_argument("--fsync", action="store_true",
                     help="fsync each file before its rename and each directory after (survives power loss)")


def _output(sub: argparse.ArgumentParser, command: str) -> None:
    sub.add_argument("--hash", choices=COPY_HASHES, default="xxh128",
                     help="checksum written files (default xxh128); 'none' uses the kernel's fast copy")
    if command != "watch":
        sub.add_argument("--manifest", metavar="FILE",
                         help="write an 'xxhsum -H2' manifest of every file in DST (check: cd DST && xxhsum -c FILE)")
        sub.add_argument("-n", "--dry-run", action="store_true",
                         help="show what would be done (itemized, as with -v); change nothing")
    bar = sub.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar (default: when stderr is a terminal and not -v)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    sub.add_argument("-P", dest="partial_progress", action="store_true", help="same as --partial --progress")
    sub.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    sub.add_argument("--stats", action="store_true", help="print rsync-style transfer statistics at the end")
    sub.add_argument("-h", "--human-readable", action="store_true",
                     help="sizes in KiB/MiB/GiB in --stats (the summary always is)")
    sub.add_argument("--log-file", metavar="FILE", help="append itemized actions and errors to FILE")
    sub.add_argument("--json-log", metavar="FILE", help="append one JSON object per action to FILE as it happens "
                                                        "('-': stdout), then a summary line")
    talk = sub.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true", help="print one itemized line per change")
    talk.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    sub.add_argument("--debug", action="store_true", help="show tracebacks for fatal errors")


def _selection(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--exclude", dest="filters", action=FilterAction, metavar="PAT",
                     help="skip paths matching PAT (gitignore syntax; repeatable; last match wins)")
    sub.add_argument("--include", dest="filters", action=FilterAction, metavar="PAT",
                     help="re-include paths matching PAT that an earlier --exclude dropped")
    sub.add_argument("--exclude-from", dest="filters", action=FilterAction, metavar="FILE",
                     help="read exclude patterns from FILE (a .gitignore-style file)")
    sub.add_argument("--exclude-if-present", action="append", default=[], metavar="NAME",
                     help="skip every directory that holds a file called NAME (repeatable)")
    sub.add_argument("--files-from", metavar="FILE",
                     help="copy only the paths (relative to SRC) listed in FILE, one per line ('-': stdin); "
                          "listed directories are copied whole only with -r, as in rsync")
    sub.add_argument("--min-size", type=size, metavar="SIZE", help="skip files smaller than SIZE (e.g. 10K)")
    sub.add_argument("--max-size", type=size, metavar="SIZE", help="skip files larger than SIZE (e.g. 2G)")
    sub.add_argument("-x", "--one-file-system", action="store_true",
                     help="do not cross file-system boundaries (mount points are copied, empty)")
    sub.add_argument("-m", "--prune-empty-dirs", action="store_true",
                     help="do not create directories that would stay empty")
    sub.add_argument("-L", "--follow-symlinks", "--copy-links", dest="follow_symlinks", action="store_true",
                     help="copy what symlinks point to instead of the links")


def _changes(sub: argparse.ArgumentParser, command: str) -> None:
    sub.add_argument("-c", "--checksum", action="store_true",
                     help="decide what changed by xxh128 of the contents, not size + mtime")
    sub.add_argument("--size-only", action="store_true", help="a file whose size matches is unchanged")
    sub.add_argument("--modify-window", type=float, metavar="SECONDS",
                     help="mtimes that differ by at most SECONDS are equal (default: what DST can store, "
                          "e.g. 2 on FAT)")
    sub.add_argument("-u", "--update", action="store_true", help="skip files that are newer in DST")
    sub.add_argument("--ignore-existing", action="store_true", help="skip files that already exist in DST")
    sub.add_argument("--existing", action="store_true", help="only update files that already exist in DST")
    sub.add_argument("--force", action="store_true", help="rewrite files even when size and mtime match")
    sub.add_argument("--backup", "-b", action="store_true",
                     help="keep each file that is replaced or deleted as NAME~ (see --suffix, --backup-dir)")
    sub.add_argument("--backup-dir", metavar="DIR", help="move replaced and deleted files into DIR (implies --backup)")
    sub.add_argument("--suffix", metavar="SUFFIX",
                     help="backup suffix (default '~', or none with --backup-dir)")
    sub.add_argument("--partial", action="store_true",
                     help="keep an interrupted big file and resume it on the next run (the kept part is "
                          "verified by hash first)")
    sub.add_argument("--sparse", action="store_true",
                     help="also turn runs of zeros (64 KiB blocks) into holes (holes in SRC are kept anyway)")


def _metadata(sub: argparse.ArgumentParser, command: str) -> None:
    xattrs = sub.add_mutually_exclusive_group()
    xattrs.add_argument("-X", "--xattrs", dest="xattrs", action="store_true", default=True,
                        help="copy extended attributes and file capabilities (default, as cp -a)")
    xattrs.add_argument("--no-xattrs", dest="xattrs", action="store_false")
    acls = sub.add_mutually_exclusive_group()
    acls.add_argument("-A", "--acls", dest="acls", action="store_true", default=True,
                      help="copy POSIX ACLs (default, as cp -a)")
    acls.add_argument("--no-acls", dest="acls", action="store_false")
    sub.add_argument("--chown", metavar="USER:GROUP", help="give DST entries this owner and/or group (as root)")
    sub.add_argument("--chmod", metavar="CHMOD", help="change DST permissions, rsync style: D755,F644 or go-w")
    links = sub.add_mutually_exclusive_group()
    links.add_argument("-H", "--hard-links", dest="hard_links", action="store_true", default=True,
                       help="keep hard-linked files hard-linked in DST (default, as cp -a)")
    links.add_argument("--no-hard-links", dest="hard_links", action="store_false")


def _deletion(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--delete", action="store_true", help="delete DST entries that are not in SRC (after copying)")
    sub.add_argument("--delete-excluded", action="store_true",
                     help="also delete excluded entries from DST (implies --delete)")
    sub.add_argument("--max-delete", type=count, metavar="N",
                     help="refuse to delete more than N entries (exit 1, nothing deleted)")
    sub.add_argument("--track-renames", action="store_true",
                     help="rename DST files that --delete would remove to the names of SRC files that would be "
                          "copied, when size and mtime match (rclone's option)")
    sub.add_argument("--track-renames-by", choices=("modtime", "hash"), metavar="modtime|hash",
                     help="what --track-renames matches on besides the size: mtime (default) or xxh128 of both "
                          "(implies --track-renames)")
    sub.add_argument("--delete-anyway", action="store_true",
                     help="delete even when DST holds an entry named like SRC that SRC lacks "
                          "(the usual sign of a mistaken DST)")
