"""content.metadata: the policy, xattrs on real files, errors as outcomes, the itemize letters.

ACLs, capabilities and symlinks: tests/test_metadata_acl.py. Helpers: tests/metadata_helpers.py.
"""

from __future__ import annotations

import errno
import os
import tempfile

import pytest
from metadata_helpers import (
    ALL,
    PLACES,
    ROOT,
    copy_like_worker,
    getfattr,
    make_file,
    place,
    read_at,
    sample_acl,
    supports,
)

from pcopy.content import metadata
from pcopy.content.metadata import ACL_ACCESS, ACL_DEFAULT, CAPABILITY, At, Policy


@pytest.fixture(params=PLACES)
def where(request, tmp_path):
    return place(request, tmp_path)



# --------------------------------------------------------------------------- the policy (pure)

@pytest.mark.parametrize("name,xattrs,acls,root,wanted", [
    ("user.comment", True, False, False, True),
    ("user.comment", False, True, True, False),
    ("user.pcopy.src_size", True, True, True, False),  # pcopy's own, never
    ("user.pcopy.anything", True, True, True, False),
    ("trusted.overlay.opaque", True, False, True, True),
    ("trusted.overlay.opaque", True, False, False, False),  # root only
    ("security.capability", True, False, True, True),
    ("security.capability", True, False, False, False),
    ("security.capability", False, True, True, False),  # a capability is an xattr, not an ACL
    ("security.selinux", True, False, True, True),  # best effort, like cp -a
    ("security.ima", True, False, True, True),
    ("security.evm", True, True, True, False),  # only the kernel writes it
    ("trusted.SGI_ACL_FILE", True, True, True, False),  # xfs internals
    (ACL_ACCESS, False, True, False, True),  # ACLs need neither --xattrs nor root
    (ACL_DEFAULT, True, False, True, False),
    ("system.nfs4_acl", True, True, True, False),  # not portable between file systems
    ("system.sockprotoname", True, True, True, False),
    ("weird", True, True, True, False),
])
def test_policy(name, xattrs, acls, root, wanted):
    assert Policy(xattrs, acls, root).wants(name) is wanted


def test_policy_covers_the_transforms_own_attribute():
    from pcopy.content import transforms

    assert transforms.SRC_SIZE_XATTR.startswith(metadata.OWN_PREFIX)
    assert not Policy(True, True, True).wants(transforms.SRC_SIZE_XATTR)


def test_inactive_policy_reads_nothing(tmp_path):
    path = make_file(str(tmp_path / "f"))
    os.setxattr(path, "user.a", b"1")
    none = Policy(False, False, ROOT)
    assert not none.active and read_at(path, none) == {}
    assert Policy.for_run(True, False).root == ROOT


# --------------------------------------------------------------------------- xattrs


def test_user_xattrs_binary_and_large_values_are_copied(where):
    src = make_file(os.path.join(where, "src", "f"))
    dst = os.path.join(where, "dst", "f")
    values = {"user.text": b"hello", "user.binary": bytes(range(256)) + b"\0\0\xff", "user.empty": b""}
    big = os.urandom(65536)
    if supports(os.path.join(where, "src"), "user.big", big):
        values["user.big"] = big  # 64 KiB, the kernel's limit (ext4 without ea_inode refuses it)
    for name, value in values.items():
        os.setxattr(src, name, value)
    outcome = copy_like_worker(src, dst)
    assert outcome.ok and outcome.changed
    assert {n: os.getxattr(dst, n) for n in os.listxattr(dst)} == values
    assert getfattr(dst) == getfattr(src)


