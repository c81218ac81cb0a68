"""Extended attributes, POSIX ACLs and file capabilities, copied as ``cp -a`` and ``rsync -aHAX`` do.

On Linux all three are xattrs: ``user.*``, ``trusted.*`` and ``security.*`` (the last two
only as root), ``system.posix_acl_access`` / ``system.posix_acl_default`` (ACLs) and
``security.capability`` (file capabilities). A ``Policy`` says which names a run copies,
``read`` takes them from an open file or from a name beneath a directory fd (never
following the final symlink), ``apply`` makes a destination hold exactly them, and
``differs`` gives sync its itemize letters.

The order matters, because the kernel rewrites metadata as a side effect (each point is
checked on real files by ``tests/test_metadata.py``)::

    data written → fchown → fchmod → apply() → utime → rename

* a write and a chown both drop ``security.capability`` (chown also clears setuid and
  setgid): so the capability goes on after both;
* setting ``system.posix_acl_access`` rewrites the mode's group bits with the ACL's mask
  and keeps setuid/setgid/sticky (as root); the source's mode shows that same mask, so
  after ``apply`` the mode is exactly the source's, and a chmod before it is harmless;
* removing an ACL the file inherited from a default ACL leaves the chmod'ed mode alone;
* xattrs only change ctime, so ``utime`` may come before or after; after keeps the rule
  "times last";
* read the *source's* attributes after copying its data and before the unchanged check
  (``content.digest``): an attribute changed meanwhile moves its ctime, so it is caught.

A file created in a directory that has a default ACL is *not* created with mode & ~umask
(the default ACL masks it instead): ``has_default_acl`` lets the worker always fchmod there.
pcopy's own attributes (``user.pcopy.*``, e.g. the transforms' source size) are never copied,
compared or removed.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Dict, FrozenSet, NamedTuple, Tuple, Union

from ..errors import describe

ACL_ACCESS = "system.posix_acl_access"
ACL_DEFAULT = "system.posix_acl_default"
ACL_NAMES = frozenset((ACL_ACCESS, ACL_DEFAULT))
CAPABILITY = "security.capability"
SELINUX = "security.selinux"
OWN_PREFIX = "user.pcopy."  # pcopy's own bookkeeping (content.transforms.SRC_SIZE_XATTR): never copied
# Never copied (as libattr's /etc/xattr.conf "skip"): only the kernel writes EVM; SGI_* are xfs internals.
NEVER = ("security.evm", "trusted.SGI_")
# Copied best effort, as cp -a does with SELinux contexts: a label the destination refuses is not an
# error, a label the destination's policy gave is never removed, and labels are not compared by sync.
BEST_EFFORT = frozenset((SELINUX,))
_UNSUPPORTED = frozenset((errno.ENOTSUP, errno.EOPNOTSUPP))

Attrs = Dict[str, bytes]


class At(NamedTuple):
    """An entry named relative to a directory fd (symlinks and directories without an open fd)."""

    dir_fd: int
    name: str
    follow_symlinks: bool = False


Target = Union[int, At]


@dataclass(frozen=True)
class Policy:
    """Which attribute names a run copies, from (--xattrs, --acls, running as root)."""

    xattrs: bool
    acls: bool
    root: bool

    @classmethod
    def for_run(cls, xattrs: bool, acls: bool) -> "Policy":
        return cls(xattrs, acls, os.geteuid() == 0)

    @property
    def active(self) -> bool:
        """Anything to copy at all (when not, the worker skips every call here)."""
        return self.xattrs or self.acls

    def wants(self, name: str) -> bool:
        if name in ACL_NAMES:
            return self.acls
        if not self.xattrs or name.startswith(OWN_PREFIX) or name.startswith(NEVER):
            return False
        namespace = name.partition(".")[0]
        if namespace == "user":
            return True
        # trusted.* needs CAP_SYS_ADMIN and security.* (capabilities among them) root, as in rsync -X;
        # other system.* names (NFSv4 ACLs, ...) are not portable between file systems.
        return self.root and namespace in ("trusted", "security")


@dataclass(frozen=True)
class Outcome:
    """What ``apply`` did; it never raises for one name."""

    changed: bool = False
    failed: Tuple[Tuple[str, str], ...] = ()  # (name, reason) not set or not removed
    unsupported: FrozenSet[str] = frozenset()  # namespaces the destination does not store (see namespace())
    ignored: Tuple[str, ...] = ()  # best-effort names (SELinux labels) that did not stick

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unsupported


def namespace(name: str) -> str:
    """The unit of "the destination does not support it": "acl", "user", "trusted" or "security"."""
    return "acl" if name in ACL_NAMES else name.partition(".")[0]


def unsupported_warning(space: str) -> str:
    """The one warning per run for a namespace the destination does not store."""
    what = "ACLs" if space == "acl" else f"extended attributes ({space}.*)"
    return f"the destination file system does not store {what}: not copied"


def is_unsupported(exc: OSError) -> bool:
    return exc.errno in _UNSUPPORTED


def _path(at: At) -> str:
    """``/proc/self/fd/N/name``: the kernel walks into the directory fd; the final name is not followed
    unless asked (the l*xattr calls), so a symlink's own attributes are read, never its target's."""
    return f"/proc/self/fd/{at.dir_fd}/{at.name}"


def _list(target: Target) -> list:
    if isinstance(target, int):
        return os.listxattr(target)
    return os.listxattr(_path(target), follow_symlinks=target.follow_symlinks)


def _get(target: Target, name: str) -> bytes:
    if isinstance(target, int):
        return os.getxattr(target, name)
    return os.getxattr(_path(target), name, follow_symlinks=target.follow_symlinks)


def _set(target: Target, name: str, value: bytes) -> None:
    if isinstance(target, int):
        os.setxattr(target, name, value)
    else:
        os.setxattr(_path(target), name, value, follow_symlinks=target.follow_symlinks)


def _remove(target: Target, name: str) -> None:
    if isinstance(target, int):
        os.removexattr(target, name)
    else:
        os.removexattr(_path(target), name, follow_symlinks=target.follow_symlinks)


def read(target: Target, policy: Policy) -> Attrs:
    """The attributes ``policy`` copies, name → value.

    A file system without xattrs gives {}; a name removed between the listing and the read is
    left out. Other errors (EACCES, EPERM, EIO) propagate: the caller reports them for this
    entry, as ``cp -a`` and rsync do, and goes on.
    """
    if not policy.active:
        return {}
    try:
        names = _list(target)
    except OSError as exc:
        if is_unsupported(exc):
            return {}
        raise
    attrs: Attrs = {}
    for name in names:
        if not policy.wants(name):
            continue
        try:
            attrs[name] = _get(target, name)
        except OSError as exc:
            if exc.errno != errno.ENODATA and not is_unsupported(exc):
                raise
    return attrs


def _set_order(names) -> list:
    """ACLs first (they rewrite the mode's group bits), the capability last, the rest by name."""
    return sorted(names, key=lambda n: (n not in ACL_NAMES, n == CAPABILITY, n))


def apply(target: Target, wanted: Attrs, existing: "Attrs | None" = None, *, policy: Policy,
          skip: FrozenSet[str] = frozenset()) -> Outcome:
    """Make ``target`` hold exactly the ``wanted`` attributes that ``policy`` copies.

    Call it after fchown and fchmod, before utime (see the module docstring). ``existing``
    is what the target holds (``read`` with the same policy); None reads it here, {} says
    "nothing" (a file just created in a directory without a default ACL). A capability is
    checked again even when ``existing`` lists it: a chown since that read drops it. Names
    the policy does not copy are never touched, so pcopy's own ``user.pcopy.*`` and a label
    the destination's policy gave stay. ``skip``: namespaces an earlier Outcome found
    unsupported at this destination, not tried again.
    """
    if existing is None:
        try:
            existing = read(target, policy)
        except OSError as exc:
            return Outcome(failed=(("", f"cannot list attributes: {describe(exc)}"),))
    failed: list = []
    ignored: list = []
    unsupported: set = set()
    changed = False

    def attempt(name: str, value: "bytes | None") -> None:
        nonlocal changed
        space = namespace(name)
        if space in skip or space in unsupported:
            return
        try:
            if value is None:
                _remove(target, name)
            else:
                _set(target, name, value)
            changed = True
        except OSError as exc:
            if name in BEST_EFFORT:
                ignored.append(name)
            elif is_unsupported(exc):
                unsupported.add(space)
            elif value is None and exc.errno == errno.ENODATA:
                pass  # gone already: that is what we wanted
            else:
                verb = "remove" if value is None else "set"
                failed.append((name, f"cannot {verb} {name}: {_reason(exc)}"))

    for name in sorted(existing):
        if name not in wanted and name not in BEST_EFFORT and policy.wants(name):
            attempt(name, None)  # removed in SRC (or inherited here): it must go on sync too
    for name in _set_order(wanted):
        if policy.wants(name) and (existing.get(name) != wanted[name] or name == CAPABILITY and _gone(target)):
            attempt(name, wanted[name])
    return Outcome(changed, tuple(failed), frozenset(unsupported), tuple(ignored))


def _gone(target: Target) -> bool:
    """Whether the capability an ``existing`` listed is gone now: a chown after that listing drops it
    (sync's attribute fix reads DST, then chowns). One getxattr, only for files with a capability."""
    try:
        _get(target, CAPABILITY)
    except OSError:
        return True
    return False


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.E2BIG):
        return "no room for it (the file system limits attributes per file)"
    return describe(exc)


