"""A real FAT file system for tests: a 32 MiB image, mkfs.vfat, mounted under the test's tmp_path.

The kernel's vfat through a loop device when this kernel has vfat; otherwise fusefat (a FAT
driver in user space, Debian's ``fusefat``) when it and /dev/fuse exist; otherwise the test is
skipped with the reason. Whatever the test does, the image is unmounted and the loop device
detached (or the fusefat process ended) before the fixture returns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from typing import Iterator, Optional

import pytest


def kernel_has(fs_type: str) -> bool:
    try:
        with open("/proc/filesystems", encoding="ascii") as fh:
            return any(line.split()[-1] == fs_type for line in fh if line.strip())
    except OSError:
        return False


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


class FatMount:
    """A mounted FAT image; ``driver`` is "vfat" (the kernel's) or "fusefat"."""

    def __init__(self, image: str, mount_point: str) -> None:
        self.image = image
        self.path = mount_point
        self.driver = ""
        self.loop: Optional[str] = None
        self.fuse: Optional[subprocess.Popen] = None
        self.reasons: list = []

    def mount(self) -> bool:
        if kernel_has("vfat"):
            if self.loop is None:
                done = _run("losetup", "-f", "--show", self.image)
                if done.returncode == 0:
                    self.loop = done.stdout.strip()
                else:
                    self.reasons.append(f"losetup failed: {done.stderr.strip()}")
            if self.loop is not None:
                done = _run("mount", "-t", "vfat", self.loop, self.path)
                if done.returncode == 0:
                    self.driver = "vfat"
                    return True
                self.reasons.append(f"mount -t vfat failed: {done.stderr.strip()}")
        else:
            self.reasons.append("this kernel has no vfat (/proc/filesystems)")
        if shutil.which("fusefat") and os.path.exists("/dev/fuse"):
            self.fuse = subprocess.Popen(["fusefat", "-f", "-o", "rw+", self.image, self.path],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.fuse.poll() is None:
                if os.path.ismount(self.path):
                    self.driver = "fusefat"
                    return True
                time.sleep(0.02)
            self.reasons.append("fusefat did not mount the image")
            self._end_fuse()
        else:
            self.reasons.append("fusefat is not installed (or no /dev/fuse)")
        return False

    def unmount(self) -> None:
        if self.driver == "vfat":
            for _ in range(50):  # a busy mount (a file still open) frees up once the test's fds close
                if _run("umount", self.path).returncode == 0:
                    break
                time.sleep(0.1)
        elif self.driver == "fusefat":
            _run("fusermount", "-u", self.path)
            self._end_fuse()
        self.driver = ""

    def remount(self) -> None:
        """Unmount and mount again: what is read back afterwards is what reached the image."""
        self.unmount()
        assert self.mount(), self.reasons

    def _end_fuse(self) -> None:
        if self.fuse is None:
            return
        try:
            self.fuse.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.fuse.kill()
            self.fuse.wait(timeout=5)
        self.fuse = None

    def close(self) -> None:
        try:
            if self.driver:
                self.unmount()
        finally:
            self._end_fuse()
            if self.loop is not None:
                _run("losetup", "-d", self.loop)
                self.loop = None


@contextlib.contextmanager
def fat_mount(tmp_path) -> Iterator[FatMount]:
    """Yield a mounted, empty FAT file system (skip the test when none can be mounted here)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a FAT image needs root")
    if shutil.which("mkfs.vfat") is None:
        pytest.skip("mkfs.vfat (dosfstools) is not installed")
    image = os.path.join(tmp_path, "fat.img")
    mount_point = os.path.join(tmp_path, "fat")
    os.mkdir(mount_point)
    with open(image, "wb") as fh:
        fh.truncate(32 << 20)
    made = _run("mkfs.vfat", image)
    assert made.returncode == 0, made.stderr
    fat = FatMount(image, mount_point)
    try:
        if not fat.mount():
            pytest.skip("no FAT file system can be mounted here: " + "; ".join(fat.reasons))
        yield fat
    finally:
        fat.close()
