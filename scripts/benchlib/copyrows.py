"""Rows that copy a tree into a new DST: tmpfs (small, real, bigfile, large), ext4 with cold caches, sshfs."""

from __future__ import annotations

import os
import shutil
import sys

from . import sshfs, trees
from .common import (
    BASELINE,
    DISK_ROOT,
    PCOPY,
    QUIET,
    ROOT,
    Row,
    Tool,
    checker,
    clear,
    count_tree,
    drop_caches,
    expand,
    fs_type,
    mem_available,
    run_timed,
    sync,
    time_table,
)

HEADLINE = "pcopy (xxh128 + manifest)"


def copy_tools(*, rsync: bool = True, rclone: bool = False, copytree: bool = False,
               hash_none: bool = True) -> dict[str, Tool]:
    """cp -a first (the reference), other tools if wanted and installed, then pcopy's variants."""
    table: dict[str, Tool] = {"cp -a": ["cp", "-a", "{src}", "{dst}"]}
    if rsync and shutil.which("rsync"):
        table["rsync -a"] = ["rsync", "-a", "{src}/", "{dst}/"]
    if rclone and shutil.which("rclone"):
        table["rclone copy"] = ["rclone", "copy", "--links", "{src}", "{dst}"]
    if copytree:
        table["shutil.copytree"] = [sys.executable, "-c", "import shutil, sys; "
                                    "shutil.copytree(sys.argv[1], sys.argv[2], symlinks=True)", "{src}", "{dst}"]
    table[HEADLINE] = [*PCOPY, "copy", "{src}", "{dst}", *QUIET, "--manifest", "{manifest}"]
    if hash_none:
        table["pcopy --hash none"] = [*PCOPY, "copy", "{src}", "{dst}", *QUIET, "--hash", "none"]
    if BASELINE:
        table["baseline " + HEADLINE] = [*BASELINE, "copy", "{src}", "{dst}", *QUIET, "--manifest", "{manifest}"]
    return table


def tmpfs_row(key: str, title: str, src: str, rounds: int, table: dict[str, Tool]) -> Row:
    row = Row(key, title, headline=HEADLINE, reference="cp -a")
    row.files = count_tree(src)[0]
    row.times = time_table(table, rounds, src=src, dst=os.path.join(ROOT, "dst"),
                           manifest=os.path.join(ROOT, "manifest.xxh"), check=checker(src))
    clear(os.path.join(ROOT, "dst"))
    return row


def small(rounds: int, keep: bool) -> Row:
    src = os.path.join(ROOT, "small")
    trees.build_small(src)
    return tmpfs_row("small", "tmpfs: 50,000 files of 0.5-8 KiB in 500 directories", src, rounds,
                     copy_tools(rclone=True, copytree=True))


def real(rounds: int, keep: bool) -> Row:
    src = os.path.join(ROOT, "real")
    trees.build_real(src)
    files, dirs, size = count_tree(src)
    row = tmpfs_row("real", f"tmpfs: a copy of this Python's sys.base_prefix ({sys.base_prefix}): {files:,} files, "
                    f"{dirs:,} directories, {size / 2**20:,.0f} MiB", src, rounds, copy_tools())
    if not keep:
        clear(src)
    return row


def bigfile(rounds: int, keep: bool) -> Row:
    """One 4 GiB file, or 2 GiB when SRC and DST of 4 GiB would not fit comfortably in memory.

    The file is removed after the row even with --keep: it costs RAM and seconds to rebuild.
    """
    shm = os.statvfs("/dev/shm")
    available = mem_available()
    room = min(available, shm.f_bavail * shm.f_frsize)
    for gib in (4, 2):  # SRC + DST + 4 GiB for everything else
        if room >= (2 * gib + 4) << 30:
            break
    else:
        return Row("bigfile", "tmpfs: one big file", skipped=f"not enough memory ({room / 2**30:.1f} GiB free, "
                   "2 GiB needs 8)")
    src = os.path.join(ROOT, "bigfile")
    try:
        trees.build_one(src, gib << 30)
        row = tmpfs_row("bigfile", f"tmpfs: one file of {gib} GiB", src, rounds, copy_tools(rsync=False))
    finally:
        clear(src)
    row.notes.append(f"{gib} GiB: MemAvailable {available / 2**30:.1f} GiB, /dev/shm free "
                     f"{shm.f_bavail * shm.f_frsize / 2**30:.1f} GiB at the start (4 GiB needs 12 GiB of room)")
    return row


