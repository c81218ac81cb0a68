"""Rows that compare two identical trees of 50,000 small files: no-op sync, verify, verify with a warm cache.

The second tree (``mirror``) is made once with ``cp -a`` and checked before each row; the tools
must leave it identical (checked after every no-op sync) and verify must exit 0 (identical).
The first round of each row warms the caches and is not recorded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from . import trees
from .common import BASELINE, PCOPY, QUIET, ROOT, Row, Tool, checker, differences, expand, run_timed, time_table


def mirror() -> tuple[str, str]:
    src, dst = os.path.join(ROOT, "small"), os.path.join(ROOT, "mirror")
    trees.build_small(src)
    if not os.path.isdir(dst) or differences(src, dst):
        subprocess.run(["rm", "-rf", dst], check=True)
        subprocess.run(["cp", "-a", src, dst], check=True)
    return src, dst


def nothing(name: str, dst: str) -> None:
    pass


def noop(rounds: int, keep: bool) -> Row:
    src, dst = mirror()
    table: dict[str, Tool] = {"rsync -a --delete": ["rsync", "-a", "--delete", "{src}/", "{dst}/"]}
    if shutil.which("rclone"):
        table["rclone sync"] = ["rclone", "sync", "--links", "{src}", "{dst}"]
    table["pcopy sync --delete"] = [*PCOPY, "sync", "{src}", "{dst}", "--delete", *QUIET]
    if BASELINE:
        table["baseline pcopy sync --delete"] = [*BASELINE, "sync", "{src}", "{dst}", "--delete", *QUIET]
    row = Row("noop", "no-op sync --delete of 50,000 files (DST already up to date)", headline="pcopy sync --delete",
              reference="rsync -a --delete", files=50_000)
    row.times = time_table(table, rounds, src=src, dst=dst, prepare=nothing, check=checker(src), warmup=1)
    return row


def verify(rounds: int, keep: bool) -> Row:
    src, dst = mirror()
    table: dict[str, Tool] = {"rsync -anc": ["rsync", "-anc", "{src}/", "{dst}/"]}
    if shutil.which("rclone"):
        table["rclone check"] = ["rclone", "check", "-q", "{src}", "{dst}"]
    table["pcopy verify --no-cache"] = [*PCOPY, "verify", "{src}", "{dst}", "--no-cache", *QUIET]
    if BASELINE:
        table["baseline pcopy verify --no-cache"] = [*BASELINE, "verify", "{src}", "{dst}", "--no-cache", *QUIET]
    row = Row("verify", "verify --no-cache: content compare of 50,000 files (both trees read)",
              headline="pcopy verify --no-cache", reference="rsync -anc", files=50_000)
    row.times = time_table(table, rounds, src=src, dst=dst, prepare=nothing, warmup=1)
    row.notes.append("the trees are identical (rsync -anic, checked first); pcopy verify exits 0")
    return row


def verify_warm(rounds: int, keep: bool) -> Row:
    src, dst = mirror()
    cache = os.path.join(ROOT, "hashes.sqlite3")
    for path in (cache, cache + "-journal", cache + "-wal"):
        if os.path.exists(path):
            os.unlink(path)
    # pcopy never caches a file younger than 2 s (it may still be changing): let a fresh mirror age.
    age = time.time() - max(os.lstat(dst).st_ctime, os.lstat(src).st_ctime)
    if age < 2.1:
        time.sleep(2.1 - age)
    table: dict[str, Tool] = {"rsync -an": ["rsync", "-an", "{src}/", "{dst}/"],
                              "pcopy verify (cache warm)": [*PCOPY, "verify", "{src}", "{dst}", "--cache", cache,
                                                            *QUIET]}
    if BASELINE:
        table["baseline pcopy verify (cache warm)"] = [*BASELINE, "verify", "{src}", "{dst}", "--cache",
                                                       cache + ".baseline", *QUIET]
    for name in table:  # fill the caches
        run_timed(expand(table[name], src=src, dst=dst))
    if not os.path.exists(cache):
        sys.exit(f"pcopy verify --cache {cache} wrote no cache")
    row = Row("verify-warm", "verify with a warm hash cache, 50,000 files (stat only)",
              headline="pcopy verify (cache warm)", reference="rsync -an", files=50_000)
    row.times = time_table(table, rounds, src=src, dst=dst, prepare=nothing, warmup=1)
    return row
