"""The trees the rows copy. Each builder does nothing when its tree already exists (``--keep``)."""

from __future__ import annotations

import os
import random
import subprocess
import sys


def build_small(path: str, files: int = 50_000, dirs: int = 500) -> None:
    """``files`` files of 0.5-8 KiB of random bytes, spread evenly over ``dirs`` directories."""
    if os.path.isdir(path):
        return
    rng = random.Random(42)
    blob = os.urandom(8192 * 4)
    tmp = path + ".building"
    subprocess.run(["rm", "-rf", tmp], check=True)
    for d in range(dirs):
        sub = os.path.join(tmp, f"dir{d:04d}")
        os.makedirs(sub)
        for f in range(files // dirs):
            size = rng.randint(512, 8192)
            start = rng.randint(0, len(blob) - size)
            with open(os.path.join(sub, f"file{f:05d}.dat"), "wb") as fh:
                fh.write(blob[start:start + size])
    os.rename(tmp, path)  # an interrupted build is not mistaken for a finished tree next time


def build_large(path: str, count: int = 4, size_mib: int = 512) -> None:
    if os.path.isdir(path):
        return
    tmp = path + ".building"
    subprocess.run(["rm", "-rf", tmp], check=True)
    os.makedirs(tmp)
    chunk = os.urandom(1 << 20)
    for i in range(count):
        with open(os.path.join(tmp, f"big{i}.bin"), "wb") as fh:
            for _ in range(size_mib):
                fh.write(chunk)
    os.rename(tmp, path)


def build_empty(path: str, files: int = 1_000_000, per_dir: int = 1000, size: int = 0) -> None:
    """``files`` files of ``size`` bytes, ``per_dir`` to a directory."""
    if os.path.isdir(path):
        return
    tmp = path + ".building"
    subprocess.run(["rm", "-rf", tmp], check=True)
    data = b"x" * size
    flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
    for d in range(max(1, files // per_dir)):
        sub = os.path.join(tmp, f"d{d:04d}")
        os.makedirs(sub)
        for f in range(min(per_dir, files)):
            fd = os.open(os.path.join(sub, f"f{f:05d}"), flags, 0o644)
            if data:
                os.write(fd, data)
            os.close(fd)
    os.rename(tmp, path)


def build_real(path: str, prefix: str = sys.base_prefix) -> None:
    """A copy of a real deep tree: this Python's installation (``sys.base_prefix``)."""
    if os.path.isdir(path):
        return
    tmp = path + ".building"
    subprocess.run(["rm", "-rf", tmp], check=True)
    subprocess.run(["cp", "-a", prefix, tmp], check=True)
    os.rename(tmp, path)


def build_one(path: str, size: int) -> None:
    """A directory holding one file of ``size`` bytes of random data (1 MiB repeated)."""
    file = os.path.join(path, "big.bin")
    if os.path.isfile(file) and os.path.getsize(file) == size:
        return
    subprocess.run(["rm", "-rf", path], check=True)
    tmp = path + ".building"
    subprocess.run(["rm", "-rf", tmp], check=True)
    os.makedirs(tmp)
    chunk = os.urandom(1 << 20)
    with open(os.path.join(tmp, "big.bin"), "wb") as fh:
        for _ in range(size >> 20):
            fh.write(chunk)
    os.rename(tmp, path)


def build_tiny(path: str) -> None:
    """One directory with one 4 KiB file: what a warm-up run copies."""
    if os.path.isdir(path):
        return
    os.makedirs(path)
    with open(os.path.join(path, "f"), "wb") as fh:
        fh.write(b"x" * 4096)
