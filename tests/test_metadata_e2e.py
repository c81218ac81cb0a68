"""End to end: xattrs, POSIX ACLs and capabilities through ``python -m pcopy copy`` and ``sync``.

Black box: pcopy runs in a subprocess on real files, on the disk under /tmp (tmp_path) and on
tmpfs (/dev/shm), each skipped with the reason where it lacks user.* xattrs or ACLs; the
result is read back with the stock getfattr, getfacl, getcap and stat and compared, entry by
entry, with the source and with what ``cp -a`` (and ``rsync -aHAX``) make of the same tree.
The unit tests of the building blocks are tests/test_metadata.py and tests/test_metadata_acl.py;
FAT destinations are tests/test_fat_e2e.py. Helpers: tests/metadata_e2e_helpers.py.
"""

from __future__ import annotations

import os
import stat
import sys

import pytest
from metadata_e2e_helpers import (
    BINARY,
    ROOT,
    build_tree,
    cp_a,
    describe,
    diff,
    dump,
    have,
    itemized,
    pcopy,
    report,
    rsync_ahax,
    sh,
    write,
)
from metadata_helpers import PLACES, needs_root, place


@pytest.fixture(params=PLACES)
def where(request, tmp_path):
    """A directory (disk or tmpfs) with src/ and dst/, where user.* xattrs and ACLs work."""
    return place(request, tmp_path)


@pytest.fixture
def tree(where):
    """(src, dst, names): the issue's tree in src, copied once by ``pcopy copy`` into dst."""
    src, dst = os.path.join(where, "src"), os.path.join(where, "dst")
    names = build_tree(src)
    pcopy("copy", src, dst, "-q")
    return src, dst, names


# --------------------------------------------------------------------------- 1. copy = cp -a


def test_copy_keeps_every_attribute_as_cp_a_does(where):
    src = os.path.join(where, "src")
    names = build_tree(src)
    pcopy("copy", src, os.path.join(where, "dst"))
    cp_a(src, os.path.join(where, "cp"))
    rsync_ahax(src, os.path.join(where, "rsync"))
    want = dump(src)
    got = dump(os.path.join(where, "dst"))
    assert diff(want, got) == {}
    assert diff(dump(os.path.join(where, "cp")), got) == {}, "pcopy copy must equal cp -a"
    assert diff(dump(os.path.join(where, "rsync")), got) == {}, "and rsync -aHAX"
    # the points the issue names, spelled out (the dumps above hold them too)
    dst = os.path.join(where, "dst")
    assert os.getxattr(os.path.join(dst, "plain"), "user.binary") == BINARY
    assert os.getxattr(os.path.join(dst, "plain"), "user.big") == os.getxattr(os.path.join(src, "plain"), "user.big")
    assert len(os.getxattr(os.path.join(dst, "plain"), "user.big")) == 4096 or "shm" not in where
    acl = sh("getfacl", "-c", os.path.join(dst, "acl"))
    assert "user:nobody:rw-\t#effective:r--" in acl and "mask::r--" in acl and "group::rw-" in acl
    assert stat.S_IMODE(os.stat(os.path.join(dst, "acl")).st_mode) == 0o640  # the mask, as in SRC
    dacl = sh("getfacl", "-c", os.path.join(dst, "dacl"))
    assert "user:nobody:r-x" in dacl and "default:user:nobody:rwx" in dacl
    assert os.stat(os.path.join(dst, "suid")).st_mode & 0o7777 == 0o4755
    assert os.getxattr(os.path.join(dst, "suid"), "user.s") == b"setuid and an xattr"
    if ROOT:
        assert "cap_net_raw=ep" in sh("getcap", os.path.join(dst, names["cap"]))
        assert os.getxattr(os.path.join(dst, "link"), "trusted.t", follow_symlinks=False) == b"on the link itself"
        assert os.lstat(os.path.join(dst, "owned")).st_uid == 1234


