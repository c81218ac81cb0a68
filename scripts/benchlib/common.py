"""What every benchmark row shares: where trees live, how a command is timed, how a copy is checked.

A tool is an argv template: ``{src}``, ``{dst}`` and ``{manifest}`` are replaced before each run,
so one table serves a fixed DST, a fresh DST per run (sshfs) and a warm-up on a tiny tree.
``time_table`` runs every tool in every round, rotating the order, and hands back each run's
wall time and CPU time; a run that fails, or whose copy ``check`` finds wrong, ends the benchmark.
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

ROOT = os.environ.get("PCOPY_BENCH_ROOT", "/dev/shm/pcopy-bench")  # tmpfs: the program's own cost (another
# directory for a second benchmark on the same machine: each run clears its ROOT at the end)
DISK_ROOT = "/var/tmp/pcopy-bench"  # the ordinary disk (ext4 here): the cold-cache row
PCOPY = [sys.executable, "-m", "pcopy"]
BASELINE: list[str] = []  # another pcopy (``--baseline PYTHON``), timed in the same run for before/after ratios
QUIET = ["--no-progress", "-q"]
# Let Python cache bytecode as an installed pcopy would (some shells export
# PYTHONDONTWRITEBYTECODE, which would recompile pcopy at every start).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
# ``python -m pcopy`` puts the current directory first on sys.path: started from a checkout, it would
# import the checkout's pcopy instead of the installed one. Every command runs from here instead.
CWD = "/"

Tool = list[str]


@dataclass
class Run:
    wall: float  # seconds
    user: float  # CPU seconds of the process and every descendant reaped
    system: float
    orphans: int = 0  # descendants reparented to us and reaped here (only with reap_orphans)

    @property
    def cpu(self) -> float:
        return self.user + self.system


@dataclass
class Row:
    """One benchmark row: raw runs per tool, which tool is pcopy's headline and which the reference."""

    key: str
    title: str
    times: dict[str, list[Run]] = field(default_factory=dict)
    headline: str | None = None  # the pcopy variant the summary reports
    reference: str | None = None  # the tool it is compared with
    metric: str = "wall"  # or "cpu"
    files: int | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # row-specific results (per-file costs, scaling points)
    skipped: str | None = None
    seconds: float = 0.0  # how long the row took, builds included

    def value(self, run: Run) -> float:
        return run.cpu if self.metric == "cpu" else run.wall

    def median(self, name: str) -> float:
        values = sorted(self.value(run) for run in self.times[name])
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    def as_json(self) -> dict:
        data = asdict(self)
        data["times"] = {name: [asdict(run) for run in runs] for name, runs in self.times.items()}
        return data


def clear(path: str) -> None:
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", path], check=True)


def sync() -> None:
    subprocess.run(["sync"], check=True)


def drop_caches() -> None:
    sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3\n")


def mem_available() -> int:
    """MemAvailable in bytes: what the rows that fill tmpfs check before they start."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def fs_type(path: str) -> str:
    """The file-system type of the mount holding ``path`` (longest mount-point prefix)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    with open("/proc/self/mounts") as fh:
        for line in fh:
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
                best, kind = point, fields[2]
    return kind


def count_tree(path: str) -> tuple[int, int, int]:
    """(files, directories, bytes) under ``path``, symlinks counted as files."""
    files = dirs = size = 0
    for _root, dirnames, filenames in os.walk(path):
        dirs += len(dirnames)
        files += len(filenames)
        for name in filenames:
            size += os.lstat(os.path.join(_root, name)).st_size
    return files, dirs, size


def expand(argv: Sequence[str], **values: str) -> list[str]:
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out


_PR_SET_CHILD_SUBREAPER = 36


