"""content.metadata on real files: ACLs (with their modes), default ACLs, capabilities, symlinks.

Compared with the stock getfacl, getfattr and getcap; helpers in tests/metadata_helpers.py.
"""

from __future__ import annotations

import os
import stat

import pytest
from metadata_helpers import (
    ALL,
    PLACES,
    ROOT,
    copy_like_worker,
    getfacl,
    getfattr,
    make_file,
    needs_root,
    place,
    read_at,
    tool,
)

from pcopy.content import metadata
from pcopy.content.metadata import ACL_ACCESS, ACL_DEFAULT, CAPABILITY, At, Policy


@pytest.fixture(params=PLACES)
def where(request, tmp_path):
    return place(request, tmp_path)



# --------------------------------------------------------------------------- ACLs


def test_an_acl_and_its_mode_survive(where):
    """setfacl -m u:nobody:rw,m::r on a 0660 file: group::rw- but mask r--, so stat shows 0640."""
    src = make_file(os.path.join(where, "src", "f"), mode=0o660)
    tool("setfacl", "-m", "u:nobody:rw,m::r", src)
    assert stat.S_IMODE(os.stat(src).st_mode) == 0o640
    dst = os.path.join(where, "dst", "f")
    assert copy_like_worker(src, dst).ok
    assert getfacl(dst) == getfacl(src)
    assert "group::rw-" in getfacl(dst)
    assert os.stat(dst).st_mode == os.stat(src).st_mode


def test_copying_only_the_mode_is_the_classic_bug(where):
    """Without the ACL, the mode's group bits (the mask, r--) become the group's permission."""
    src = make_file(os.path.join(where, "src", "f"), mode=0o660)
    tool("setfacl", "-m", "u:nobody:rw,m::r", src)
    dst = os.path.join(where, "dst", "f")
    copy_like_worker(src, dst, Policy(xattrs=True, acls=False, root=ROOT))
    assert os.stat(dst).st_mode == os.stat(src).st_mode
    assert "group::r--" in getfacl(dst) and getfacl(dst) != getfacl(src)


def test_an_acl_keeps_setuid_and_setgid(where):
    src = make_file(os.path.join(where, "src", "f"), mode=0o6750)
    tool("setfacl", "-m", "u:nobody:rx", src)
    dst = os.path.join(where, "dst", "f")
    assert copy_like_worker(src, dst).ok
    assert os.stat(dst).st_mode == os.stat(src).st_mode and os.stat(dst).st_mode & 0o6000 == 0o6000
    assert getfacl(dst) == getfacl(src)


def test_a_default_acl_on_a_directory(where):
    """Like finish_dirs: fchmod the directory, then apply; its default ACL (and access ACL) match."""
    src = os.path.join(where, "src", "d")
    os.mkdir(src, 0o750)
    tool("setfacl", "-m", "u:nobody:rx", "-d", "-m", "u:nobody:rwx,g::r-x,o::---", src)
    dst = os.path.join(where, "dst", "d")
    os.mkdir(dst, 0o700)
    fd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fchmod(fd, stat.S_IMODE(os.stat(src).st_mode))
        wanted = read_at(src)
        assert set(wanted) == {ACL_ACCESS, ACL_DEFAULT}
        assert metadata.apply(fd, wanted, policy=ALL).ok
        assert metadata.has_default_acl(fd)
    finally:
        os.close(fd)
    assert getfacl(dst) == getfacl(src)
    assert os.stat(dst).st_mode == os.stat(src).st_mode


