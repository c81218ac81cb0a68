"""Operations beneath a root directory that never follow a symlink planted below it.

Every path below a root is opened one component at a time with ``O_NOFOLLOW``
relative to its parent's fd (the hardening rsync applied after its 2024
advisories), so a symlink swapped into DST can never redirect a write outside
it, and any depth works (no PATH_MAX). The root itself may be a symlink: the
user named it.
"""

from __future__ import annotations

import errno
import os
import stat

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def open_dir_beneath(root: str, reldir: str, follow_symlinks: bool = False) -> int:
    """Open ``root/reldir`` one component at a time, each with ``O_NOFOLLOW`` (unless following links)."""
    fd = os.open(root, DIR_FLAGS)
    flags = DIR_FLAGS if follow_symlinks else DIR_FLAGS | os.O_NOFOLLOW
    try:
        for part in reldir.split(os.sep) if reldir else ():
            next_fd = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


class DirFd:
    """``with DirFd(root, reldir) as fd:`` — an fd of a directory beneath root, closed on exit."""

    __slots__ = ("fd",)

    def __init__(self, root: str, reldir: str, follow_symlinks: bool = False) -> None:
        self.fd = open_dir_beneath(root, reldir, follow_symlinks)

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def make_dir_beneath(root: str, reldir: str, mode: int = 0o700) -> bool:
    """mkdir ``root/reldir`` (its parent must exist), never through a symlink.

    Returns True when the directory was created, False when it already existed.
    """
    parent, _, name = reldir.rpartition(os.sep)
    with DirFd(root, parent) as fd:
        try:
            os.mkdir(name, mode, dir_fd=fd)
            return True
        except FileExistsError:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise NotADirectoryError(errno.ENOTDIR, f"destination exists and is {kind}") from None
            return False


def remove_beneath(root: str, relpath: str, is_dir: bool) -> None:
    """Delete one entry (a directory must be empty), never through a symlink."""
    parent, _, name = relpath.rpartition(os.sep)
    with DirFd(root, parent) as fd:
        if is_dir:
            os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)


def remove_tree_beneath(root: str, relpath: str) -> None:
    """Delete an entry of any kind, a directory with all it holds (symlinks are not followed)."""
    parent, _, name = relpath.rpartition(os.sep)
    with DirFd(root, parent) as fd:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            import shutil  # rarely needed: keep it out of start-up

            shutil.rmtree(name, dir_fd=fd)  # type: ignore[call-arg]  # fd-based: immune to symlink races
        else:
            os.unlink(name, dir_fd=fd)


def unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def link_beneath_fds(from_fd: int, from_name: str, to_fd: int, to_name: str, tmp: str) -> None:
    """Hard-link from_fd/from_name as to_fd/to_name through ``tmp``, atomically replacing what is there.

    OSErrors of the rename carry ``pcopy_side = "destination"``.
    """
    os.link(from_name, tmp, src_dir_fd=from_fd, dst_dir_fd=to_fd, follow_symlinks=False)
    try:
        os.rename(tmp, to_name, src_dir_fd=to_fd, dst_dir_fd=to_fd)
    except OSError as exc:
        unlink_quietly(tmp, to_fd)
        exc.pcopy_side = "destination"  # type: ignore[attr-defined]
        raise


def same_inode(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
