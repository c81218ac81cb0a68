"""Metadata over SSH as complete as a local copy: hard links, xattrs and ACLs, --chmod/--chown,
holes and --sparse, attributes fixed in place, young files read twice. Each for push and pull,
through the private sshd of conftest.py, checked against ``rsync -anicHAX`` and against a local
pcopy copy of the same tree; a second run sends nothing.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import threading

import pytest
import sshd_helpers as sshd
from conftest import File, Link, make_tree, temp_files
from fault_helpers import env, pcopy_cmd
from remote_helpers import pcopy, rsync_diff

pytestmark = pytest.mark.skipif(sshd.missing() is not None, reason=sshd.missing() or "")
H = sshd.HOST
DIRECTIONS = ["push", "pull"]


def ends(direction, src, dst) -> tuple:
    return (src, f"{H}:{dst}") if direction == "push" else (f"{H}:{src}", dst)


def copied_bytes(proc) -> int:
    """The bytes the report says were written (``copied N files (X B)`` / ``--stats``)."""
    match = re.search(r"copied \d+ files? \(([\d.]+) (B|KiB|MiB)", proc.err)
    assert match, proc.err
    return int(float(match.group(1)) * {"B": 1, "KiB": 1024, "MiB": 1 << 20}[match.group(2)])


def inodes(root) -> dict:
    return {os.path.relpath(os.path.join(d, n), root): os.lstat(os.path.join(d, n)).st_ino
            for d, _, names in os.walk(root) for n in names}


def xattrs(path) -> dict:
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)}


def meta_snapshot(root) -> dict:
    """Every entry's kind, mode, owner, times and attributes (what a local copy keeps)."""
    out = {}
    for d, dirs, names in os.walk(root):
        for n in dirs + names:
            p = os.path.join(d, n)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                                             st.st_gid, st.st_mtime_ns, xattrs(p))
    return out


def local_copy(*args) -> subprocess.CompletedProcess:
    proc = subprocess.run(pcopy_cmd(*args), capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


# --------------------------------------------------------------------------- hard links

@pytest.mark.parametrize("direction", DIRECTIONS)
def test_hard_links_arrive_as_hard_links(server, tmp_path, direction):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"linked content\n" * 100, "solo": b"alone", "sub/x": b"other group"})
    os.link(src / "a", src / "b")
    os.link(src / "a", src / "sub/c")
    os.link(src / "sub/x", src / "y")
    proc = pcopy(server, "copy", *ends(direction, src, dst), "-H", "-v")
    assert proc.returncode == 0, proc.err
    assert rsync_diff(server, src, dst, "-H") == ""
    got = inodes(dst)
    assert got["a"] == got["b"] == got["sub/c"] != got["solo"]
    assert got["sub/x"] == got["y"] != got["a"]
    assert os.stat(dst / "a").st_nlink == 3
    assert "hf+++++++++" in proc.err
    assert temp_files(dst) == []
    dry = pcopy(server, "copy", *ends(direction, src, tmp_path / "new"), "-H", "-n")
    assert dry.returncode == 0 and dry.err.count("hf+++++++++") == 3, dry.err
    assert not (tmp_path / "new").exists()
    again = pcopy(server, "sync", *ends(direction, src, dst), "-v")  # sync: -H by default
    assert again.returncode == 0, again.err
    assert "hf" not in again.err and ">f" not in again.err, again.err
    assert copied_bytes(again) == 0
    assert inodes(dst) == got


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_hard_link_group_whose_first_name_fails_is_not_linked_to_old_content(server, tmp_path, direction):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": b"new content", "z": b"plain"})
    os.link(src / "a", src / "b")
    os.link(src / "a", src / "c")
    make_tree(dst, {"a/blocker": b"a directory where the first name goes", "b": b"old DST content"})
    proc = pcopy(server, "copy", *ends(direction, src, dst), "-H")
    assert proc.returncode == 3, proc.err  # a: cannot overwrite a directory with a file (copy)
    assert "a: cannot overwrite directory with non-directory" in proc.err
    assert (dst / "b").read_bytes() == b"new content" and (dst / "c").read_bytes() == b"new content"
    assert os.stat(dst / "b").st_ino == os.stat(dst / "c").st_ino
    assert (dst / "a/blocker").exists()


