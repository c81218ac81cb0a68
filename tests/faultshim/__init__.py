"""Build and configure the LD_PRELOAD fault shim (shim.c), stdlib only.

Why a package of its own: both the pytest suite (tests/faultshim_helpers.py adds the
fixture) and scripts/fault-campaign use it, and neither may import pcopy's internals.

    so = compile_shim("/tmp/x")                     # or the build_shim fixture
    env = shim_env("openat:match=secret.txt:errno=EACCES", so)
    subprocess.run([...], env=env)

Rule syntax is documented at the top of shim.c; ``rule()`` formats one from keywords.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from typing import Iterable, Optional, Union

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ("shim.c", "wrappers.h")
_last_built: Optional[str] = None


class ShimUnavailable(RuntimeError):
    """No C compiler, or the shim did not compile (the message says which)."""


def compile_shim(outdir: Union[str, os.PathLike]) -> str:
    """Compile shim.c into OUTDIR/shim-<hash>.so (reused when present); return its path."""
    global _last_built
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise ShimUnavailable("gcc is not installed: cannot build the fault shim")
    digest = hashlib.sha256()
    for name in SOURCES:
        with open(os.path.join(HERE, name), "rb") as f:
            digest.update(f.read())
    out = os.path.join(os.fspath(outdir), f"shim-{digest.hexdigest()[:12]}.so")
    if not os.path.exists(out):
        os.makedirs(os.fspath(outdir), exist_ok=True)
        tmp = f"{out}.{os.getpid()}.tmp"
        proc = subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", tmp, os.path.join(HERE, "shim.c"), "-ldl"],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise ShimUnavailable(f"the fault shim did not compile:\n{proc.stderr}")
        os.replace(tmp, out)
    _last_built = out
    return out


def rule(call: str, **keys) -> str:
    """rule('openat', match='x', errno='EACCES') -> 'openat:match=x:errno=EACCES'."""
    parts = [call]
    for key, value in keys.items():
        if value is None:
            continue
        text = str(value)
        if ":" in text or ";" in text:
            raise ValueError(f"{key}={text!r}: ':' and ';' cannot appear in a rule")
        parts.append(f"{key}={text}")
    return ":".join(parts)


def shim_env(rules: Union[str, Iterable[str]], shim: Optional[str] = None, env: Optional[dict] = None,
             log: Optional[str] = None, root_pid: Optional[int] = None) -> dict:
    """A copy of ``env`` (default os.environ) with LD_PRELOAD=shim and PCOPY_FAULTS=rules.

    ``log``: file the shim appends one line per injected fault to. ``root_pid``: the pid
    that ``pid=parent`` means; by default the first process that loads the shim.
    """
    shim = shim or _last_built
    if shim is None:
        raise ShimUnavailable("compile_shim() (or the build_shim fixture) has not run")
    out = dict(os.environ if env is None else env)
    out["LD_PRELOAD"] = shim
    out["PCOPY_FAULTS"] = rules if isinstance(rules, str) else ";".join(rules)
    out.pop("PCOPY_FAULTS_ROOT_PID", None)
    out.pop("PCOPY_FAULTS_LOG", None)
    if root_pid is not None:
        out["PCOPY_FAULTS_ROOT_PID"] = str(root_pid)
    if log is not None:
        out["PCOPY_FAULTS_LOG"] = os.fspath(log)
    return out


def read_log(path: Union[str, os.PathLike]) -> list:
    """[(pid, call, errno, path)] from a PCOPY_FAULTS_LOG file (empty when none was written)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        pid, call, err, target = (line.split(" ", 3) + [""])[:4]
        out.append((int(pid), call, int(err), target))
    return out