def _set_subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def run_timed(argv: Sequence[str], *, env: dict | None = None, expect: Sequence[int] = (0,),
              also_timed: Sequence[Sequence[str]] = (), reap_orphans: bool = False) -> Run:
    """Run argv (then ``also_timed``, e.g. ``sync``) and return wall and CPU time; exit if it fails.

    CPU time is the rusage wait4 returns for the child, which covers every descendant that was
    itself waited for. With ``reap_orphans`` this process is a child subreaper while the command
    runs: descendants whose parent exited without waiting for them are reparented here and reaped
    after the command ends (up to 10 s), and CPU time is the RUSAGE_CHILDREN delta, which counts
    them too. Only use it while this process has no other children (no cluster, no sshd).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if reap_orphans:
        _set_subreaper(True)
    orphans = 0
    try:
        with tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env or ENV, cwd=CWD)
            _pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            for extra in also_timed:
                subprocess.run(extra, check=True)
            wall = time.perf_counter() - start
            if proc.returncode not in expect:
                err.seek(0)
                sys.exit(f"{' '.join(argv)}\nfailed ({proc.returncode}): {err.read().decode(errors='replace')[-1500:]}")
        if reap_orphans:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid:
                    orphans += 1
                else:
                    time.sleep(0.01)
    finally:
        if reap_orphans:
            _set_subreaper(False)
    if reap_orphans:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return Run(wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, orphans)
    return Run(wall, usage.ru_utime, usage.ru_stime)


def rotate(names: list[str], r: int) -> list[str]:
    k = r % len(names)
    return names[k:] + names[:k]


def time_table(table: dict[str, Tool], rounds: int, *, src: str, dst: str | Callable[[str, int], str],
               manifest: str = "", prepare: Callable[[str, str], None] | None = None,
               check: Callable[[str, str], None] | None = None, warmup: int = 0,
               also_timed: Sequence[Sequence[str]] = (), reap_orphans: bool = False,
               env: dict | None = None) -> dict[str, list[Run]]:
    """Every tool in every round, rotating the order; rounds below ``warmup`` are not recorded.

    ``dst`` is a path or a function (tool name, run number) -> path; ``prepare(name, dst)`` runs
    before each timed run and ``check(name, dst)`` after it, both off the clock. By default DST is
    removed before each run and ``sync`` flushes what the previous tool left dirty.
    """
    times: dict[str, list[Run]] = {name: [] for name in table}
    names = list(table)
    count = 0
    for r in range(warmup + rounds):
        for name in rotate(names, r):
            target = dst(name, count) if callable(dst) else dst
            count += 1
            if prepare is None:
                clear(target)
                sync()
            else:
                prepare(name, target)
            argv = expand(table[name], src=src, dst=target, manifest=manifest)
            run = run_timed(argv, env=env, also_timed=also_timed, reap_orphans=reap_orphans)
            if check is not None:
                check(name, target)
            if r >= warmup:
                times[name].append(run)
    return times


def differences(src: str, dst: str, *, checksum: bool = True, owners: bool = True,
                dir_times: bool = True) -> list[str]:
    """What ``rsync -ani[c] --delete SRC/ DST/`` would change: empty when DST is a faithful copy."""
    flags = "-rlptD" + ("go" if owners else "") + ("" if dir_times else "O") + "ni" + ("c" if checksum else "")
    proc = subprocess.run(["rsync", flags, "--delete", src + "/", dst + "/"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0:
        lines.append(f"rsync exit {proc.returncode}")
    return lines


def checker(src: str, *, checksum: bool = True, owners: bool = True,
            where: Callable[[str], str] | None = None) -> Callable[[str, str], None]:
    """A ``check`` for time_table: DST (or ``where(DST)``) must equal SRC, else the benchmark stops.

    rclone is not asked to keep directory times (it does not set them): only its files are compared.
    """
    def check(name: str, dst: str) -> None:
        target = where(dst) if where else dst
        diff = differences(src, target, checksum=checksum, owners=owners, dir_times=not name.startswith("rclone"))
        if diff:
            sys.exit(f"{name}: the copy in {target} differs from {src} ({len(diff)} lines):\n"
                     + "\n".join(diff[:20]))
    return check