def test_a_value_too_big_for_the_destination_is_a_failed_name_not_an_exception(tmp_path):
    src_dir = "/dev/shm"
    big = os.urandom(65536)
    if not os.path.isdir(src_dir) or not supports(src_dir, "user.big", big):
        pytest.skip("needs a tmpfs that takes a 64 KiB user.* value as the source")
    if supports(str(tmp_path), "user.big", big):
        pytest.skip("the disk here takes 64 KiB values too: nothing to refuse")
    with tempfile.NamedTemporaryFile(dir=src_dir) as src:
        os.setxattr(src.name, "user.big", big)
        os.setxattr(src.name, "user.small", b"1")
        dst = os.path.join(tmp_path, "f")
        outcome = copy_like_worker(src.name, dst)
    assert outcome.unsupported == frozenset()
    assert [name for name, _ in outcome.failed] == ["user.big"]
    assert "no room" in outcome.failed[0][1]
    assert os.getxattr(dst, "user.small") == b"1"


def test_an_xattr_removed_in_src_goes_in_dst_and_pcopys_own_stay(where):
    src = make_file(os.path.join(where, "src", "f"))
    dst = make_file(os.path.join(where, "dst", "f"))
    os.setxattr(src, "user.kept", b"new")
    for name, value in (("user.kept", b"old"), ("user.gone", b"x"), ("user.pcopy.src_size", b"4")):
        os.setxattr(dst, name, value)
    fd = os.open(dst, os.O_RDONLY)
    try:
        outcome = metadata.apply(fd, read_at(src), policy=ALL)
    finally:
        os.close(fd)
    assert outcome.ok and outcome.changed
    assert sorted(os.listxattr(dst)) == ["user.kept", "user.pcopy.src_size"]
    assert os.getxattr(dst, "user.kept") == b"new"


def test_a_second_apply_is_a_no_op(where, monkeypatch):
    src = make_file(os.path.join(where, "src", "f"))
    os.setxattr(src, "user.a", b"1")
    dst = os.path.join(where, "dst", "f")
    copy_like_worker(src, dst)
    wanted, existing = read_at(src), read_at(dst)
    assert metadata.differs(wanted, existing) == (False, False)
    monkeypatch.setattr(os, "setxattr", None)  # any call would fail
    monkeypatch.setattr(os, "removexattr", None)
    assert metadata.apply(0, wanted, existing, policy=ALL) == metadata.Outcome()


def test_at_does_not_follow_the_final_symlink(where):
    """read(At(dir_fd, name)) goes through /proc/self/fd/N/name with l*xattr: the link's own attributes."""
    target = make_file(os.path.join(where, "src", "target"))
    os.setxattr(target, "user.target-only", b"t")
    os.symlink("target", os.path.join(where, "src", "link"))
    assert read_at(os.path.join(where, "src", "link")) == {}
    dir_fd = os.open(os.path.join(where, "src"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert metadata.read(At(dir_fd, "link", follow_symlinks=True), ALL) == {"user.target-only": b"t"}
        assert metadata.read(At(dir_fd, "target"), ALL) == {"user.target-only": b"t"}
    finally:
        os.close(dir_fd)


def test_setting_xattrs_leaves_the_times(where):
    path = make_file(os.path.join(where, "dst", "f"))
    os.utime(path, ns=(1_600_000_000_123_456_789, 1_600_000_000_987_654_321))
    fd = os.open(path, os.O_RDONLY)
    try:
        metadata.apply(fd, {"user.a": b"1", ACL_ACCESS: sample_acl(where)}, policy=ALL)
    finally:
        os.close(fd)
    st = os.stat(path)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_600_000_000_123_456_789, 1_600_000_000_987_654_321)


# --------------------------------------------------------------------------- errors and the outcome


def test_an_unsupported_destination_is_one_outcome_not_an_exception(tmp_path, monkeypatch):
    """(A real FAT destination: tests/test_probe.py::test_fat_refuses_modes_owners_links_and_xattrs.)"""
    path = make_file(str(tmp_path / "f"))
    calls = []

    def no_xattrs(target, name, value, flags=0, *, follow_symlinks=True):
        calls.append(name)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", no_xattrs)
    wanted = {"user.a": b"1", "user.b": b"2", ACL_ACCESS: sample_acl(str(tmp_path))}
    fd = os.open(path, os.O_RDONLY)
    try:
        first = metadata.apply(fd, wanted, {}, policy=ALL)
        assert first.unsupported == {"user", "acl"} and first.failed == () and not first.ok
        assert calls == [ACL_ACCESS, "user.a"]  # one try per namespace, not one per name
        calls.clear()
        again = metadata.apply(fd, wanted, {}, policy=ALL, skip=first.unsupported)
        assert calls == [] and again == metadata.Outcome()
    finally:
        os.close(fd)
    assert metadata.unsupported_warning("acl") == "the destination file system does not store ACLs: not copied"
    assert "user.*" in metadata.unsupported_warning("user")


def test_a_name_removed_while_reading_is_left_out(tmp_path, monkeypatch):
    path = make_file(str(tmp_path / "f"))
    os.setxattr(path, "user.a", b"1")
    os.setxattr(path, "user.b", b"2")
    real = os.getxattr

    def racing(target, name, *, follow_symlinks=True):
        if name == "user.a":
            raise OSError(errno.ENODATA, "No data available")
        return real(target, name, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(os, "getxattr", racing)
    assert read_at(path) == {"user.b": b"2"}


def raising(exc: OSError):
    def fail(*args, **kwargs):
        raise exc

    return fail


def test_a_file_system_without_xattrs_reads_empty_and_denied_is_raised(tmp_path, monkeypatch):
    path = make_file(str(tmp_path / "f"))
    fd = os.open(path, os.O_RDONLY)
    try:
        monkeypatch.setattr(os, "listxattr", raising(OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP))))
        assert metadata.read(fd, ALL) == {}
        monkeypatch.setattr(os, "listxattr", raising(PermissionError(errno.EACCES, os.strerror(errno.EACCES))))
        with pytest.raises(PermissionError):
            metadata.read(fd, ALL)
        outcome = metadata.apply(fd, {"user.a": b"1"}, policy=ALL)  # cannot list the target: reported
        assert outcome.failed and "Permission denied" in outcome.failed[0][1]
    finally:
        os.close(fd)