def differs(src: Attrs, dst: Attrs) -> Tuple[bool, bool]:
    """(xattrs changed, ACL changed) between two ``read`` results of one policy: rsync -i's 'x' and 'a'.

    SELinux labels are not compared: a destination's policy may label files its own way, and
    comparing would make every sync report (and rewrite) them.
    """
    if src == dst:
        return False, False
    acl = any(src.get(name) != dst.get(name) for name in ACL_NAMES)
    names = (src.keys() | dst.keys()) - ACL_NAMES - BEST_EFFORT
    return any(src.get(name) != dst.get(name) for name in names), acl


def mark_item(item: str, kind: str, xattrs_changed: bool, acl_changed: bool) -> str:
    """Add 'a' (position 10) and 'x' (11) to an rsync ``YXcstpoguax`` code.

    ``item`` is the code planned so far, or "" when nothing else changed (then it becomes
    ``.f.......ax``-like, ``kind`` being "f", "d" or "L"); a new entry (``+++``) stays as it is.
    """
    if not (xattrs_changed or acl_changed) or item.endswith("+"):
        return item
    base = item if len(item) == 11 else f".{kind}........."
    return base[:9] + ("a" if acl_changed else base[9]) + ("x" if xattrs_changed else base[10])


def has_default_acl(dir_fd: int) -> bool:
    """Whether new entries in this directory inherit a default ACL (which replaces the umask)."""
    try:
        os.getxattr(dir_fd, ACL_DEFAULT)
    except OSError:
        return False  # ENODATA: none; ENOTSUP: no ACLs here; anything else: the fchmod stays as planned
    return True