# --------------------------------------------------------------------------- xattrs, ACLs, --chmod/--chown

def attr_tree(src):
    make_tree(src, {"plain": b"p", "tagged": b"t" * 5000, "acl": b"a", "dir/inner": b"i", "dir/link": Link("inner")})
    os.setxattr(src / "dir/link", "trusted.onlink", b"as root, a symlink's own", follow_symlinks=False)
    os.setxattr(src / "tagged", "user.colour", b"blue")
    os.setxattr(src / "tagged", "user.empty", b"")
    os.setxattr(src / "dir", "user.dirnote", b"on a directory")
    (src / "big").write_bytes(os.urandom(3 << 20))  # travels in chunks: its attributes in the end frame
    os.setxattr(src / "big", "user.big", b"x" * 3000)
    subprocess.run(["setcap", "cap_net_bind_service=+ep", src / "big"], check=True)
    os.utime(src / "big", ns=(10**18, 10**18))
    subprocess.run(["setfacl", "-m", "u:nobody:rw,g:nogroup:r", src / "acl"], check=True)
    subprocess.run(["setfacl", "-d", "-m", "u:nobody:rx", src / "dir"], check=True)
    subprocess.run(["setfacl", "-m", "u:nobody:rwx", src / "dir"], check=True)
    os.utime(src / "dir", ns=(10**18, 10**18))


