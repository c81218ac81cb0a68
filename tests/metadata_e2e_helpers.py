"""Helpers for the end-to-end metadata tests (tests/test_metadata_e2e.py, tests/test_fat_e2e.py).

``build_tree`` makes the tree the issue names (binary and 4 KiB user.* xattrs, an ACL with a
mask, a directory with access and default ACLs, a capability, a symlink with a trusted.*
xattr, a setuid file with an xattr); ``dump`` describes every entry of a tree with the stock
tools (getfattr, getfacl, getcap, stat) so trees made by pcopy, ``cp -a`` and ``rsync -aHAX``
can be compared entry by entry. ``itemized`` picks rsync-style ``-i`` lines from pcopy's stderr.
Everything runs pcopy as a user does: ``python -m pcopy`` in a subprocess (fault_helpers.run_pcopy).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import walk_paths
from fault_helpers import run_pcopy

ROOT = os.geteuid() == 0
NOBODY = 65534
BINARY = b"\x00\xff\x10\n\x00"  # NULs and high bytes: a value getfattr shows only as hex/base64
BIG = bytes(range(256)) * 16  # 4 KiB: fits on tmpfs; ext4 (4 KiB blocks, no ea_inode) takes at most 4040 bytes
ITEM = re.compile(r"^[<>ch.*][fdLDS][.+cstpoguax]{9} ")


def have(*tools: str) -> None:
    for name in tools:
        if shutil.which(name) is None:
            pytest.skip(f"{name} is not installed")


def sh(*argv) -> str:
    return subprocess.run([os.fspath(a) for a in argv], check=True, capture_output=True, text=True).stdout


def pcopy(*args, rc: int = 0):
    """Run ``python -m pcopy ARGS`` and check its exit code; the CompletedProcess (``.out``, ``.err``)."""
    proc = run_pcopy(*args)
    assert proc.returncode == rc, (args, proc.returncode, proc.err)
    return proc


def report(proc) -> dict:
    """The --json report from a run's stdout."""
    lines = [line for line in proc.out.splitlines() if line.startswith("{")]
    assert len(lines) == 1, proc.out
    return json.loads(lines[0])


def itemized(proc) -> list:
    """The itemized lines (``YXcstpoguax path``) a run printed (on stderr, with -v or -n)."""
    return [line for line in proc.err.splitlines() if ITEM.match(line)]


def write(path: str, data: bytes = b"data\n", mode: int = 0o644) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)
    return path


def set_big(path: str, name: str = "user.big") -> bytes:
    """Set BIG, or its longest prefix this file system stores beside the file's other attributes
    (ext4 with 4 KiB blocks and no ea_inode keeps about 4 KiB of names and values in all)."""
    for size in range(len(BIG), 3000, -8):
        try:
            os.setxattr(path, name, BIG[:size])
            return BIG[:size]
        except OSError:
            continue
    pytest.skip("this file system does not store a 3 KiB attribute value")


def build_tree(src: str) -> dict:
    """The tree of the issue under ``src`` (created); returns {what: relpath} of its entries.

    Root-only entries (the capability, the trusted.* xattr, the chowned file) only as root.
    """
    have("setfattr", "setfacl")
    os.makedirs(src, exist_ok=True)
    names = {}
    plain = write(os.path.join(src, "plain"), b"plain\n")
    os.setxattr(plain, "user.binary", BINARY)
    set_big(plain)
    names["xattrs"] = "plain"
    acl = write(os.path.join(src, "acl"), b"acl\n", 0o660)
    sh("setfacl", "-m", "u:nobody:rw,m::r", acl)  # group::rw- but mask r--: stat shows 0640
    names["acl"] = "acl"
    dacl = os.path.join(src, "dacl")
    os.mkdir(dacl, 0o750)
    sh("setfacl", "-m", "u:nobody:rx", "-d", "-m", "u:nobody:rwx,g::rx,o::-", dacl)
    write(os.path.join(dacl, "inherited"), b"inherits the default ACL\n", 0o640)
    names["dacl"] = "dacl"
    names["inherited"] = "dacl/inherited"
    xdir = os.path.join(src, "xdir")
    os.mkdir(xdir, 0o755)
    os.setxattr(xdir, "user.dir", b"a directory's own attribute")
    write(os.path.join(xdir, "inner"), b"inner\n")
    names["xdir"] = "xdir"
    suid = write(os.path.join(src, "suid"), b"#!/bin/sh\n", 0o4755)
    os.setxattr(suid, "user.s", b"setuid and an xattr")
    names["suid"] = "suid"
    os.symlink("plain", os.path.join(src, "link"))
    names["link"] = "link"
    if ROOT:
        have("setcap", "getcap")
        cap = os.path.join(src, "captrue")
        shutil.copyfile("/bin/true", cap)  # our own file: never setcap the machine's
        os.chmod(cap, 0o755)
        sh("setcap", "cap_net_raw+ep", cap)
        names["cap"] = "captrue"
        sh("setfattr", "-h", "-n", "trusted.t", "-v", "on the link itself", os.path.join(src, "link"))
        owned = write(os.path.join(src, "owned"), b"owned by 1234\n")
        os.chown(owned, 1234, 1234)
        os.setxattr(owned, "user.o", b"1")
        names["owned"] = "owned"
    for rel in sorted(walk_paths(src), key=lambda r: -r.count("/")):
        os.utime(os.path.join(src, rel), ns=(1_600_000_000_123_456_789, 1_600_000_000_987_654_321),
                 follow_symlinks=False)
    return names


def _strip(text: str, path: str) -> str:
    return "\n".join(line for line in text.splitlines() if line and not line.startswith("# file:")
                     and not line.startswith(path))


def describe(path: str) -> dict:
    """One entry as the stock tools see it: xattrs (hex, the entry itself), ACL, capability, mode."""
    st = os.lstat(path)
    entry = {
        "xattrs": _strip(sh("getfattr", "-d", "-m", "-", "-h", "--absolute-names", "-e", "hex", path), path),
        "mode": sh("stat", "-c", "%a", path).strip(),
        "owner": f"{st.st_uid}:{st.st_gid}",
    }
    if not os.path.islink(path):  # getfacl and getcap follow links: a link has neither
        entry["acl"] = _strip(sh("getfacl", "-p", path), path)
        if shutil.which("getcap"):
            entry["cap"] = sh("getcap", path).replace(path, "").strip()
    return entry


def dump(root: str) -> dict:
    """{relpath: describe()} for root (as ".") and every entry below it."""
    return {rel: describe(root if rel == "." else os.path.join(root, rel)) for rel in [".", *walk_paths(root)]}


def diff(a: dict, b: dict) -> dict:
    """The entries (and their fields) where two dumps differ: {} when equal."""
    out = {}
    for rel in sorted(a.keys() | b.keys()):
        x, y = a.get(rel, {}), b.get(rel, {})
        fields = {k: (x.get(k), y.get(k)) for k in x.keys() | y.keys() if x.get(k) != y.get(k)}
        if fields:
            out[rel] = fields
    return out


def cp_a(src: str, dst: str) -> None:
    """``cp -a SRC/. DST``: the reference (coreutils keeps xattrs, ACLs and capabilities with -a)."""
    sh("cp", "-a", os.path.join(src, "."), dst)


def rsync_ahax(src: str, dst: str) -> None:
    have("rsync")
    sh("rsync", "-aHAX", src + "/", dst + "/")