def large(rounds: int, keep: bool) -> Row:
    src = os.path.join(ROOT, "large")
    try:  # removed after the row even with --keep, like bigfile's
        trees.build_large(src)
        return tmpfs_row("large", "tmpfs: 4 files of 512 MiB", src, max(3, rounds - 2),
                         copy_tools(rclone=True, copytree=True))
    finally:
        clear(src)


def cold(rounds: int, keep: bool, files: int = 20_000) -> Row:
    """ext4, caches dropped before each run, ``sync`` inside the timed command.

    After the drop, the tool about to run copies a 1-file tree on tmpfs (untimed), so its program
    files (cp, or Python, pcopy and its imports) are read back into the cache: the timed run reads
    the tree from the disk, not the interpreter.
    """
    title = f"ext4 (cold cache, sync included): {files:,} files of 0.5-8 KiB in {files // 100} directories"
    if os.geteuid() != 0:
        return Row("cold", title, skipped="needs root to drop the page cache (/proc/sys/vm/drop_caches)")
    src, dst = os.path.join(DISK_ROOT, "cold-src"), os.path.join(DISK_ROOT, "cold-dst")
    os.makedirs(DISK_ROOT, exist_ok=True)
    kind = fs_type(DISK_ROOT)
    if kind in ("tmpfs", "ramfs"):
        return Row("cold", title, skipped=f"{DISK_ROOT} is on {kind}, not a disk")
    trees.build_small(src, files=files, dirs=files // 100)
    tiny, tiny_out = os.path.join(ROOT, "tiny"), os.path.join(ROOT, "tiny-out")
    trees.build_tiny(tiny)
    table = copy_tools(hash_none=False)
    manifest = os.path.join(DISK_ROOT, "manifest.xxh")

    def prepare(name: str, target: str) -> None:
        clear(target)
        drop_caches()
        clear(tiny_out)
        run_timed(expand(table[name], src=tiny, dst=tiny_out, manifest=os.path.join(ROOT, "tiny.xxh")))

    row = Row("cold", title, headline=HEADLINE, reference="cp -a", files=files)
    row.times = time_table(table, rounds, src=src, dst=dst, manifest=manifest, prepare=prepare,
                           also_timed=[["sync"]], check=checker(src))
    row.notes.append(f"{DISK_ROOT} is {kind}; each tool warmed on a 1-file tmpfs tree after the drop")
    clear(dst)
    if not keep:
        clear(src)
    return row


def remote(rounds: int, keep: bool, files: int = 1000, delay_ms: float = 1.0) -> Row:
    """tmpfs -> sshfs over loopback to a private sshd, every packet delayed ``delay_ms`` each way.

    Each run copies into a new directory (never a name sshfs may still have cached) and is checked
    in the exported directory behind the mount, off the clock.
    """
    title = (f"sshfs ({delay_ms:g} ms each way, loopback): {files:,} files of 0.5-8 KiB in {files // 100} "
             "directories from tmpfs")
    why = sshfs.missing()
    if why:
        return Row("sshfs", title, skipped=why)
    src = os.path.join(ROOT, "sshfs-src")
    trees.build_small(src, files=files, dirs=files // 100)
    row = Row("sshfs", title, headline=HEADLINE, reference="cp -a", files=files)
    with sshfs.mount(delay_ms) as (mnt, export):
        row.times = time_table(copy_tools(rsync=False, hash_none=False), rounds, src=src,
                               dst=lambda name, i: os.path.join(mnt, f"run{i:03d}"),
                               manifest=os.path.join(ROOT, "manifest.xxh"), prepare=lambda name, dst: sync(),
                               check=checker(src, where=lambda dst: dst.replace(mnt, export, 1)))
    row.notes.append("sshfs defaults; the delay is a Python relay as ssh's ProxyCommand (no tc netem here)")
    return row