def getfacl(path) -> str:
    return subprocess.run(["getfacl", "-cp", path], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_xattrs_and_acls_as_a_local_copy(server, tmp_path, direction):
    src, dst, local = tmp_path / "src", tmp_path / "dst", tmp_path / "local"
    attr_tree(src)
    local_copy("copy", src, local)
    proc = pcopy(server, "copy", *ends(direction, src, dst))
    assert proc.returncode == 0, proc.err
    assert rsync_diff(server, src, dst, "-AX") == ""
    assert meta_snapshot(dst) == meta_snapshot(local)
    assert os.getxattr(dst / "tagged", "user.colour") == b"blue"
    for name in ("acl", "dir"):
        assert getfacl(dst / name) == getfacl(src / name) != ""
    assert "default:user:nobody:r-x" in getfacl(dst / "dir")
    assert "cap_net_bind_service=ep" in subprocess.run(["getcap", dst / "big"], capture_output=True,
                                                        text=True).stdout
    again = pcopy(server, "sync", *ends(direction, src, dst), "-v")
    assert again.returncode == 0, again.err
    assert copied_bytes(again) == 0 and ">f" not in again.err and ".f" not in again.err, again.err


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_no_xattrs_no_acls_are_honoured(server, tmp_path, direction):
    src, dst = tmp_path / "src", tmp_path / "dst"
    attr_tree(src)
    proc = pcopy(server, "copy", *ends(direction, src, dst), "--no-xattrs", "--no-acls")
    assert proc.returncode == 0, proc.err
    assert xattrs(dst / "tagged") == {} and "user:nobody" not in getfacl(dst / "acl")


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_chmod_chown_as_a_local_copy(server, tmp_path, direction):
    src, dst, local = tmp_path / "src", tmp_path / "dst", tmp_path / "local"
    make_tree(src, {"f": File(b"f", mode=0o644), "x": File(b"x", mode=0o755), "d/g": b"g"})
    opts = ("--chmod", "D750,Fgo-rwx,+X", "--chown", "1234:5678")
    local_copy("copy", src, local, *opts)
    proc = pcopy(server, "copy", *ends(direction, src, dst), *opts)
    assert proc.returncode == 0, proc.err
    assert meta_snapshot(dst) == meta_snapshot(local)
    assert stat.S_IMODE(os.stat(dst / "d").st_mode) == 0o751 and os.stat(dst / "f").st_uid == 1234
    assert stat.S_IMODE(os.stat(dst / "f").st_mode) == 0o600
    again = pcopy(server, "copy", *ends(direction, src, dst), *opts, "-v")
    assert again.returncode == 0, again.err
    assert ".f" not in again.err and copied_bytes(again) == 0, again.err


# --------------------------------------------------------------------------- holes and --sparse

def blocks(path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_holes_are_kept_and_sparse_makes_them(server, tmp_path, direction):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    with open(src / "holey", "wb") as f:  # 16 MiB with two data islands
        f.truncate(16 << 20)
        f.seek(1 << 20)
        f.write(os.urandom(200_000))
        f.seek((16 << 20) - 5000)
        f.write(b"end" * 1000)
    (src / "zeros").write_bytes(bytes(8 << 20))  # written zeros: holes only with --sparse
    assert blocks(src / "holey") < 1 << 20
    proc = pcopy(server, "copy", *ends(direction, src, dst))
    assert proc.returncode == 0, proc.err
    assert rsync_diff(server, src, dst) == ""
    assert blocks(dst / "holey") < 1 << 20 and os.path.getsize(dst / "holey") == 16 << 20
    assert blocks(dst / "zeros") >= 8 << 20
    sparse = tmp_path / "sparse"
    proc = pcopy(server, "copy", *ends(direction, src, sparse), "--sparse")
    assert proc.returncode == 0, proc.err
    assert rsync_diff(server, src, sparse) == ""
    assert blocks(sparse / "zeros") < 1 << 20 and blocks(sparse / "holey") < 1 << 20


# --------------------------------------------------------------------------- attributes fixed in place

@pytest.mark.parametrize("direction", DIRECTIONS)
def test_unchanged_file_with_other_attributes_is_fixed_in_place(server, tmp_path, direction):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"mode": b"m" * 1000, "owner": b"o" * 1000, "tag": b"t" * 1000, "same": b"s"})
    assert pcopy(server, "copy", *ends(direction, src, dst)).returncode == 0
    before = inodes(dst)
    os.chmod(src / "mode", 0o600)
    os.chown(src / "owner", 4321, 8765)
    os.setxattr(src / "tag", "user.new", b"value")
    dry = pcopy(server, "sync", *ends(direction, src, dst), "-n")
    assert dry.returncode == 0, dry.err
    assert ".f...p..... mode" in dry.err and ".f........x tag" in dry.err and ".f....og... owner" in dry.err
    assert xattrs(dst / "tag") == {} and os.stat(dst / "owner").st_uid != 4321
    proc = pcopy(server, "sync", *ends(direction, src, dst), "-v")
    assert proc.returncode == 0, proc.err
    assert ".f...p..... mode" in proc.err
    assert ".f....og... owner" in proc.err
    assert ".f........x tag" in proc.err
    assert " same" not in proc.err
    assert copied_bytes(proc) == 0  # nothing was sent again
    assert inodes(dst) == before  # fixed in place, not replaced
    assert rsync_diff(server, src, dst, "-X") == ""
    assert os.getxattr(dst / "tag", "user.new") == b"value"
    again = pcopy(server, "sync", *ends(direction, src, dst), "-v")
    assert again.returncode == 0 and ".f" not in again.err, again.err


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_checksum_same_content_fixes_times_in_place(server, tmp_path, direction):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"a": File(b"same bytes", mtime_ns=2 * 10**18)})
    make_tree(dst, {"a": File(b"same bytes", mtime_ns=10**18)})
    before = os.stat(dst / "a").st_ino
    proc = pcopy(server, "sync", *ends(direction, src, dst), "-c", "-v")
    assert proc.returncode == 0, proc.err
    assert ".f..t...... a" in proc.err
    assert os.stat(dst / "a").st_ino == before and os.stat(dst / "a").st_mtime_ns == 2 * 10**18


