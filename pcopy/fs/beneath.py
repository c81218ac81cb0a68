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
from typing import Callable, Optional

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


class DirCache:
    """Directory fds beneath one root kept open for reuse: a directory is opened from its cached
    parent with one ``openat(O_NOFOLLOW)`` instead of from the root, component by component
    (a deep tree cost a dozen open/close pairs per directory and batch).

    Bounded (least recently used first out); ``with cache.dir(reldir) as fd`` pins the fd so no
    eviction closes it while in use. One per thread: not thread-safe. A directory removed or moved
    by the caller must be ``forget``-ed (``remove_tree_beneath`` and friends take the cache).
    """

    LIMIT = 64  # directory fds kept open at most

    def __init__(self, root: str, follow_symlinks: bool = False, limit: int = LIMIT) -> None:
        self.root = root
        self.flags = DIR_FLAGS if follow_symlinks else DIR_FLAGS | os.O_NOFOLLOW
        self.limit = limit
        self._fds: dict = {}  # reldir -> fd, oldest use first (dicts keep insertion order)
        self._pins: dict = {}  # fd -> pin count
        self._doomed: set = set()  # forgotten while pinned: closed at release

    def dir(self, reldir: str) -> "_Pinned":
        return _Pinned(self, reldir)

    def acquire(self, reldir: str) -> int:
        fds = self._fds
        fd = fds.pop(reldir, None)
        if fd is None:
            fd = self._open(reldir)
        fds[reldir] = fd  # now the most recent
        self._pins[fd] = self._pins.get(fd, 0) + 1
        if len(fds) > self.limit:
            self._evict()
        return fd

    def release(self, fd: int) -> None:
        count = self._pins[fd] - 1
        if count:
            self._pins[fd] = count
            return
        del self._pins[fd]
        if fd in self._doomed:
            self._doomed.discard(fd)
            os.close(fd)

    def _open(self, reldir: str) -> int:
        """From the deepest cached ancestor down, caching each directory on the way."""
        fds = self._fds
        base = reldir
        while base and base not in fds:
            base = base.rpartition(os.sep)[0]
        fd = fds.get(base)
        if fd is None:  # base == "": the root, which may be a symlink (the user named it)
            fd = fds[""] = os.open(self.root, DIR_FLAGS)
        if base == reldir:
            return fd
        path = base
        for part in (reldir[len(base) + 1:] if base else reldir).split(os.sep):
            fd = os.open(part, self.flags, dir_fd=fd)
            path = path + os.sep + part if path else part
            if path != reldir:
                fds[path] = fd
        return fd

    def _evict(self) -> None:
        """Close the least recently used unpinned fds, down to three quarters of the limit."""
        pins = self._pins
        excess = len(self._fds) - self.limit * 3 // 4
        for key in [k for k, fd in self._fds.items() if fd not in pins][:excess]:
            os.close(self._fds.pop(key))

    def forget(self, relpath: str) -> None:
        """Drop ``relpath`` and every directory below it (they were removed, moved or replaced)."""
        prefix = relpath + os.sep
        for key in [k for k in self._fds if k == relpath or k.startswith(prefix) or not relpath]:
            fd = self._fds.pop(key)
            if fd in self._pins:
                self._doomed.add(fd)
            else:
                os.close(fd)

    def close(self) -> None:
        self.forget("")

    def __del__(self) -> None:  # a worker thread that ends takes its cache with it: no fd outlives it
        try:
            self.close()
        except (OSError, AttributeError, TypeError):
            pass


class _Pinned:
    __slots__ = ("cache", "reldir", "fd")

    def __init__(self, cache: DirCache, reldir: str) -> None:
        self.cache, self.reldir = cache, reldir

    def __enter__(self) -> int:
        self.fd = self.cache.acquire(self.reldir)
        return self.fd

    def __exit__(self, *exc) -> None:
        self.cache.release(self.fd)


def _parent(root: str, parent: str, cache: "Optional[DirCache]"):
    return cache.dir(parent) if cache is not None else DirFd(root, parent)


def make_dir_beneath(root: str, reldir: str, mode: int = 0o700, cache: Optional[DirCache] = None) -> bool:
    """mkdir ``root/reldir`` (its parent must exist), never through a symlink.

    Returns True when the directory was created, False when it already existed.
    ``cache``: the caller's DirCache of ``root`` (the parent is opened through it).
    """
    parent, _, name = reldir.rpartition(os.sep)
    with _parent(root, parent, cache) as fd:
        try:
            os.mkdir(name, mode, dir_fd=fd)
            return True
        except FileExistsError:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise NotADirectoryError(errno.ENOTDIR, f"destination exists and is {kind}") from None
            return False


def remove_beneath(root: str, relpath: str, is_dir: bool, cache: Optional[DirCache] = None) -> None:
    """Delete one entry (a directory must be empty), never through a symlink."""
    parent, _, name = relpath.rpartition(os.sep)
    with _parent(root, parent, cache) as fd:
        if is_dir:
            if cache is not None:
                cache.forget(relpath)
            os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)


def remove_tree_beneath(root: str, relpath: str, cache: Optional[DirCache] = None) -> None:
    """Delete an entry of any kind, a directory with all it holds (symlinks are not followed)."""
    parent, _, name = relpath.rpartition(os.sep)
    with _parent(root, parent, cache) as fd:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            import shutil  # rarely needed: keep it out of start-up

            if cache is not None:
                cache.forget(relpath)
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


def link_unless_same(from_fd: int, from_name: str, to_fd: int, to_name: str, tmp: str,
                     before: Optional[Callable[[], object]] = None) -> bool:
    """-H: give ``to_name`` the inode of ``from_name`` (``link_beneath_fds``; ``before()`` just before, e.g. a
    backup of what is replaced); False when it already has it."""
    want = os.stat(from_name, dir_fd=from_fd, follow_symlinks=False)
    try:
        if same_inode(os.stat(to_name, dir_fd=to_fd, follow_symlinks=False), want):
            return False
    except FileNotFoundError:
        pass
    if before is not None:
        before()
    link_beneath_fds(from_fd, from_name, to_fd, to_name, tmp)
    return True


def same_inode(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def lstat_beneath(root: str, relpath: str) -> os.stat_result:
    """lstat of ``root/relpath`` with every directory on the way opened ``O_NOFOLLOW``."""
    parent, _, name = relpath.rpartition(os.sep)
    with DirFd(root, parent) as fd:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)


def rename_beneath(root: str, old: str, new: str, expect=None) -> None:
    """renameat ``root/old`` to ``root/new`` through O_NOFOLLOW parent fds; never outside root.

    ``expect(st) -> bool`` is asked about the lstat of ``old`` taken through the same fd just
    before the rename; False raises ``FileExistsError`` (the entry is not the one the caller listed).
    """
    old_parent, _, old_name = old.rpartition(os.sep)
    new_parent, _, new_name = new.rpartition(os.sep)
    if not old_name or not new_name:
        raise IsADirectoryError(errno.EISDIR, "cannot rename the root")
    with DirFd(root, old_parent) as from_fd, DirFd(root, new_parent) as to_fd:
        if expect is not None and not expect(os.stat(old_name, dir_fd=from_fd, follow_symlinks=False)):
            raise FileExistsError(errno.EEXIST, "destination entry changed since it was listed")
        os.rename(old_name, new_name, src_dir_fd=from_fd, dst_dir_fd=to_fd)
