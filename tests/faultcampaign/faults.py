"""Fault plans from a seed: libfiu failure points, shim rules, kill moments.

Why derived from (seed, command, mode) only: a run can be repeated by naming those three.
Shim runs are exactly repeatable (the shim decides by hashing seed and call index). libfiu
runs are seeded through FIU_PRNG_SEED but libfiu keeps one unlocked PRNG per process that
every armed call (pipes included) draws from, so thread and worker timing shifts which
call fails: same seed, usually but not always the same faults.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
FIU_BOOT = os.path.join(HERE, "fiu_boot.py")
FIU_RUN = shutil.which("fiu-run")
# Not "posix/io/rw/*": its */reduce points compute random() % count and die of SIGFPE on a
# zero-length read or write (libfiu 1.1). Not posix/io/oc/close: libfiu's close fails without
# closing (Linux always closes) and trips multiprocessing's own close_fds in new workers.
FIU_POINTS = tuple(f"posix/io/rw/{f}" for f in ("read", "pread", "readv", "preadv", "write", "pwrite", "writev",
                                                "pwritev", "truncate", "ftruncate")) + \
    ("posix/io/oc/open", "posix/io/dir/*", "posix/io/sync/*")
KILL_MODES = ("kill-parent", "kill-group", "sigint", "sigterm")
MODES = ("fiu", "shim") + KILL_MODES

# Per call family, errnos a real file system can return there (no ENOENT: a file that
# "vanished" may legitimately be skipped, and would read as a silent drop).
SHIM_ERRNOS = {
    "openat": ("EIO", "EACCES", "EMFILE", "ENOSPC"), "open": ("EIO", "EACCES", "ENOSPC"),
    "fstatat": ("EIO", "EACCES"), "fstat": ("EIO",), "stat": ("EIO", "EACCES"), "lstat": ("EIO", "EACCES"),
    "statx": ("EIO",), "read": ("EIO",), "readv": ("EIO",), "pread": ("EIO",),
    "write": ("EIO", "ENOSPC", "EDQUOT"), "writev": ("EIO", "ENOSPC"), "pwrite": ("EIO", "ENOSPC"),
    "mkdirat": ("EIO", "ENOSPC", "EACCES"), "mkdir": ("EIO", "ENOSPC"), "renameat": ("EIO", "ENOSPC"),
    "rename": ("EIO",), "unlinkat": ("EIO", "EACCES"), "unlink": ("EIO",), "linkat": ("EIO", "EMLINK"),
    "symlinkat": ("EIO", "ENOSPC"), "fchmod": ("EPERM", "EIO"), "fchown": ("EPERM",),
    "futimens": ("EPERM", "EIO"), "utimensat": ("EPERM", "EIO"), "fsync": ("EIO",), "fdatasync": ("EIO",),
    "close": ("EIO",), "ftruncate": ("EIO", "ENOSPC"), "fsetxattr": ("ENOTSUP", "EIO"),
    "fgetxattr": ("EIO",), "flistxattr": ("EIO",), "copy_file_range": ("EXDEV", "EIO"), "sendfile": ("EIO",),
}


def rng_for(*parts) -> random.Random:
    return random.Random("/".join(str(p) for p in parts))


# The families CPython 3.11 + pcopy actually reach (strace); the campaign draws from these.
SHIM_POOL = ("openat", "open", "fstatat", "fstat", "stat", "lstat", "read", "readv", "pread", "write", "pwrite",
             "mkdirat", "renameat", "unlinkat", "linkat", "symlinkat", "fchmod", "fchown", "futimens",
             "utimensat", "fsync", "close", "ftruncate")


def shim_rules(seed: int, command: str, match: str, probability: float) -> list:
    """3-8 call families with prob rules limited to paths containing `match`."""
    rng = rng_for("shim", seed, command)
    families = rng.sample(SHIM_POOL, rng.randint(3, 8))
    pid = rng.choice([None, None, "parent", "child"])
    rules = []
    for n, call in enumerate(sorted(families)):
        parts = [call, f"match={match}", f"prob={probability}", f"seed={seed * 1000 + n}",
                 f"errno={rng.choice(SHIM_ERRNOS[call])}"]
        if pid:
            parts.append(f"pid={pid}")
        rules.append(":".join(parts))
    return rules


def fiu_commands(probability: float, points=FIU_POINTS, code: int = errno.EIO) -> list:
    """fiu-run -c style commands; failinfo=errno (0 would let libfiu pick a random errno)."""
    return [f"enable_random name={p},probability={probability},failinfo={code}" for p in points]


def fiu_argv(python: str, pcopy_args: list) -> Optional[list]:
    if FIU_RUN is None:
        return None
    return [FIU_RUN, "-x", "-f", "", python, FIU_BOOT, *pcopy_args]


def fiu_env(env: dict, seed: int, probability: float, imports: Optional[str], points=FIU_POINTS) -> dict:
    out = dict(env)
    out["FIU_PRNG_SEED"] = str(seed)
    out["FC_FIU_ENABLE"] = "\n".join(fiu_commands(probability, points))
    if imports:
        out["FC_FIU_IMPORTS"] = imports
    return out


def slow_rules(match: str) -> list:
    """A slow disk (delay-only shim rules): widens the window in which a kill lands mid-work."""
    delays = {"openat": 300, "fstatat": 100, "stat": 200, "read": 1500, "readv": 1500, "pread": 1500,
              "write": 1500, "pwrite": 1500, "renameat": 300}
    return [f"{call}:match={match}:delay={us}" for call, us in delays.items()]


def kill_delay(seed: int, command: str, mode: str, typical: float, startup: float) -> float:
    """When to signal: after interpreter start-up (a signal during imports says nothing about
    pcopy's shutdown), uniformly over the rest of a clean run's duration."""
    return startup + rng_for("kill", seed, command, mode).uniform(0, max(0.05, 0.9 * (typical - startup)))


def expand_modes(names) -> list:
    out = []
    for name in names:
        for mode in (KILL_MODES if name == "kill" else (name,)):
            if mode not in MODES:
                raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(MODES)}, kill)")
            if mode not in out:
                out.append(mode)
    return out
