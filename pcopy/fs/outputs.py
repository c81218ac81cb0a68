"""Files the user names for output (manifests, ``hash -o``, logs): written like a shell redirect.

* an existing device, FIFO or socket is opened and written in place
  (``-o /dev/null`` must never replace the device node with a file);
* a symlink is followed: its target gets the content, the link stays;
* a regular file, or a new name, is written to a temp name beside it
  (``O_EXCL | O_NOFOLLOW``, so a symlink planted at that name cannot redirect
  the write) and renamed into place on ``commit``: a reader never sees half
  of it, and an interrupted run leaves the old file as it was.

Every failure is a ``PcopyError`` that names the path the user gave.
"""

from __future__ import annotations

import os
import stat
from typing import Optional

from ..errors import PcopyError, describe
from .temps import TMP_FLAGS, temp_name


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class OutputFile:
    """One output file; ``write`` bytes, then ``commit`` (or ``discard`` on failure)."""

    def __init__(self, path: str, what: str = "output", token: str = "out", append: bool = False) -> None:
        """``append``: add to the end in place, like ``>>`` (logs)."""
        self.path = os.fsdecode(path)  # as the user gave it, for messages
        self.what = what
        self.tmp: Optional[str] = None
        self.final = self.path
        self.mode = 0o666 & ~_umask()
        self.fd = -1
        try:
            if append:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
            else:
                self._open(token)
        except OSError as exc:
            raise self.error(exc) from None

    def error(self, exc: BaseException) -> PcopyError:
        return PcopyError(f"{self.path}: cannot write {self.what}: {describe(exc)}")

    def _open(self, token: str) -> None:
        target = self.path
        try:
            st: Optional[os.stat_result] = os.lstat(target)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(target)  # a shell follows the link; a dangling one makes its target
            try:
                st = os.stat(target)
            except FileNotFoundError:
                st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory")
        if st is not None and not stat.S_ISREG(st.st_mode):
            self.fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)  # device, FIFO: in place
            return
        if st is not None:
            self.mode = stat.S_IMODE(st.st_mode)
        directory = os.path.dirname(target) or "."
        tmp = os.path.join(directory, temp_name(token))
        self.fd = os.open(tmp, TMP_FLAGS, 0o600)
        self.tmp, self.final = tmp, target

    def write(self, data) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            raise self.error(exc) from None

    def commit(self) -> None:
        """Close; a temp-written file gets its mode and is renamed onto the final name."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        try:
            if self.tmp is not None:
                os.fchmod(fd, self.mode)
            os.close(fd)
            if self.tmp is not None:
                os.rename(self.tmp, self.final)
                self.tmp = None
        except OSError as exc:
            self._remove_tmp()
            raise self.error(exc) from None

    def discard(self) -> None:
        """Drop what was written (the temp file); a device or FIFO is just closed."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None

    @property
    def real_path(self) -> str:
        """Where the content ends up (the symlink's target for a link)."""
        return os.path.realpath(self.final)
