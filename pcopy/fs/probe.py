"""What a destination file system can store, found by trying it on a probe file; mtime comparison.

A copy to vfat, an SMB share or an old NFS server cannot keep what ext4 keeps: times are
stored in 2 s or 1 s steps, modes and owners are refused or ignored, there are no symlinks,
hard links, xattrs or ACLs. ``probe`` finds out once per run, with a file under a temp name
(``fs.temps``: a run killed mid-probe leaves a name the next run removes as stale), created
``O_EXCL | O_NOFOLLOW`` and removed before it returns, whatever happened.

``mtimes_equal`` is rsync's ``--modify-window`` in nanoseconds; ``Capabilities.modify_window_ns``
is the window that makes a second sync to that file system a no-op.

How Linux vfat stores times (``fs/fat/misc.c``): mtime ``tv_sec & ~1``, truncated to the even
second (in memory too on kernels with 2018's ``fat_truncate_time``; older ones truncated on the
way to the disk, so only a remount showed it), atime truncated to the local day. So a copy's
mtime is up to 1.999999999 s *older* than its source, and their whole seconds differ by at most
1: rsync's ``--modify-window=1``.
"""

from __future__ import annotations

import os
import stat
import struct
from typing import NamedTuple, Optional

from .temps import TMP_FLAGS, temp_name

SECOND = 1_000_000_000
SAME_SECOND = -1  # a window: equal when in the same whole second (rsync's default, --modify-window=0)
FAT_WINDOW_NS = SECOND  # rsync's --modify-window=1 for FAT: whole seconds may differ by 1
# Two probe times: a ns fraction shows ns/µs/100 ns steps; an odd second with a fraction tells
# 1 s (...001, truncated or rounded) from 2 s (...000 truncated, ...002 rounded).
PROBE_TIMES = (1_600_000_000_123_456_789, 1_600_000_001_234_567_891)
STEPS = (1, 10, 100, 1000, 10**4, 10**5, 10**6, 10**7, 10**8, SECOND, 2 * SECOND)
PROBE_XATTR = "user.pcopy.probe"  # pcopy's own namespace: never copied even if one stayed
_ACL_ACCESS = "system.posix_acl_access"
NOBODY = 65534


class Capabilities(NamedTuple):
    """What the probed file system stores.

    ``time_granularity_ns``: the step mtimes are stored in (1 = ns; 2 s for FAT; 0: times
    cannot be set at all). ``owners`` is only probed as root (False otherwise: pcopy does not
    chown then). ``xattrs`` means user.* attributes.
    """

    time_granularity_ns: int
    modes: bool
    owners: bool
    symlinks: bool
    hardlinks: bool
    xattrs: bool
    acls: bool

    @property
    def modify_window_ns(self) -> int:
        return window_for(self.time_granularity_ns)


