"""The worker's tasks that write no file data: attributes fixed in place, -c comparisons, link-dest
links, digests of files already up to date, and symlinks.

``InPlaceTasks`` is a part of ``worker.BatchCopier`` (it uses the batch's fds,
options and helpers); it lives apart so each file holds one job.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Callable, Optional

from ..content import digest as digests
from ..content.copydata import dst_error
from ..content.digest import XXH128
from ..content.metadata import At, mark_item
from ..fs.beneath import DirFd, link_beneath_fds, unlink_quietly
from ..model.entries import FILE, SYMLINK
from ..model.results import COPIED, LINKED, NOT_REGULAR, SAME_CONTENT, SKIPPED, UNCHANGED, UPDATED, Result
from ..options import Options
from .attrs import AttrCopier
from .plan import NEW_FILE

DST_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class InPlaceTasks:
    """Methods of BatchCopier for the tasks besides copying a regular file."""

    # what BatchCopier provides
    options: Options
    src_fd: int
    dst_fd: int
    hasher: Optional[digests.Algo]
    stop: Any
    src_flags: int
    reldir: str
    chown: bool
    born_ids: Optional[tuple]
    meta: AttrCopier
    attrs: Callable[..., tuple]
    keep_backup: Callable[[str], None]
    new_temp: Callable[[], str]
    copy_file_retrying: Callable[..., Any]

    def dst_digest(self, name: str) -> str:
        """The digest of DST's file ``name`` (for the manifest, or -c)."""
        try:
            return digests.digest_at(self.dst_fd, name, self.hasher or XXH128, self.stop, DST_READ).digest
        except OSError as exc:
            raise dst_error(exc) from None

    def copy_if_content_differs(self, relpath: str, task) -> Result:
        """--checksum with equal sizes: compare digests of both sides; copy only if they differ."""
        hasher = self.hasher or XXH128
        src = digests.digest_at(self.src_fd, task.source or task.name, hasher, self.stop, self.src_flags)
        if src.digest != self.dst_digest(task.name):
            if self.options.dry_run:
                return Result(relpath, COPIED, FILE, task.size, None, task.why)
            return self.copy_file_retrying(relpath, task.name, task.why, src_name=task.source)
        # Same content: what else differs (times, mode, owner, attributes) is fixed in place, as rsync -c does.
        digest = src.digest if self.hasher else None
        same = task._replace(why="." + task.why[1] + "." + task.why[3:])
        return self.fix_attrs(relpath, same, src.stat, digest, SAME_CONTENT)

    def fix_attrs(self, relpath: str, task, st: Optional[os.stat_result] = None, digest: Optional[str] = None,
                  same: str = UNCHANGED, src_attrs: Optional[dict] = None) -> Result:
        """Same content, other times, permissions, owner or attributes: fix them in place (``.f..tpog.ax``).

        ``st``, ``digest``: the source's, when the caller has them (-c); ``same``: the reason when
        nothing needed fixing; ``src_attrs``: the source's xattrs and ACLs when the source is on another
        machine (``remote.receive``).
        """
        src_name = task.source or task.name
        if st is None:
            st = os.stat(src_name, dir_fd=self.src_fd, follow_symlinks=self.options.follow_symlinks)
        is_link = stat.S_ISLNK(st.st_mode)
        mode, uid, gid = self.attrs(st)
        item = task.why
        if self.meta.active:  # attributes too: planned when SRC changed after DST was written (always for -c)
            if src_attrs is not None:
                wanted, have = src_attrs, self.meta.read(At(self.dst_fd, task.name))
                x, a = self.meta.differs(wanted, have)
            else:
                x, a, wanted, have = self.meta.compare(At(self.src_fd, src_name), At(self.dst_fd, task.name))
            item = mark_item(item, "L" if is_link else "f", x, a)
        if not item[2:].strip("."):  # the attribute check found nothing to change
            return Result(relpath, SKIPPED, SYMLINK if is_link else FILE, st.st_size, digest, "", same)
        if not self.options.dry_run:
            try:
                if self.chown:
                    os.chown(task.name, uid, gid, dir_fd=self.dst_fd, follow_symlinks=False)
                if not is_link and self.options.dst_modes:
                    os.chmod(task.name, stat.S_IMODE(mode), dir_fd=self.dst_fd, follow_symlinks=False)
                if self.meta.active:
                    self.meta.apply(At(self.dst_fd, task.name), wanted, have)
                if item[4] == "t":  # last: the changes above may move it (--size-only)
                    os.utime(task.name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=self.dst_fd,
                             follow_symlinks=False)
            except OSError as exc:
                raise dst_error(exc) from None
        if digest is None and not is_link and self.hasher is not None and self.options.manifest:
            digest = self.dst_digest(task.name)
        return Result(relpath, UPDATED, SYMLINK if is_link else FILE, st.st_size, digest, item)

    def link_from(self, relpath: str, task) -> Result:
        """--link-dest: hard-link the identical file of an earlier snapshot instead of copying."""
        try:
            old = DirFd(task.source, self.reldir)
        except OSError:
            return self.copy_file_retrying(relpath, task.name, task.why)  # the old snapshot moved: just copy
        with old as old_fd:
            if self.meta.active:  # the planner compared size, mtime and mode; attributes are read here
                x, a, _, _ = self.meta.compare(At(self.src_fd, task.name), At(old_fd, task.name))
                if x or a:
                    return self.copy_file_retrying(relpath, task.name, NEW_FILE)
            try:
                self.keep_backup(task.name)
                link_beneath_fds(old_fd, task.name, self.dst_fd, task.name, self.new_temp())
            except FileNotFoundError:
                return self.copy_file_retrying(relpath, task.name, task.why)
        digest = self.dst_digest(task.name) if self.hasher is not None and self.options.manifest else None
        return Result(relpath, LINKED, FILE, task.size, digest, task.why, "", task.source)

    def hash_existing(self, relpath: str, task) -> Result:
        """Hash a file that is already up to date at DST, for the manifest."""
        return Result(relpath, SKIPPED, FILE, task.size, self.dst_digest(task.name), "", UNCHANGED)

    # ----------------------------------------------------------------- symlinks

    def copy_symlink(self, relpath: str, task) -> Result:
        src_fd, dst_fd, name = self.src_fd, self.dst_fd, task.name
        target = os.readlink(task.source or name, dir_fd=src_fd)
        st = os.stat(task.source or name, dir_fd=src_fd, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            return Result(relpath, SKIPPED, SYMLINK, 0, None, "", NOT_REGULAR, "no longer a symbolic link")
        tmp = self.new_temp()
        try:
            os.symlink(target, tmp, dir_fd=dst_fd)
        except OSError as exc:
            raise dst_error(exc) from None
        _, uid, gid = self.attrs(st)
        try:
            if self.chown and (uid, gid) != self.born_ids:
                os.chown(tmp, uid, gid, dir_fd=dst_fd, follow_symlinks=False)
            if self.meta.active:
                self.meta.apply(At(dst_fd, tmp), self.meta.read(At(src_fd, task.source or name)), fresh=True)
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_fd, follow_symlinks=False)
            self.keep_backup(name)
            os.rename(tmp, name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd)
        except OSError as exc:
            unlink_quietly(tmp, dst_fd)
            raise dst_error(exc) from None
        return Result(relpath, COPIED, SYMLINK, len(os.fsencode(target)), None, task.why)