def test_a_refused_selinux_label_is_ignored_never_failed(tmp_path, monkeypatch):
    path = make_file(str(tmp_path / "f"))

    def refuse(target, name, value, flags=0, *, follow_symlinks=True):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "setxattr", refuse)
    fd = os.open(path, os.O_RDONLY)
    try:
        outcome = metadata.apply(fd, {metadata.SELINUX: b"system_u:object_r:etc_t:s0\0"}, {},
                                 policy=Policy(True, False, True))
    finally:
        os.close(fd)
    assert outcome.ok and outcome.ignored == (metadata.SELINUX,)


# --------------------------------------------------------------------------- itemize letters (pure)


def test_differs():
    acl = {ACL_ACCESS: b"acl"}
    assert metadata.differs({}, {}) == (False, False)
    assert metadata.differs({"user.a": b"1"}, {"user.a": b"2"}) == (True, False)
    assert metadata.differs({"user.a": b"1"}, {}) == (True, False)
    assert metadata.differs({}, {"user.extra": b"1"}) == (True, False)  # to be removed: a change too
    assert metadata.differs(acl, {}) == (False, True)
    assert metadata.differs({ACL_DEFAULT: b"1"}, {ACL_DEFAULT: b"2"}) == (False, True)
    assert metadata.differs({metadata.SELINUX: b"a"}, {metadata.SELINUX: b"b"}) == (False, False)
    assert metadata.differs({**acl, CAPABILITY: b"c"}, acl) == (True, False)


@pytest.mark.parametrize("item,kind,x,a,expected", [
    ("", "f", True, False, ".f........x"),
    ("", "f", False, True, ".f.......a."),
    ("", "d", True, True, ".d.......ax"),
    (">f.st......", "f", True, False, ">f.st.....x"),
    (".f...p.....", "f", False, True, ".f...p...a."),
    (">f+++++++++", "f", True, True, ">f+++++++++"),  # a new file: no letters
    (".f...p.....", "f", False, False, ".f...p....."),
    ("", "f", False, False, ""),
])
def test_mark_item(item, kind, x, a, expected):
    assert metadata.mark_item(item, kind, x, a) == expected