def mtimes_equal(a_ns: int, b_ns: int, window_ns: int) -> bool:
    """Whether two mtimes count as the same, as rsync's ``--modify-window`` decides.

    * ``window_ns == 0``: the same to the nanosecond (pcopy's default; rsync's ``-@-1``);
    * ``window_ns < 0`` (``SAME_SECOND``): the same whole second (rsync's default);
    * below one second: they differ by at most ``window_ns``;
    * one second or more: their whole seconds differ by at most ``window_ns // SECOND``,
      fractions ignored, exactly as rsync's ``--modify-window=N`` ("time windows don't care
      about nanoseconds"), so rsync's advice for FAT, a window of 1, works here too.
    """
    if window_ns == 0:
        return a_ns == b_ns
    if window_ns < 0:
        return a_ns // SECOND == b_ns // SECOND
    if window_ns < SECOND:
        return abs(a_ns - b_ns) <= window_ns
    return abs(a_ns // SECOND - b_ns // SECOND) <= window_ns // SECOND


def window_for(granularity_ns: int) -> int:
    """The tightest window under which a file system of this granularity compares equal to its source.

    A stored time is the source's truncated (or rounded) to the step, so: exact for ns, the step
    itself below a second, and from a second on whole seconds differing by the step less one
    second, but at least one (a file system that rounds 1.6 s up to 2 s must compare equal too).
    """
    if granularity_ns <= 1:
        return 0
    if granularity_ns < SECOND:
        return granularity_ns
    return max(SECOND, (granularity_ns // SECOND - 1) * SECOND)


def granularity(wanted: tuple, stored: tuple) -> int:
    """The smallest step that explains what was stored: each stored time is its wanted time truncated,
    or rounded, to a multiple of the step (so 1600000000.123456700 is 100 ns, not 10)."""
    for step in STEPS:
        if all(s in (w // step * step, (w + step // 2) // step * step) for w, s in zip(wanted, stored, strict=True)):
            return step
    worst = max(abs(w - s) for w, s in zip(wanted, stored, strict=True))
    return next((step for step in STEPS if worst < step), worst + 1)


def probe(dst: "str | int", token: str) -> Capabilities:
    """Try each capability on a probe file in the directory ``dst`` (a path or a directory fd).

    Raises OSError only when the probe file cannot be created at all (the destination is not
    writable); every later refusal is an answer, not an error.
    """
    dir_fd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if isinstance(dst, str) else dst
    names: list = []
    try:
        name = temp_name(token)
        fd = os.open(name, TMP_FLAGS, 0o600, dir_fd=dir_fd)
        names.append(name)
        try:
            return Capabilities(
                _times(fd), _modes(fd), _owners(fd),
                _symlinks(dir_fd, token, names), _hardlinks(dir_fd, name, fd, token, names),
                _xattrs(fd), _acls(fd),
            )
        finally:
            os.close(fd)
    finally:
        for created in names:
            try:
                os.unlink(created, dir_fd=dir_fd)
            except OSError:
                pass  # a temp name: a later run removes it as stale
        if isinstance(dst, str):
            os.close(dir_fd)


def _times(fd: int) -> int:
    stored = []
    for ns in PROBE_TIMES:
        try:
            os.utime(fd, ns=(ns, ns))
        except OSError:
            return 0
        stored.append(os.fstat(fd).st_mtime_ns)
    return granularity(PROBE_TIMES, tuple(stored))


def _modes(fd: int) -> bool:
    try:
        os.fchmod(fd, 0o640)  # the file was made 0o600: a file system that ignores chmod shows it
        return stat.S_IMODE(os.fstat(fd).st_mode) == 0o640
    except OSError:
        return False  # vfat: EPERM for a mode it cannot show; FUSE: ENOSYS


def _owners(fd: int) -> bool:
    if os.geteuid() != 0:
        return False
    try:
        os.fchown(fd, NOBODY, NOBODY)
        st = os.fstat(fd)
        return (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    except OSError:
        return False  # vfat: EPERM; NFS with root_squash: EPERM


def _symlinks(dir_fd: int, token: str, names: list) -> bool:
    link = temp_name(token)
    try:
        os.symlink("pcopy-probe", link, dir_fd=dir_fd)
    except OSError:
        return False
    names.append(link)
    try:  # an SMB share may fake links with regular files: trust only a real one that reads back
        st = os.stat(link, dir_fd=dir_fd, follow_symlinks=False)
        return stat.S_ISLNK(st.st_mode) and os.readlink(link, dir_fd=dir_fd) == "pcopy-probe"
    except OSError:
        return False


def _hardlinks(dir_fd: int, name: str, fd: int, token: str, names: list) -> bool:
    other = temp_name(token)
    try:
        os.link(name, other, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    names.append(other)
    try:
        return os.fstat(fd).st_nlink == 2
    except OSError:
        return False


def _xattrs(fd: int) -> bool:
    try:
        os.setxattr(fd, PROBE_XATTR, b"1")
        return os.getxattr(fd, PROBE_XATTR) == b"1"
    except OSError:
        return False


def probe_acl(uid: int = NOBODY) -> bytes:
    """A ``system.posix_acl_access`` value: u::rw-, u:<uid>:r--, g::r--, m::r--, o::--- (xattr format v2)."""
    entries = ((0x01, 6, 0xFFFFFFFF), (0x02, 4, uid), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
               (0x20, 0, 0xFFFFFFFF))  # ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in entries)


def _acls(fd: int) -> bool:
    value = probe_acl()
    try:
        os.setxattr(fd, _ACL_ACCESS, value)
        return os.getxattr(fd, _ACL_ACCESS) == value
    except OSError:
        return False  # EOPNOTSUPP: no ACLs here (the tests check the value is one ext4 and tmpfs take)


XATTR_NAMESPACES = frozenset({"user", "trusted", "security"})
ALL_NAMESPACES = XATTR_NAMESPACES | {"acl"}  # content.metadata.namespace()'s units


def unstored(caps: Capabilities) -> frozenset:
    """The attribute namespaces the probed file system does not store (none of the xattr ones when
    user.* does not stick: FAT, some FUSE and network file systems)."""
    return (frozenset() if caps.xattrs else XATTR_NAMESPACES) | (frozenset() if caps.acls else {"acl"})


def describe_capabilities(caps: Capabilities, owners: bool = False) -> Optional[str]:
    """One line on what the destination cannot keep (for a run's warning), or None when it keeps all.

    ``owners``: the run copies owners (root), so not storing them is worth saying.
    """
    lost = [what for what, kept in (("permissions", caps.modes), ("owners", caps.owners or not owners),
                                    ("symlinks", caps.symlinks),
                                    ("hard links", caps.hardlinks), ("extended attributes", caps.xattrs),
                                    ("ACLs", caps.acls)) if not kept]
    if caps.time_granularity_ns == 0:
        lost.insert(0, "times")
    elif caps.time_granularity_ns > 1:
        lost.insert(0, f"times finer than {_step(caps.time_granularity_ns)}")
    return f"the destination does not store {', '.join(lost)}" if lost else None


def _step(ns: int) -> str:
    for unit, size in (("s", SECOND), ("ms", 10**6), ("µs", 1000)):
        if ns >= size:
            return f"{ns // size} {unit}" if ns % size == 0 else f"{ns / size:g} {unit}"
    return f"{ns} ns"


COARSE_TYPES = frozenset(("vfat", "msdos", "exfat", "fuse.fusefat", "fuseblk"))  # FAT family: 2 s, no modes


def fs_type(path: str) -> str:
    """The file-system type of the mount holding ``path`` (from /proc/self/mounts), or ""."""
    real = os.path.realpath(path)
    while not os.path.exists(real) and real != os.sep:
        real = os.path.dirname(real)
    best, kind = "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].encode().decode("unicode_escape")
                if (real == point or real.startswith(point.rstrip(os.sep) + os.sep)) and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return ""
    return kind