def test_the_file_in_a_default_acl_directory_has_exactly_its_sources_acl(tree):
    """DST's dacl/ gets its default ACL only after its contents (finish_dirs): the file inside must
    hold SRC's inherited ACL, not one inherited again nor a missing one."""
    src, dst, names = tree
    assert describe(os.path.join(dst, names["inherited"])) == describe(os.path.join(src, names["inherited"]))
    assert "user:nobody:rwx" in sh("getfacl", "-c", os.path.join(dst, names["inherited"]))


# --------------------------------------------------------------------------- 2. sync compares attributes


def test_sync_after_an_xattr_change_itemizes_x_and_copies_it(tree):
    src, dst, _ = tree
    os.setxattr(os.path.join(src, "plain"), "user.binary", b"\x01changed")
    proc = pcopy("sync", src, dst, "-v", "--json")
    assert itemized(proc) == [".f........x plain"]
    assert report(proc)["copied"] == 0 and report(proc)["updated"] == 1
    assert os.getxattr(os.path.join(dst, "plain"), "user.binary") == b"\x01changed"
    assert diff(dump(src), dump(dst)) == {}


def test_sync_after_an_xattr_is_removed_removes_it(tree):
    src, dst, _ = tree
    os.removexattr(os.path.join(src, "plain"), "user.big")
    proc = pcopy("sync", src, dst, "-v")
    assert itemized(proc) == [".f........x plain"]
    assert "user.big" not in os.listxattr(os.path.join(dst, "plain"))
    assert os.getxattr(os.path.join(dst, "plain"), "user.binary") == BINARY


def test_sync_after_an_acl_only_change_itemizes_a_then_is_a_no_op(tree):
    """u:daemon:r with the mask kept at r--: the mode stays 0640, so only 'a' (position 10)."""
    src, dst, _ = tree
    before = os.stat(os.path.join(src, "acl")).st_mode
    sh("setfacl", "-m", "u:daemon:r,m::r", os.path.join(src, "acl"))
    assert os.stat(os.path.join(src, "acl")).st_mode == before
    proc = pcopy("sync", src, dst, "-v")
    assert itemized(proc) == [".f.......a. acl"]
    assert describe(os.path.join(dst, "acl")) == describe(os.path.join(src, "acl"))
    again = pcopy("sync", src, dst, "-v", "--json")
    assert itemized(again) == []
    assert report(again)["updated"] == report(again)["copied"] == 0


def test_an_acl_change_that_moves_the_mask_itemizes_p_and_a(tree):
    src, dst, _ = tree
    sh("setfacl", "-m", "u:nobody:rw", os.path.join(src, "acl"))  # mask recalculated: rw-, mode 0660
    proc = pcopy("sync", src, dst, "-v")
    assert itemized(proc) == [".f...p...a. acl"]
    assert stat.S_IMODE(os.stat(os.path.join(dst, "acl")).st_mode) == 0o660
    assert describe(os.path.join(dst, "acl")) == describe(os.path.join(src, "acl"))


def test_a_dry_run_shows_an_xattr_change_and_changes_nothing(tree):
    src, dst, _ = tree
    os.setxattr(os.path.join(src, "plain"), "user.new", b"1")
    proc = pcopy("sync", src, dst, "-n")
    assert itemized(proc) == [".f........x plain"]
    assert "user.new" not in os.listxattr(os.path.join(dst, "plain"))


def test_sync_applies_an_acl_only_change_on_a_directory(tree):
    """Access and default ACL of an otherwise unchanged directory (finish_dirs applies them)."""
    src, dst, names = tree
    path = os.path.join(src, names["dacl"])
    mode = os.stat(path).st_mode
    sh("setfacl", "-m", "u:daemon:rx", "-d", "-m", "u:daemon:r", path)
    assert os.stat(path).st_mode == mode  # the mask stays r-x
    pcopy("sync", src, dst)
    assert describe(os.path.join(dst, names["dacl"])) == describe(path)
    assert diff(dump(src), dump(dst)) == {}