def test_an_inherited_default_acl_is_removed_and_the_mode_is_the_sources(where):
    """DST's directory has a default ACL: a new file is born with an ACL and *without* the umask.

    So the worker must fchmod in such a directory even when the mode "was born right"
    (has_default_acl tells it), and apply removes the inherited ACL the source does not have.
    """
    dst_dir = os.path.join(where, "dst")
    tool("setfacl", "-d", "-m", "u:nobody:rwx,g::r-x,o::---", dst_dir)
    dir_fd = os.open(dst_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert metadata.has_default_acl(dir_fd)
        born = os.open("born", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
        os.close(born)
        assert stat.S_IMODE(os.stat("born", dir_fd=dir_fd).st_mode) != 0o644  # not mode & ~umask
    finally:
        os.close(dir_fd)
    src = make_file(os.path.join(where, "src", "f"), mode=0o644)
    dst = os.path.join(dst_dir, "f")
    assert copy_like_worker(src, dst).ok
    assert getfacl(dst) == getfacl(src)
    assert os.stat(dst).st_mode == os.stat(src).st_mode
    src_fd = os.open(os.path.join(where, "src"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert not metadata.has_default_acl(src_fd)
    finally:
        os.close(src_fd)


# --------------------------------------------------------------------------- capabilities


@needs_root
def test_a_capability_and_setuid_survive_the_chown(where):
    src = make_file(os.path.join(where, "src", "tool"), b"\x7fELF not really", 0o4755)
    os.chown(src, 65534, 65534)
    os.chmod(src, 0o4755)  # chown cleared setuid
    tool("setcap", "cap_net_raw+ep", src)
    dst = os.path.join(where, "dst", "tool")
    assert copy_like_worker(src, dst).ok
    assert tool("getcap", dst).split()[-1] == "cap_net_raw=ep"
    assert os.stat(dst).st_mode == os.stat(src).st_mode
    assert (os.stat(dst).st_uid, os.stat(dst).st_gid) == (65534, 65534)
    assert getfattr(dst) == getfattr(src)


@needs_root
def test_why_the_order_matters(where):
    """chown after the capability drops it (and setuid); so does a write: apply comes after both."""
    path = make_file(os.path.join(where, "dst", "f"), b"x", 0o4755)
    fd = os.open(path, os.O_RDWR)
    try:
        tool("setcap", "cap_net_raw+ep", path)
        value = metadata.read(fd, ALL)
        assert CAPABILITY in value
        os.fchown(fd, 65534, 65534)
        assert CAPABILITY not in metadata.read(fd, ALL) and not os.fstat(fd).st_mode & 0o4000
        assert metadata.apply(fd, value, policy=ALL).ok
        os.pwrite(fd, b"y", 0)
        assert CAPABILITY not in metadata.read(fd, ALL)
    finally:
        os.close(fd)


@needs_root
def test_an_attribute_fix_after_a_chown_puts_the_capability_back(where):
    """sync's in-place fix: DST read first (it has the capability), then chowned (which drops it)."""
    src = make_file(os.path.join(where, "src", "tool"), b"x", 0o755)
    os.chown(src, 65534, 65534)
    tool("setcap", "cap_net_raw+ep", src)
    dst = os.path.join(where, "dst", "tool")
    copy_like_worker(src, dst)
    os.chown(dst, 0, 0)
    tool("setcap", "cap_net_raw+ep", dst)
    wanted, existing = read_at(src), read_at(dst)
    assert metadata.differs(wanted, existing) == (False, False)
    os.chown(dst, 65534, 65534)  # the owner fix
    dir_fd = os.open(os.path.dirname(dst), os.O_RDONLY | os.O_DIRECTORY)
    try:
        outcome = metadata.apply(At(dir_fd, "tool"), wanted, existing, policy=ALL)
    finally:
        os.close(dir_fd)
    assert outcome.ok and outcome.changed
    assert tool("getcap", dst).split()[-1] == "cap_net_raw=ep"


@needs_root
def test_the_same_as_cp_a(where):
    """The oracle: cp -a (--preserve=all) of a file with everything gives what our order gives."""
    src = make_file(os.path.join(where, "src", "all"), b"x", 0o2750)
    os.chown(src, 65534, 65534)
    os.chmod(src, 0o2750)
    for name, value in (("user.a", b"1"), ("user.bin", b"\0\xff"), ("trusted.t", b"t")):
        os.setxattr(src, name, value)
    tool("setfacl", "-m", "u:nobody:rwx,g:nogroup:r,m::rx", src)
    tool("setcap", "cap_net_raw,cap_net_bind_service+ep", src)
    ours, theirs = os.path.join(where, "dst", "ours"), os.path.join(where, "dst", "theirs")
    assert copy_like_worker(src, ours).ok
    tool("cp", "-a", src, theirs)
    assert getfattr(ours) == getfattr(theirs) == getfattr(src)
    assert getfacl(ours) == getfacl(theirs)
    assert tool("getcap", ours).split()[-1] == tool("getcap", theirs).split()[-1]
    assert os.stat(ours).st_mode == os.stat(theirs).st_mode == os.stat(src).st_mode
    assert os.stat(ours).st_mtime_ns == os.stat(theirs).st_mtime_ns


# --------------------------------------------------------------------------- symlinks


@needs_root
def test_symlink_xattrs_are_the_links_own(where):
    src_dir, dst_dir = os.path.join(where, "src"), os.path.join(where, "dst")
    target = make_file(os.path.join(src_dir, "target"))
    os.setxattr(target, "user.target-only", b"t")
    os.symlink("target", os.path.join(src_dir, "link"))
    tool("setfattr", "-h", "-n", "trusted.link-only", "-v", "0x6c", os.path.join(src_dir, "link"))
    os.symlink("elsewhere", os.path.join(dst_dir, "link"))  # dangling: nothing must be followed
    src_fd = os.open(src_dir, os.O_RDONLY | os.O_DIRECTORY)
    dst_fd = os.open(dst_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        wanted = metadata.read(At(src_fd, "link"), ALL)
        assert wanted == {"trusted.link-only": b"l"}  # not the target's user.* attribute
        assert metadata.read(At(src_fd, "link", follow_symlinks=True), ALL) == {"user.target-only": b"t"}
        outcome = metadata.apply(At(dst_fd, "link"), wanted, policy=ALL)
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    assert outcome.ok and outcome.changed
    assert getfattr(os.path.join(dst_dir, "link")) == getfattr(os.path.join(src_dir, "link"))
    assert not os.path.exists(os.path.join(dst_dir, "elsewhere"))
