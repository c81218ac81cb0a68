"""Rows about cost rather than speed: CPU time, the Dask path per file, µs per file at scale, peak memory."""

from __future__ import annotations

import os
import subprocess
import time

from . import trees
from .common import BASELINE, CWD, ENV, PCOPY, QUIET, ROOT, Row, Tool, checker, clear, mem_available, time_table
from .copyrows import HEADLINE, copy_tools


def cpu(rounds: int, keep: bool) -> Row:
    """user + sys of each tool and all its descendants copying the small tree (tmpfs)."""
    src = os.path.join(ROOT, "small")
    trees.build_small(src)
    row = Row("cpu", "CPU time (user+sys, all processes) copying 50,000 files of 0.5-8 KiB (tmpfs)",
              headline=HEADLINE, reference="cp -a", metric="cpu", files=50_000)
    row.times = time_table(copy_tools(rsync=False), rounds, src=src, dst=os.path.join(ROOT, "dst"),
                           manifest=os.path.join(ROOT, "manifest.xxh"), check=checker(src), reap_orphans=True)
    orphans = {run.orphans for runs in row.times.values() for run in runs}
    row.notes.append("wait4 rusage of the child plus RUSAGE_CHILDREN of descendants reparented to this "
                     f"process (subreaper); orphans reaped per run: {sorted(orphans)}")
    clear(os.path.join(ROOT, "dst"))
    return row


def scheduler(rounds: int, keep: bool) -> Row:
    """The 50k tree through a 2-worker distributed.LocalCluster vs the local process backend."""
    title = "--scheduler: 50,000 files through a 2-worker Dask LocalCluster vs the local process backend"
    try:
        import distributed
    except ImportError:
        return Row("scheduler", title, skipped="the dask extra is not installed for this Python "
                   "(pip install '.[dask]')")
    src, dst = os.path.join(ROOT, "small"), os.path.join(ROOT, "dst")
    trees.build_small(src)
    local, dask = "pcopy -j 2 (local processes)", "pcopy --scheduler (2 workers x 1 thread)"
    row = Row("scheduler", title, headline=dask, reference=local, files=50_000)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # the cluster's workers inherit os.environ, not ENV
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None,
                                       scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    try:
        table: dict[str, Tool] = {
            "cp -a": ["cp", "-a", "{src}", "{dst}"],
            local: [*PCOPY, "copy", "{src}", "{dst}", *QUIET, "-j", "2"],
            dask: [*PCOPY, "copy", "{src}", "{dst}", *QUIET, "--scheduler", cluster.scheduler_address],
        }
        row.times = time_table(table, rounds, src=src, dst=dst, check=checker(src))
    finally:
        cluster.close()
    clear(dst)
    per_file = (row.median(dask) - row.median(local)) / 50_000
    row.extra["overhead_us_per_file"] = per_file * 1e6
    row.notes.append(f"(t_dask - t_local) / files = {per_file * 1e6:+.1f} µs per file "
                     f"({per_file * 256 * 1000:+.2f} ms per 256-file batch); scheduler, workers and client share "
                     f"{os.cpu_count()} cores; distributed {distributed.__version__}")
    return row


def scaling(rounds: int, keep: bool, sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)) -> Row:
    """µs per file copying n empty files (1,000 to a directory), pcopy vs cp -a, for each n."""
    row = Row("scaling", "scaling: empty files, 1,000 per directory, µs per file (tmpfs)", headline=HEADLINE,
              reference="cp -a")
    dst, manifest = os.path.join(ROOT, "dst"), os.path.join(ROOT, "manifest.xxh")
    points = []
    for n in sizes:
        src = empty_tree(n)
        if not enough_memory(n, src):
            row.notes.append(f"{n:,} files skipped: {mem_available() / 2**30:.1f} GiB available, "
                             f"{need(n, src) / 2**30:.1f} GiB needed")
            continue
        start = time.perf_counter()
        trees.build_empty(src, n)
        built = time.perf_counter() - start
        table = copy_tools(rsync=False, hash_none=False)
        times = time_table(table, rounds, src=src, dst=dst, manifest=manifest, check=checker(src, checksum=False))
        clear(dst)
        for name, runs in times.items():
            row.times[f"{name} [{n:,} files]"] = runs
        point = {"files": n, "build_s": built, "seconds": time.perf_counter() - start}
        for name in table:
            point[name] = row.median(f"{name} [{n:,} files]") / n * 1e6
        points.append(point)
        if not keep and n != 1_000_000:  # the 1M tree is the rss row's too
            clear(src)
    row.extra["points"] = points
    return row


def need(n: int, src: str) -> int:
    """Memory to copy n empty files on tmpfs: ~1 KiB of inode and dentry per file for DST (and SRC
    if it is still to be built), rsync's file lists for the check, and 1 GiB for everything else."""
    return n * (1024 if os.path.isdir(src) else 2048) + n * 1024 + (1 << 30)


def enough_memory(n: int, src: str) -> bool:
    return mem_available() >= need(n, src)


def empty_tree(n: int) -> str:
    label = f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)
    return os.path.join(ROOT, f"empty{label}")


def tree_rss_kib(pid: int) -> int:
    """RSS of a process plus all its descendants, from /proc."""
    children: dict = {}
    rss: dict = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/status") as fh:
                status = fh.read()
        except OSError:
            continue
        ppid = int(fields[1])
        children.setdefault(ppid, []).append(int(entry))
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss[int(entry)] = int(line.split()[1])
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def rss(rounds: int, keep: bool) -> Row:
    """Peak memory copying 1,000,000 empty files: ru_maxrss and the sampled sum over the process tree."""
    src, dst = empty_tree(1_000_000), os.path.join(ROOT, "dst")
    if not enough_memory(1_000_000, src):
        return Row("rss", "peak memory copying 1,000,000 empty files (1,000 directories)",
                   skipped=f"{mem_available() / 2**30:.1f} GiB available, {need(1_000_000, src) / 2**30:.1f} needed")
    trees.build_empty(src)
    clear(dst)
    row = Row("rss", "peak memory copying 1,000,000 empty files (1,000 directories)", files=1_000_000)
    start = time.perf_counter()
    proc = subprocess.Popen([*PCOPY, "copy", src, dst, *QUIET], env=ENV, cwd=CWD)
    peak_tree = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:  # this child's own rusage: not polluted by the tools timed before
            break
        peak_tree = max(peak_tree, tree_rss_kib(proc.pid))
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"pcopy copy of {src} failed ({proc.returncode})")
    checker(src, checksum=False)("pcopy", dst)
    clear(dst)
    row.extra.update(peak_single_mb=usage.ru_maxrss / 1024, peak_tree_mb=peak_tree / 1024, wall_s=elapsed,
                     exit_code=proc.returncode)
    if not keep:
        clear(src)
    if BASELINE:
        row.notes.append("the baseline is not measured for memory")
    return row