def test_a_directory_acl_change_is_itemized(tree):
    src, dst, names = tree
    sh("setfacl", "-m", "u:daemon:rx", os.path.join(src, names["dacl"]))
    assert itemized(pcopy("sync", src, dst, "-v")) == [".d.......a. dacl/"]


def test_an_xattr_change_on_a_symlink_reaches_dst(tree):
    src, dst, _ = tree
    sh("setfattr", "-h", "-n", "user.l" if not ROOT else "trusted.t", "-v", "changed", os.path.join(src, "link"))
    proc = pcopy("sync", src, dst, "-v")
    assert itemized(proc) == [".L........x link"]
    assert describe(os.path.join(dst, "link")) == describe(os.path.join(src, "link"))


# --------------------------------------------------------------------------- 3. --no-xattrs, --no-acls


def _names(path: str) -> set:
    return set(os.listxattr(path, follow_symlinks=False))


def test_no_xattrs_copies_no_xattr_but_the_acls(where):
    src, dst = os.path.join(where, "src"), os.path.join(where, "dst")
    build_tree(src)
    pcopy("copy", src, dst, "--no-xattrs")
    for rel, entry in dump(dst).items():
        names = _names(os.path.join(dst, rel))
        assert not {n for n in names if not n.startswith("system.posix_acl_")}, (rel, names)
        if "acl" in entry:
            assert entry["acl"] == describe(os.path.join(src, rel))["acl"], rel
        assert not entry.get("cap"), rel  # a capability is an xattr (security.capability)
    assert stat.S_IMODE(os.stat(os.path.join(dst, "suid")).st_mode) == 0o4755


def test_no_acls_copies_no_acl_but_the_xattrs_and_the_mode(where):
    src, dst = os.path.join(where, "src"), os.path.join(where, "dst")
    build_tree(src)
    pcopy("copy", src, dst, "--no-acls")
    for rel in dump(dst):
        names = _names(os.path.join(dst, rel))
        assert not {n for n in names if n.startswith("system.posix_acl_")}, (rel, names)
        wanted = {n for n in _names(os.path.join(src, rel)) if not n.startswith("system.")}
        assert names == wanted, rel
    # the mode is the source's: group bits = the mask r--, and no ACL entry says otherwise
    assert stat.S_IMODE(os.stat(os.path.join(dst, "acl")).st_mode) == 0o640
    assert "group::r--" in sh("getfacl", "-c", os.path.join(dst, "acl"))


def test_no_xattrs_and_no_acls_in_sync_do_not_compare_them(tree):
    src, dst, _ = tree
    os.setxattr(os.path.join(src, "plain"), "user.binary", b"new")
    sh("setfacl", "-m", "u:daemon:r,m::r", os.path.join(src, "acl"))
    proc = pcopy("sync", src, dst, "-v", "--no-xattrs", "--no-acls")
    assert itemized(proc) == []
    assert os.getxattr(os.path.join(dst, "plain"), "user.binary") == BINARY
    assert "daemon" not in sh("getfacl", "-c", os.path.join(dst, "acl"))


def test_the_short_options_are_accepted_and_mean_the_default(where):
    src = os.path.join(where, "src")
    build_tree(src)
    pcopy("copy", src, os.path.join(where, "dst"), "-X", "-A")
    pcopy("copy", src, os.path.join(where, "dflt"))
    assert diff(dump(os.path.join(where, "dst")), dump(os.path.join(where, "dflt"))) == {}
    assert diff(dump(src), dump(os.path.join(where, "dst"))) == {}


# --------------------------------------------------------------------------- 6. owners, as root


