"""Helpers for the content.metadata tests: attribute dumps by the stock tools, a worker-order copy.

``copy_like_worker`` does what BatchCopier.copy_file + seal will do once metadata is wired in:
write the data to a temp name, fchown (as root), fchmod, ``metadata.apply``, utime, rename.
``where`` is a directory on this machine's disk (tmp_path) or tmpfs (/dev/shm), skipped with
the reason when it lacks user.* xattrs or ACLs.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from pcopy.content import metadata
from pcopy.content.metadata import ACL_ACCESS, At, Policy

ROOT = os.geteuid() == 0
ALL = Policy(xattrs=True, acls=True, root=ROOT)
needs_root = pytest.mark.skipif(not ROOT, reason="trusted.*, security.* and chown need root")


def tool(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def getfattr(path) -> str:
    """Every attribute of ``path`` itself (not a link's target), as hex, without the "# file" line."""
    out = tool("getfattr", "--absolute-names", "-h", "-d", "-m", "-", "-e", "hex", str(path))
    return "\n".join(line for line in out.splitlines() if line and not line.startswith("# file"))


def getfacl(path) -> str:
    return tool("getfacl", "-c", "-p", str(path))


def sample_acl(where: str) -> bytes:
    """A system.posix_acl_access value made by the stock setfacl (u:nobody:r, mask r), or skip."""
    with tempfile.NamedTemporaryFile(dir=where) as probe:
        try:
            tool("setfacl", "-m", "u:nobody:r,m::r", probe.name)
        except subprocess.CalledProcessError:
            pytest.skip(f"{where} does not store ACLs")
        return os.getxattr(probe.name, ACL_ACCESS)


def supports(where: str, name: str = "user.pcopy-test", value: bytes = b"1") -> bool:
    probe = tempfile.NamedTemporaryFile(dir=where)
    try:
        os.setxattr(probe.name, name, value)
        return True
    except OSError:
        return False
    finally:
        probe.close()


PLACES = ["disk", "tmpfs"]


def place(request, tmp_path) -> str:
    """For a fixture parametrized by PLACES: a directory on the disk under /tmp (ext4 here) or on
    tmpfs, with src/ and dst/ in it, where user.* xattrs and ACLs work."""
    if request.param == "disk":
        base = str(tmp_path)
    else:
        if not os.path.isdir("/dev/shm"):
            pytest.skip("no /dev/shm")
        base = tempfile.mkdtemp(prefix="pcopy-meta-", dir="/dev/shm")
        request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    if not supports(base):
        pytest.skip(f"{request.param} ({base}) does not store user.* xattrs on this kernel")
    sample_acl(base)  # skips without ACLs
    os.mkdir(os.path.join(base, "src"))
    os.mkdir(os.path.join(base, "dst"))
    return base


def copy_like_worker(src: str, dst: str, policy: Policy = ALL) -> metadata.Outcome:
    """The order the worker must use: data → fchown → fchmod → apply → utime → rename."""
    dst_dir, name = os.path.split(dst)
    st = os.lstat(src)
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    dir_fd = os.open(dst_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        tmp = f".pcopy-tmp-test-{os.getpid()}-0"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            os.write(out, os.read(fd, 1 << 20))
            if ROOT:
                os.fchown(out, st.st_uid, st.st_gid)
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            outcome = metadata.apply(out, metadata.read(fd, policy), policy=policy)
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(out)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return outcome
    finally:
        os.close(fd)
        os.close(dir_fd)


def read_at(path: str, policy: Policy = ALL) -> metadata.Attrs:
    """read() through the directory fd and the name, as sync will for entries it does not open."""
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        return metadata.read(At(dir_fd, os.path.basename(path)), policy)
    finally:
        os.close(dir_fd)


def make_file(path: str, data: bytes = b"data", mode: int = 0o644) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)
    return path