# --------------------------------------------------------------------------- young files

@pytest.mark.parametrize("first,step", [(1400, 1400), (2 << 20, 64 << 10)], ids=["whole", "chunked"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_young_file_being_written_is_never_sent_torn(server, tmp_path, direction, first, step):
    """The second read of a young file (as the local copy's): a file that a writer keeps open and
    appends to while the run goes is never published as the part read so far; it is read again after
    a pause (a small one held for its batch's pause, a big one before its end frame), then once it has
    been quiet for 2 s, and still changing it is reported as changed, with its name."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"old": b"settled"})
    started, stop = threading.Event(), threading.Event()

    def write() -> None:
        with open(src / "busy", "wb") as out:
            out.write(os.urandom(first))
            out.flush()
            started.set()
            while not stop.wait(0.1):
                out.write(os.urandom(step))
                out.flush()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert started.wait(10)
        proc = pcopy(server, "copy", *ends(direction, src, dst), "-j", "1")
    finally:
        stop.set()
        writer.join()
    assert proc.returncode == 3, proc.err
    assert "busy: source changed while being copied" in proc.err
    assert not (dst / "busy").exists() and (dst / "old").read_bytes() == b"settled"
    assert temp_files(dst) == []


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_directory_attributes_set_and_itemized_as_locally(server, tmp_path, direction):
    src, dst, local = tmp_path / "src", tmp_path / "dst", tmp_path / "local"
    make_tree(src, {"d/f": b"f", "e/g": b"g", "same/h": b"h"})
    local_copy("copy", src, local)
    assert pcopy(server, "copy", *ends(direction, src, dst)).returncode == 0
    os.chmod(src / "d", 0o700)
    os.setxattr(src / "e", "user.q", b"1")
    expected = local_copy("sync", src, local, "-v").stderr
    assert ".d...p..... d/" in expected and ".d........x e/" in expected
    proc = pcopy(server, "sync", *ends(direction, src, dst), "-v")
    assert proc.returncode == 0, proc.err
    assert ".d...p..... d/" in proc.err and ".d........x e/" in proc.err
    assert " same/" not in proc.err
    assert meta_snapshot(dst) == meta_snapshot(local)
    assert rsync_diff(server, src, dst, "-X") == ""


# --------------------------------------------------------------------------- what the DST end cannot store

@pytest.mark.parametrize("direction", DIRECTIONS)
def test_fat_destination_warns_once_and_a_second_sync_is_a_no_op(server, tmp_path, direction):
    """The DST end's file system is probed where it is (``fit_to_destination``): FAT stores no xattrs,
    ACLs or modes and 2-second times; one warning per namespace, and the next sync copies nothing."""
    from fat_helpers import fat_mount

    src = tmp_path / "src"
    make_tree(src, {f"d/f{i}": File(b"x" * i, mtime_ns=(1_600_000_001 + 2 * i) * 10**9 + 123) for i in range(6)})
    for i in range(6):
        os.setxattr(src / f"d/f{i}", "user.comment", b"\x00binary\xff")
    os.setxattr(src / "d", "user.comment", b"dir")
    with fat_mount(tmp_path) as fat:
        dst = os.path.join(fat.path, "dst")
        proc = pcopy(server, "copy", *ends(direction, src, dst))
        assert proc.returncode == 0, proc.err
        warned = [line for line in proc.err.splitlines() if "does not store extended attributes" in line]
        assert len(warned) == 1, proc.err
        assert sorted(os.listdir(os.path.join(dst, "d"))) == [f"f{i}" for i in range(6)]
        if fat.driver != "vfat":
            return  # fusefat's rename gives each file the current time (see test_fat_e2e.py)
        assert rsync_diff(server, src, dst, "--modify-window=1", "--no-perms", "--no-owner", "--no-group") == ""
        again = pcopy(server, "sync", *ends(direction, src, dst), "-v")
        assert again.returncode == 0, again.err
        assert ".f" not in again.err and ">f" not in again.err and copied_bytes(again) == 0, again.err


# --------------------------------------------------------------------------- hard links: a property

HL_DIRS = ("", "a", "b", "a/c")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_no_remote_name_gets_another_inodes_content(server, tmp_path, direction, seed):
    """Random hard-link groups over a few directories, a DST holding old versions of some names and
    directories in the way of others (their copy fails): every DST name holds its own source content or
    what it held before, and DST names linked together come from one source inode (issue 11's rule)."""
    import random

    rng = random.Random(seed)
    src, dst = tmp_path / "src", tmp_path / "dst"
    names = []
    for g in range(rng.randint(2, 6)):
        for k in range(rng.randint(1, 4)):
            d = rng.choice(HL_DIRS)
            names.append((f"{d}/g{g}n{k}" if d else f"g{g}n{k}", g))
    content = {g: f"group {g}\n".encode() * (g + 1) for _, g in names}
    first: dict = {}
    for relpath, g in names:
        path = src / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if g in first:
            os.link(first[g], path)
        else:
            path.write_bytes(content[g])
            first[g] = path
    before, blocked = {}, set()
    for relpath, _ in names:
        roll = rng.random()
        path = dst / relpath
        if roll < 0.3:
            path.parent.mkdir(parents=True, exist_ok=True)
            before[relpath] = f"old bytes of {relpath}\n".encode()
            path.write_bytes(before[relpath])
        elif roll < 0.5:
            (path / "blocker").parent.mkdir(parents=True, exist_ok=True)
            (path / "blocker").write_bytes(b"in the way")
            blocked.add(relpath)
    dst.mkdir(exist_ok=True)
    proc = pcopy(server, "copy", *ends(direction, src, dst), "-H")
    assert proc.returncode == (3 if blocked else 0), proc.err
    group_of = dict(names)
    inode_group: dict = {}
    for relpath, g in names:
        path = dst / relpath
        if relpath in blocked:
            assert (path / "blocker").read_bytes() == b"in the way"
            continue
        data = path.read_bytes()
        assert data in (content[g], before.get(relpath)), relpath
        if data == content[g]:
            assert inode_group.setdefault(os.stat(path).st_ino, g) == group_of[relpath], relpath
    copied = [relpath for relpath, _ in names if relpath not in blocked]
    assert all((dst / r).read_bytes() == content[group_of[r]] for r in copied), proc.err
    for g in set(group_of.values()):  # one DST inode per group, whichever names could be written
        assert len({os.stat(dst / r).st_ino for r in copied if group_of[r] == g}) <= 1
    assert temp_files(dst) == []


# --------------------------------------------------------------------------- all of it at once

@pytest.mark.parametrize("direction", DIRECTIONS)
def test_sync_keeps_everything_rsync_HAX_checks_and_a_second_sync_sends_nothing(server, tmp_path, direction):
    src, dst = tmp_path / "src", tmp_path / "dst"
    attr_tree(src)
    os.link(src / "tagged", src / "dir/tagged-too")
    with open(src / "holey", "wb") as f:
        f.truncate(4 << 20)
        f.seek(2 << 20)
        f.write(b"middle")
    make_tree(src, {f"many/f{i:03d}": f"{i}\n".encode() * i for i in range(150)})
    proc = pcopy(server, "sync", *ends(direction, src, dst), "--delete")
    assert proc.returncode == 0, proc.err
    assert rsync_diff(server, src, dst, "-HAX", "--delete") == ""
    assert os.stat(dst / "tagged").st_ino == os.stat(dst / "dir/tagged-too").st_ino
    assert blocks(dst / "holey") < 1 << 20
    again = pcopy(server, "sync", *ends(direction, src, dst), "--delete", "-v", "--stats")
    assert again.returncode == 0, again.err
    assert copied_bytes(again) == 0 and not re.search(r"^[.>ch][fdL]", again.err, re.M), again.err