@needs_root
def test_owner_repair_restores_the_capability_that_chown_dropped(tree):
    """chown drops security.capability and clears setuid: sync must chown back, then re-apply both."""
    have("getcap")
    src, dst, names = tree
    for rel in dump(dst):
        os.chown(os.path.join(dst, rel), 1234, 1234, follow_symlinks=False)
    assert sh("getcap", os.path.join(dst, names["cap"])).strip() == ""  # the kernel dropped it
    proc = pcopy("sync", src, dst, "-v")
    lines = {line[12:]: line[:11] for line in itemized(proc)}
    for rel in ("plain", "acl", "suid", "link", names["cap"]):
        assert lines[rel][6:8] == "og", (rel, lines)
    assert "owned" not in lines  # it was 1234:1234 in SRC too
    assert diff(dump(src), dump(dst)) == {}
    assert "cap_net_raw=ep" in sh("getcap", os.path.join(dst, names["cap"]))
    assert os.stat(os.path.join(dst, "suid")).st_mode & 0o7777 == 0o4755
    again = pcopy("sync", src, dst, "-v", "--json")
    assert itemized(again) == [] and report(again)["updated"] == 0


@needs_root
def test_a_capability_removed_in_src_is_removed_in_dst(tree):
    src, dst, names = tree
    sh("setcap", "-r", os.path.join(src, names["cap"]))
    proc = pcopy("sync", src, dst, "-v")
    assert itemized(proc) == [f".f........x {names['cap']}"]
    assert sh("getcap", os.path.join(dst, names["cap"])).strip() == ""


def test_a_file_copied_again_keeps_its_attributes(tree):
    """A content change recopies the file: the new temp file gets every attribute again."""
    src, dst, _ = tree
    write(os.path.join(src, "suid"), b"#!/bin/sh\necho changed\n", 0o4755)
    proc = pcopy("sync", src, dst, "-v")
    assert [line[:2] for line in itemized(proc)] == [">f"]
    assert diff(dump(src), dump(dst)) == {}


# --------------------------------------------------------------------------- the other copy paths


def test_sync_checksum_still_syncs_an_xattr_change(tree):
    src, dst, _ = tree
    os.setxattr(os.path.join(src, "plain"), "user.binary", b"changed")
    proc = pcopy("sync", src, dst, "-c", "-v")
    assert itemized(proc) == [".f........x plain"]
    assert os.getxattr(os.path.join(dst, "plain"), "user.binary") == b"changed"


def test_link_dest_does_not_link_a_file_whose_xattrs_changed(where):
    src = os.path.join(where, "src")
    write(os.path.join(src, "f"), b"same content\n")
    os.setxattr(os.path.join(src, "f"), "user.k", b"old")
    pcopy("sync", src, os.path.join(where, "snap1"))
    os.setxattr(os.path.join(src, "f"), "user.k", b"new")
    pcopy("sync", src, os.path.join(where, "snap2"), "--link-dest", "../snap1")
    assert os.getxattr(os.path.join(where, "snap2", "f"), "user.k") == b"new"
    assert os.getxattr(os.path.join(where, "snap1", "f"), "user.k") == b"old"  # the old snapshot unchanged


def test_partial_copies_a_big_files_attributes(where):
    src, dst = os.path.join(where, "src"), os.path.join(where, "dst")
    big = write(os.path.join(src, "big"), os.urandom(3 << 20), 0o660)
    os.setxattr(big, "user.k", BINARY)
    sh("setfacl", "-m", "u:nobody:rw,m::r", big)
    pcopy("copy", src, dst, "--partial")
    assert describe(os.path.join(dst, "big")) == describe(big)


# --------------------------------------------------------------------------- scripts/metadata-table


@needs_root
def test_the_metadata_table_script_shows_pcopy_keeping_what_cp_a_keeps():
    """scripts/metadata-table runs cp -a, rsync -aHAX and pcopy copy on one tree in /dev/shm: pcopy's
    column must be ✓ wherever cp -a's is; with --no-hard-links, hard links are the one ✗."""
    have("rsync", "setcap", "setfacl", "getfacl")
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "metadata-table")
    table = sh(sys.executable, script)
    lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}
    assert len(rows) == 14, table  # the header and 13 rows
    for row, (cp, _rsync, ours) in rows.items():
        if row != "metadata":
            assert cp == "✓" and ours == "✓", (row, table)
    flat = sh(sys.executable, script, "--", "--no-hard-links")
    assert "| hard links | ✓ | ✓ | ✗" in flat, flat
