"""The worker's path for a file written through a transform (gzip, xz, a user's function, ...).

It is the copy path with the bytes rewritten: temp file, stream, metadata,
rename. The output gets the source's mode and times and, in the xattr
``transforms.SRC_SIZE_XATTR``, the source's size, so a later run can tell it
is up to date. Its Result carries the *output's* relpath and the digest of
the bytes written; a transform that raises fails this file only (its temp
file removed). The bytes read are hashed too, so a file that changed in the
last seconds can be read again and compared (``digest.confirm``).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Optional

from ..content import digest as digests
from ..content import transforms
from ..content.copydata import dst_error
from ..content.digest import XXH128
from ..content.transforms.stream import stream
from ..errors import describe
from ..fs.beneath import unlink_quietly
from ..fs.temps import TMP_FLAGS
from ..model.entries import FILE, relpath_join
from ..model.results import COPIED, SKIPPED, UNCHANGED, Result, failure


def transform_file(copier, relpath: str, name: str, fd: int, before: os.stat_result) -> Result:
    """Write ``name`` through the run's transform (``copier`` is the batch's ``worker.BatchCopier``)."""
    transform = copier.transform
    reldir = relpath[: -len(name) - 1] if relpath != name else ""
    try:
        predicted = transforms.checked_name(transform.output_name(name), name, reldir)
    except Exception as exc:
        return failure(relpath, FILE, f"transform {transform.name}: output name: {describe(exc)}")
    if not copier.options.force:
        fresh = output_if_fresh(copier, relpath_join(reldir, predicted), predicted, before)
        if fresh is not None:
            return fresh
    tmp = copier.new_temp()
    try:
        out = os.open(tmp, TMP_FLAGS, 0o600, dir_fd=copier.dst_fd)
    except OSError as exc:
        raise dst_error(exc) from None
    try:
        hasher = copier.hasher.new() if copier.hasher is not None else None
        young = digests.is_young(before)
        source_hasher = XXH128.new() if young else None
        try:
            returned, _ = stream(transform, fd, out, relpath, hasher, copier.check_stop, source_hasher)
            final = transforms.checked_name(returned, predicted, reldir)
        except transforms.TransformError as exc:
            os.close(out)
            unlink_quietly(tmp, copier.dst_fd)
            return failure(relpath, FILE, f"transform {transform.name}: {exc}")
        if source_hasher is not None:
            digests.confirm(fd, before, source_hasher.hexdigest(), XXH128, copier.stop)
        else:
            digests.check_unchanged(fd, before)
        try:
            _record_source_size(out, before.st_size)  # before the mode: a 0o444 mode would forbid it
        except OSError as exc:
            raise dst_error(exc) from None
        copier.seal(out, before, born_right=False)
    except BaseException:
        os.close(out)
        unlink_quietly(tmp, copier.dst_fd)
        raise
    copier.publish(out, tmp, final)
    digest = hasher.hexdigest() if hasher is not None else None
    return Result(relpath_join(reldir, final), COPIED, FILE, before.st_size, digest)


def output_if_fresh(copier, out_relpath: str, out_name: str, before: os.stat_result) -> Optional[Result]:
    """A SKIPPED Result when ``out_name`` in DST is this source's output already, else None.

    Up to date: a regular file with the source's mtime (to the ns) whose
    xattr holds the source's size; where xattrs are unsupported, mtime alone.
    """
    try:
        out = os.open(out_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=copier.dst_fd)
    except OSError:
        return None
    try:
        st = os.fstat(out)
        if not stat.S_ISREG(st.st_mode) or st.st_mtime_ns != before.st_mtime_ns:
            return None
        try:
            recorded = os.getxattr(out, transforms.SRC_SIZE_XATTR)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                return None  # no record (or unreadable): transform again
        else:
            if recorded != str(before.st_size).encode():
                return None
        digest = None
        if copier.options.manifest and copier.hasher is not None:
            digest = digests.digest_open_file(out, copier.hasher, copier.stop).digest
    finally:
        os.close(out)
    return Result(out_relpath, SKIPPED, FILE, before.st_size, digest, "", UNCHANGED)


def _record_source_size(fd: int, size: int) -> None:
    """Store the source's size on a transform's output; silently skipped without xattr support."""
    try:
        os.setxattr(fd, transforms.SRC_SIZE_XATTR, str(size).encode())
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            raise
