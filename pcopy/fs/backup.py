"""rsync's ``--backup``: what a run replaces or deletes in DST is kept, as NAME~ or under --backup-dir.

A file about to be replaced is kept by a hard link (``link`` to a temp name,
then ``rename`` over any older backup), so the final name never disappears
while its new content is renamed over it; where links are impossible (the
backup directory on another file system) it is moved. A deleted entry is
moved. Everything is done relative to directory fds, beneath the roots.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Optional

from .beneath import DIR_FLAGS, DirFd, unlink_quietly
from .temps import temp_name


def backup_name(name: str, suffix: str) -> str:
    return name + suffix


def open_backup_dir(backup_root: str, reldir: str) -> int:
    """An fd of ``backup_root/reldir``, made (mode 0700) as needed, never through a symlink.

    An older backup of a file where the tree now has a directory is in the way: it goes (it was
    the backup of what the directory replaced, and rsync drops it too).
    """
    os.makedirs(backup_root, 0o700, exist_ok=True)
    fd = os.open(backup_root, DIR_FLAGS)
    try:
        for part in reldir.split(os.sep) if reldir else ():
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    os.unlink(part, dir_fd=fd)
                    os.mkdir(part, 0o700, dir_fd=fd)
            next_fd = os.open(part, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _clear(backup_fd: int, name: str) -> None:
    """Remove an older backup that is a directory (a file or link is simply renamed over)."""
    try:
        st = os.stat(name, dir_fd=backup_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(name, dir_fd=backup_fd)  # type: ignore[call-arg]


def keep_copy(dir_fd: int, name: str, backup_fd: int, target: str, token: str) -> bool:
    """Keep what ``name`` holds now as ``target`` in ``backup_fd``; False when there is nothing to keep."""
    tmp = temp_name(token)
    try:
        os.link(name, tmp, src_dir_fd=dir_fd, dst_dir_fd=backup_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP):
            raise
        move(dir_fd, name, backup_fd, target)  # no link possible: move it (the name is absent briefly)
        return True
    try:
        _clear(backup_fd, target)
        os.rename(tmp, target, src_dir_fd=backup_fd, dst_dir_fd=backup_fd)
    except BaseException:
        unlink_quietly(tmp, backup_fd)
        raise
    return True


def move(dir_fd: int, name: str, backup_fd: int, target: str) -> None:
    """Move ``name`` to ``target`` (a deletion under --backup)."""
    _clear(backup_fd, target)
    os.rename(name, target, src_dir_fd=dir_fd, dst_dir_fd=backup_fd)


class Backups:
    """Where one run keeps its backups: ``backup_dir/relpath`` or ``relpath + suffix`` beside it."""

    def __init__(self, backup_dir: Optional[str], suffix: str, token: str) -> None:
        self.backup_dir, self.suffix, self.token = backup_dir, suffix, token

    def target_fd(self, dst_root: str, reldir: str) -> int:
        if self.backup_dir is not None:
            return open_backup_dir(self.backup_dir, reldir)
        return DirFd(dst_root, reldir).fd

    def keep(self, dir_fd: int, dst_root: str, reldir: str, name: str) -> bool:
        """Keep DST's ``reldir/name`` before it is replaced (a new name has nothing to keep, and its
        directory in --backup-dir is not made)."""
        try:
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        fd = self.target_fd(dst_root, reldir)
        try:
            return keep_copy(dir_fd, name, fd, backup_name(name, self.suffix), self.token)
        finally:
            os.close(fd)

    def move_out(self, dst_root: str, relpath: str) -> None:
        """A deletion: move DST's ``relpath`` to its backup place."""
        reldir, _, name = relpath.rpartition(os.sep)
        with DirFd(dst_root, reldir) as dir_fd:
            fd = self.target_fd(dst_root, reldir)
            try:
                move(dir_fd, name, fd, backup_name(name, self.suffix))
            finally:
                os.close(fd)
