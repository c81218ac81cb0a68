"""copy/sync options over SSH (pcopy.remote), each compared with the same run done locally on the same
tree, through the private sshd of conftest.py (the "remote" is this machine, so its files are checked
directly) and with ``rsync -anic`` where it applies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import sshd_helpers as sshd
import xxhash
from conftest import Dir, File, Link, make_tree, sample_spec, temp_files, tree_snapshot
from fault_helpers import env, pcopy_cmd
from remote_helpers import pcopy, rsync_diff, ssh_children, wait_for

pytestmark = pytest.mark.skipif(sshd.missing() is not None, reason=sshd.missing() or "")
H = sshd.HOST
DIRECTIONS = ["push", "pull"]
XXHSUM = shutil.which("xxhsum")


def local(*args) -> subprocess.CompletedProcess:
    proc = subprocess.run(pcopy_cmd(*args), capture_output=True, timeout=120, env=env(), cwd="/")
    proc.out = proc.stdout.decode("utf-8", "surrogateescape")  # type: ignore[attr-defined]
    proc.err = proc.stderr.decode("utf-8", "surrogateescape")  # type: ignore[attr-defined]
    return proc


def ends(direction: str, src, dst) -> tuple:
    return (str(src), f"{H}:{dst}") if direction == "push" else (f"{H}:{src}", str(dst))


def items(text: str, root: str = "") -> list:
    """The itemized lines of a -v run (``>f+++++++++ name``), sorted: what a local run shows too
    (``root`` shown as ROOT: a --link-dest snapshot's path)."""
    lines = (line.replace(root, "ROOT") if root else line for line in text.splitlines())
    return sorted(line for line in lines if line[:2] in (">f", "cL", "cd", "hf", "*d", ".f"))


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    make_tree(src, sample_spec())
    make_tree(src, {f"many/f{i:03d}": f"file {i}\n".encode() * i for i in range(50)})
    make_tree(src, {"big": os.urandom(3 << 20)})
    return src


# --------------------------------------------------------------------------- --manifest


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_manifest_describes_dst_as_written_like_a_local_run(server, tree, tmp_path, direction):
    dst, manifest = tmp_path / "dst", tmp_path / "remote.xxh"
    os.link(tree / "many" / "f010", tree / "many" / "f010-link")  # a hard link's other name has its line too
    proc = pcopy(server, "copy", *ends(direction, tree, dst), "--manifest", manifest)
    assert proc.returncode == 0, proc.err
    ref, ref_manifest = tmp_path / "ref", tmp_path / "local.xxh"
    assert local("copy", tree, ref, "--manifest", ref_manifest).returncode == 0
    assert sorted(manifest.read_bytes().splitlines()) == sorted(ref_manifest.read_bytes().splitlines())
    assert len(manifest.read_bytes().splitlines()) > 50
    # a rerun (nothing copied) still lists every file, hashed where DST is; one changed file
    changed = (tree / "hello.txt").read_bytes().swapcase()  # same size and time: the quick check skips it
    (dst / "hello.txt").write_bytes(changed)
    os.utime(dst / "hello.txt", ns=(os.stat(tree / "hello.txt").st_atime_ns, os.stat(tree / "hello.txt").st_mtime_ns))
    again = pcopy(server, "copy", *ends(direction, tree, dst), "--manifest", manifest)
    assert again.returncode == 0, again.err
    assert "copied 0 files" in again.err
    lines = manifest.read_bytes().splitlines()
    assert len(lines) == len(ref_manifest.read_bytes().splitlines())
    assert sum(line.endswith((b"  many/f010", b"  many/f010-link")) for line in lines) == 2
    digest = xxhash.xxh3_128(changed).hexdigest().encode()
    assert digest + b"  hello.txt" in lines  # what DST holds, not what SRC holds
    if XXHSUM:
        # not --strict: the xxhsum here cannot read the escaped line of the name holding a newline
        check = subprocess.run([XXHSUM, "-c", str(manifest)], cwd=dst, capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_manifest_inside_a_pulled_dst_is_neither_copied_over_nor_deleted(server, tree, tmp_path):
    dst = tmp_path / "dst"
    for _ in range(2):
        proc = pcopy(server, "sync", f"{H}:{tree}", dst, "--delete", "--manifest", dst / "MANIFEST.xxh")
        assert proc.returncode == 0, proc.err
        assert (dst / "MANIFEST.xxh").exists()
        assert b"MANIFEST" not in (dst / "MANIFEST.xxh").read_bytes()
    assert os.stat(dst).st_mtime_ns == os.stat(tree).st_mtime_ns  # closed before directory times were set


def test_manifest_in_a_missing_directory_is_refused_before_anything_is_written(server, tree, tmp_path):
    dst = tmp_path / "dst"
    proc = pcopy(server, "copy", tree, f"{H}:{dst}", "--manifest", tmp_path / "nowhere" / "m.xxh")
    assert proc.returncode == 1
    assert "cannot write manifest: its directory does not exist" in proc.err
    assert not dst.exists()


# --------------------------------------------------------------------------- --link-dest


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_link_dest_on_the_dst_host_links_what_agrees_like_a_local_run(server, tmp_path, direction):
    src = tmp_path / "src"
    make_tree(src, {"same.txt": b"unchanged", "changes.txt": b"v1", "d/deep.txt": b"deep",
                    "mode.txt": File(b"m", mode=0o644), "big": os.urandom(2 << 20)})
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    assert pcopy(server, "sync", *ends(direction, src, snaps / "one")).returncode == 0
    (src / "changes.txt").write_bytes(b"version 2")
    os.chmod(src / "mode.txt", 0o600)  # same content, other mode: copied, never linked
    proc = pcopy(server, "sync", *ends(direction, src, snaps / "two"), "--link-dest", "../one", "-v",
                 "--manifest", tmp_path / "two.xxh")
    assert proc.returncode == 0, proc.err
    one, two = snaps / "one", snaps / "two"
    for name in ("same.txt", "d/deep.txt", "big"):
        assert os.stat(one / name).st_ino == os.stat(two / name).st_ino, name
    for name in ("changes.txt", "mode.txt"):
        assert os.stat(one / name).st_ino != os.stat(two / name).st_ino, name
    assert (one / "changes.txt").read_bytes() == b"v1" and (two / "changes.txt").read_bytes() == b"version 2"
    assert rsync_diff(server, src, two) == ""
    # the same run done locally: same lines, same manifest
    ref = tmp_path / "ref"
    shutil.copytree(one, ref / "one", symlinks=True)
    mine = local("sync", src, ref / "two", "--link-dest", "../one", "-v", "--manifest", tmp_path / "ref.xxh")
    assert mine.returncode == 0, mine.err
    assert items(proc.out + proc.err, str(snaps)) == items(mine.out + mine.err, str(ref))
    assert sorted((tmp_path / "two.xxh").read_bytes().splitlines()) == \
        sorted((tmp_path / "ref.xxh").read_bytes().splitlines())
    assert temp_files(two) == []


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_link_dest_dry_run_and_missing_snapshot(server, tmp_path, direction):
    src, snaps = tmp_path / "src", tmp_path / "snaps"
    make_tree(src, {"a": b"a", "b": b"b"})
    snaps.mkdir()
    assert pcopy(server, "sync", *ends(direction, src, snaps / "one")).returncode == 0
    dry = pcopy(server, "sync", *ends(direction, src, snaps / "two"), "--link-dest", "../one", "-n", "-v")
    assert dry.returncode == 0, dry.err
    assert "hf+++++++++ a" in dry.out + dry.err
    assert not (snaps / "two").exists()
    missing = pcopy(server, "sync", *ends(direction, src, snaps / "two"), "--link-dest", "../none")
    assert missing.returncode == 1
    assert "--link-dest directory does not exist" in missing.err and len(missing.err.strip().splitlines()) == 1
    assert not (snaps / "two").exists()


# --------------------------------------------------------------------------- --partial


def test_a_kept_prefix_is_not_sent_again_and_a_wrong_one_is_dropped(tmp_path):
    """The two halves in memory: with a kept copy of 2 MiB only the last MiB travels; a kept copy
    that is not the source's prefix fails the digest check, is dropped, and a whole send completes."""
    from pcopy.fs.temps import partial_name
    from pcopy.remote.receive import MISMATCH, receive_batch, receiver_options
    from pcopy.remote.send import send_batch

    src, dst = tmp_path / "src", tmp_path / "dst"
    data = os.urandom(3 << 20)
    make_tree(src, {"big": data})
    os.makedirs(dst)
    options = receiver_options(str(dst), "t0ken", {"partial": True})
    for prefix, outcome in ((data[:2 << 20], "copied"), (os.urandom(2 << 20), MISMATCH)):
        (dst / partial_name("big")).write_bytes(prefix)
        frames: list = []
        assert send_batch(str(src), "", [["big", "", False, 2 << 20]], lambda h, p=b"", f=frames: f.append((h, p))) \
            == []
        assert sum(len(p) for h, p in frames if h["t"] == "chunk") == 1 << 20
        results = receive_batch(options, "", iter(frames).__next__)
        assert outcome in (results[0][1], results[0][6])
        assert not (dst / partial_name("big")).exists()
    assert not (dst / "big").exists() or (dst / "big").read_bytes() == data
    frames = []
    send_batch(str(src), "", [["big", "", False]], lambda h, p=b"": frames.append((h, p)))
    assert receive_batch(options, "", iter(frames).__next__)[0][1] == "copied"
    assert (dst / "big").read_bytes() == data and temp_files(dst) == []


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_partial_resumes_a_big_file_after_the_transport_was_killed(server, tmp_path, direction):
    from pcopy.fs.temps import partial_name

    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"big": os.urandom(24 << 20), "small": b"s"})
    kept = dst / partial_name("big")
    cmd = pcopy_cmd("copy", *ends(direction, src, dst), "--partial", "--bwlimit", "4M", *server.args())
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd="/")
    assert wait_for(lambda: kept.exists() and kept.stat().st_size >= 4 << 20, 60), proc.stderr
    for pid in ssh_children(proc.pid):
        os.kill(pid, 9)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and f"{H}: connection lost" in err.decode(), err
    assert wait_for(lambda: not sshd.serve_pids(server), 5)
    assert not (dst / "big").exists()
    held = kept.stat().st_size
    assert 4 << 20 <= held < 24 << 20
    assert kept.read_bytes() == (src / "big").read_bytes()[:held]  # what was written, kept
    rerun = pcopy(server, "copy", *ends(direction, src, dst), "--partial", "-v")
    assert rerun.returncode == 0, rerun.err
    assert ">f+++++++++ big" in rerun.out + rerun.err
    assert rsync_diff(server, src, dst) == ""
    assert temp_files(dst) == []


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_run_without_partial_removes_kept_copies(server, tmp_path, direction):
    from pcopy.fs.temps import partial_name

    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"big": os.urandom(2 << 20)})
    make_tree(dst, {partial_name("big"): b"x" * (1 << 20), partial_name("other"): b"y"})
    keep = pcopy(server, "copy", *ends(direction, src, dst), "--partial")
    assert keep.returncode == 0, keep.err
    assert (dst / partial_name("other")).exists()  # --partial keeps what it may resume later
    (dst / "big").unlink()
    (dst / partial_name("big")).write_bytes(b"x" * (1 << 20))
    plain = pcopy(server, "sync", *ends(direction, src, dst))
    assert plain.returncode == 0, plain.err
    assert rsync_diff(server, src, dst) == "" and temp_files(dst) == []


# --------------------------------------------------------------------------- a file SRC, several SRCs


def _same_as_local(mine, ref, made: tuple = ()) -> None:
    """The remote run's DST is what the local run made (the times of the roots and of the directories
    the test ``made`` aside: a copy into them moves them)."""
    a, b = tree_snapshot(mine), tree_snapshot(ref)
    for rel in (".", *made):
        a[rel], b[rel] = a[rel][:2], b[rel][:2]
    assert a == b


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_file_src_goes_into_a_dir_or_to_a_new_name_as_locally(server, tree, tmp_path, direction):
    mine, ref = tmp_path / "mine", tmp_path / "ref"
    for root in (mine, ref):
        os.makedirs(root / "into")
    one, link = tree / "exec.sh", tree / "sub" / "link-to-hello"
    runs = [(one, "into"), (one, "into/"), (one, "renamed.sh"), (link, "a-link")]
    for src, name in runs:
        proc = pcopy(server, "copy", *ends(direction, src, f"{mine}/{name}"), "-v")
        assert proc.returncode == 0, proc.err
        assert local("copy", src, f"{ref}/{name}").returncode == 0
    _same_as_local(mine, ref, ("into",))
    assert os.readlink(mine / "a-link") == "../hello.txt"
    assert (mine / "into" / "exec.sh").read_bytes() == one.read_bytes() and os.stat(mine / "renamed.sh").st_mode & 0o111
    again = pcopy(server, "copy", *ends(direction, one, f"{mine}/renamed.sh"), "-v")
    assert again.returncode == 0 and "copied 0 files" in again.err, again.err
    (tree / "exec.sh").write_bytes(b"#!/bin/sh\necho changed\n")
    changed = pcopy(server, "copy", *ends(direction, one, f"{mine}/renamed.sh"), "-v")
    assert changed.returncode == 0, changed.err
    assert ">f.st...... renamed.sh" in changed.out + changed.err
    assert (mine / "renamed.sh").read_bytes() == b"#!/bin/sh\necho changed\n"
    assert temp_files(mine) == []


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_file_into_a_missing_dir_fails_and_creates_nothing(server, tree, tmp_path, direction):
    for target in ("missing/new.txt", "missing/"):
        proc = pcopy(server, "copy", *ends(direction, tree / "hello.txt", f"{tmp_path}/{target}"))
        assert proc.returncode == 1
        lines = proc.err.strip().splitlines()
        assert len(lines) == 1 and "missing" in lines[0], proc.err
        assert not (tmp_path / "missing").exists()


SEVERAL = ["exec.sh", "sub", "empty-dir", "link-to-dir", "many"]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_several_srcs_each_into_dst_name_with_one_report_and_manifest(server, tree, tmp_path, direction):
    mine, ref = tmp_path / "mine", tmp_path / "ref"
    sources = [tree / n for n in SEVERAL]
    srcs = [str(s) for s in sources] if direction == "push" else [f"{H}:{s}" for s in sources]
    dst = f"{H}:{mine}" if direction == "push" else str(mine)
    proc = pcopy(server, "copy", *srcs, dst, "--manifest", tmp_path / "mine.xxh", "--json")
    assert proc.returncode == 0, proc.err
    mirror = local("copy", *sources, ref, "--manifest", tmp_path / "ref.xxh", "--json")
    assert mirror.returncode == 0, mirror.err
    _same_as_local(mine, ref)
    assert sorted((tmp_path / "mine.xxh").read_bytes().splitlines()) == \
        sorted((tmp_path / "ref.xxh").read_bytes().splitlines())
    ours, theirs = json.loads(proc.out), json.loads(mirror.out)
    for key in ("copied", "symlinks", "failed", "skipped", "bytes"):
        assert ours.get(key) == theirs.get(key), key
    again = pcopy(server, "copy", *srcs, dst, "--manifest", tmp_path / "again.xxh")
    assert again.returncode == 0 and "copied 0 files" in again.err, again.err
    assert sorted((tmp_path / "again.xxh").read_bytes().splitlines()) == \
        sorted((tmp_path / "ref.xxh").read_bytes().splitlines())


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_several_srcs_sync_delete_works_inside_each_dst_name_only(server, tree, tmp_path, direction):
    mine = tmp_path / "mine"
    make_tree(mine, {"sub/old.txt": b"old", "extra.txt": b"extra"})
    sources = [tree / "sub", tree / "hello.txt"]
    srcs = [str(s) for s in sources] if direction == "push" else [f"{H}:{s}" for s in sources]
    proc = pcopy(server, "sync", *srcs, f"{H}:{mine}" if direction == "push" else str(mine), "--delete")
    assert proc.returncode == 0, proc.err
    assert not (mine / "sub" / "old.txt").exists() and (mine / "extra.txt").read_bytes() == b"extra"
    assert rsync_diff(server, tree / "sub", mine / "sub") == ""
    assert (mine / "hello.txt").read_bytes() == (tree / "hello.txt").read_bytes()


def test_srcs_on_two_machines_are_a_usage_error(server, tree, tmp_path):
    mixed = pcopy(server, "copy", f"{H}:{tree}/sub", tree / "many", tmp_path / "out")
    assert mixed.returncode == 2 and "must all be on one machine" in mixed.err, mixed.err
    hosts = pcopy(server, "copy", f"{H}:{tree}/sub", f"other.invalid:{tree}/many", tmp_path / "out")
    assert hosts.returncode == 2 and "different hosts" in hosts.err, hosts.err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- filters: markers, --files-from; -x


def _twin(tmp_path, spec: dict, dst_spec: dict) -> tuple:
    """SRC, and two DSTs made alike: one for the remote run, one for the local run."""
    src = tmp_path / "src"
    make_tree(src, spec)
    make_tree(tmp_path / "mine", dst_spec)
    make_tree(tmp_path / "ref", dst_spec)
    return src, tmp_path / "mine", tmp_path / "ref"


MARKED = {"keep/a.txt": b"a\n", "skip/.nobackup": b"", "skip/data.txt": b"data\n", "skip/sub/deep.txt": b"deep\n"}


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("args", [[], ["--delete"], ["--delete-excluded"]])
def test_exclude_if_present_as_locally(server, tmp_path, direction, args):
    src, mine, ref = _twin(tmp_path, MARKED, {"skip/old.txt": b"old\n", "gone.txt": b"gone\n",
                                              "nomark/x": b"x"})
    proc = pcopy(server, "sync", *ends(direction, src, mine), "--exclude-if-present", ".nobackup", "-v", *args)
    assert proc.returncode == 0, proc.err
    mirror = local("sync", src, ref, "--exclude-if-present", ".nobackup", "-v", *args)
    assert mirror.returncode == 0, mirror.err
    _same_as_local(mine, ref)
    assert items(proc.out + proc.err) == items(mirror.out + mirror.err)
    assert not (mine / "skip" / "data.txt").exists()
    assert (mine / "skip" / "old.txt").exists() == (args != ["--delete-excluded"])
    if args:
        assert not (mine / "nomark").exists()  # not in SRC at all: deleted


LISTED = {"same.txt": b"same", "changed.txt": b"new", "nested/deep/c.txt": b"c", "nested/d.txt": b"d",
          "new_dir/new.txt": b"new", "tiny.bin": b"t", "unlisted/u": b"u"}


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("extra", [[], ["-r"], ["--delete"]])
def test_files_from_a_local_list_as_locally(server, tmp_path, direction, extra):
    src, mine, ref = _twin(tmp_path, LISTED, {"changed.txt": b"old", "extra.txt": b"x", "unlisted/v": b"v"})
    for root in (mine, ref):
        os.chmod(root, 0o700)
    listing = tmp_path / "list.txt"
    listing.write_text("same.txt\n./changed.txt\nnested\n# a comment\nnew_dir/new.txt\n")
    proc = pcopy(server, "sync", *ends(direction, src, mine), "--files-from", listing, "-v", *extra)
    assert proc.returncode == 0, proc.err
    mirror = local("sync", src, ref, "--files-from", listing, "-v", *extra)
    assert mirror.returncode == 0, mirror.err
    a, b = tree_snapshot(mine), tree_snapshot(ref)
    assert a.pop(".")[:2] == b.pop(".")[:2] and a == b  # DST's root left as it is (0700), as locally
    assert items(proc.out + proc.err) == items(mirror.out + mirror.err)
    assert (mine / "unlisted" / "v").exists() and not (mine / "tiny.bin").exists()


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_one_file_system_copies_a_mount_point_empty(server, tmp_path, direction):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    src = tmp_path / "src"
    make_tree(src, {"here.txt": b"here", "d": Dir(mode=0o750)})
    mnt = src / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0750", "tmpfs", mnt], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        (mnt / "inside.txt").write_bytes(b"on another file system")
        proc = pcopy(server, "sync", *ends(direction, src, tmp_path / "mine"), "-x")
        mirror = local("sync", src, tmp_path / "ref", "-x")
    finally:
        if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
    assert proc.returncode == 0, proc.err
    assert mirror.returncode == 0, mirror.err
    assert (tmp_path / "mine" / "mnt").is_dir() and not (tmp_path / "mine" / "mnt" / "inside.txt").exists()
    _same_as_local(tmp_path / "mine", tmp_path / "ref")


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dry", [False, True])
def test_prune_empty_dirs_as_locally_and_as_rsync(server, tmp_path, direction, dry):
    src, mine, ref = _twin(tmp_path, {"empty": Dir(), "a/b/c": Dir(), "logs/x.log": b"log", "d/e/f.txt": b"f",
                                      "d/g": Dir(), "top.txt": b"t"}, {"old": Dir()})
    args = ["-m", "--exclude", "*.log", "-v"] + (["-n"] if dry else [])
    proc = pcopy(server, "sync", *ends(direction, src, mine), *args)
    assert proc.returncode == 0, proc.err
    mirror = local("sync", src, ref, *args)
    assert mirror.returncode == 0, mirror.err
    assert items(proc.out + proc.err) == items(mirror.out + mirror.err)
    if dry:
        assert sorted(os.listdir(mine)) == ["old"]
        return
    _same_as_local(mine, ref)
    assert sorted(os.listdir(mine)) == ["d", "old", "top.txt"] and os.listdir(mine / "d") == ["e"]
    assert rsync_diff(server, src, mine, "-m", "--exclude", "*.log") == ""


# --------------------------------------------------------------------------- --backup


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("args", [["--backup"], ["--backup", "--suffix", ".old"], ["--backup-dir", "bak"],
                                  ["--backup-dir", "../elsewhere"]])
def test_backup_keeps_what_is_replaced_or_deleted_as_locally(server, tmp_path, direction, args):
    spec = {"same.txt": b"same", "changed.txt": b"new content", "link": Link("same.txt"), "d/in.txt": b"in",
            "kind": b"now a file"}
    old = {"same.txt": b"same", "changed.txt": b"old", "link": Link("old-target"), "gone.txt": b"gone",
           "gonedir/x": b"x", "d/gone.txt": b"g", "kind/was-a-dir": b"w"}
    src, mine, ref = _twin(tmp_path, spec, old)
    for root in ("mine", "ref"):
        os.utime(tmp_path / root / "same.txt", ns=(os.stat(src / "same.txt").st_atime_ns,
                                                  os.stat(src / "same.txt").st_mtime_ns))
    elsewhere = ["--backup-dir", str(tmp_path / "elsewhere-ref")] if "../elsewhere" in args else args
    for _ in range(2):  # the second run finds the backups and leaves them alone
        proc = pcopy(server, "sync", *ends(direction, src, mine), "--delete", "-v", *args)
        assert proc.returncode == 0, proc.err
        mirror = local("sync", src, ref, "--delete", "-v", *elsewhere)
        assert mirror.returncode == 0, mirror.err
        assert items(proc.out + proc.err) == items(mirror.out + mirror.err)
    made = tuple(rel for rel, item in tree_snapshot(mine).items() if rel.startswith("bak") and item[0] == "dir")
    _same_as_local(mine, ref, made)  # backup directories are made (0700) when needed: their times differ
    if "../elsewhere" in args:
        dirs = tuple(rel for rel, item in tree_snapshot(tmp_path / "elsewhere").items() if item[0] == "dir")
        _same_as_local(tmp_path / "elsewhere", tmp_path / "elsewhere-ref", dirs)
    suffix = ".old" if ".old" in args else "~"
    kept = (mine / f"changed.txt{suffix}") if args[0] == "--backup" else \
        (mine / "bak" / "changed.txt" if "bak" in args else tmp_path / "elsewhere" / "changed.txt")
    assert kept.read_bytes() == b"old"
    assert (mine / "changed.txt").read_bytes() == b"new content"


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_several_srcs_refuse_a_missing_src_or_a_file_dst_before_writing(server, tree, tmp_path, direction):
    (tmp_path / "a-file").write_bytes(b"f")
    for srcs, dst, said in (([tree / "sub", tmp_path / "missing"], tmp_path / "new", "cannot read source"),
                            ([tree / "sub", tree / "many"], tmp_path / "a-file", "need a directory as DST")):
        args = [str(s) for s in srcs] + [f"{H}:{dst}"] if direction == "push" else \
            [f"{H}:{s}" for s in srcs] + [str(dst)]
        proc = pcopy(server, "copy", *args)
        assert proc.returncode == 1
        lines = proc.err.strip().splitlines()
        assert len(lines) == 1 and said in lines[0], proc.err
    assert not (tmp_path / "new").exists() and (tmp_path / "a-file").read_bytes() == b"f"


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_checksum_of_a_file_copied_to_a_new_name_reads_it_under_its_src_name(server, tmp_path, direction):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, {"f.txt": File(b"new!", mtime_ns=1_600_000_000_000_000_000)})
    make_tree(dst, {"g.txt": File(b"old!", mtime_ns=1_600_000_000_000_000_000)})  # same size and time
    quick = pcopy(server, "copy", *ends(direction, src / "f.txt", dst / "g.txt"))
    assert quick.returncode == 0 and (dst / "g.txt").read_bytes() == b"old!", quick.err
    proc = pcopy(server, "copy", *ends(direction, src / "f.txt", dst / "g.txt"), "-c", "-v")
    assert proc.returncode == 0, proc.err
    assert ">fc........ g.txt" in proc.out + proc.err
    assert (dst / "g.txt").read_bytes() == b"new!" and sorted(os.listdir(dst)) == ["g.txt"]
    same = pcopy(server, "copy", *ends(direction, src / "f.txt", dst / "g.txt"), "-c", "-v")
    assert same.returncode == 0 and "copied 0 files" in same.err, same.err


def test_transform_stays_refused_with_one_line(tmp_path):
    make_tree(tmp_path / "src", {"f": b"x"})
    proc = subprocess.run(pcopy_cmd("copy", tmp_path / "src", f"{H}:/x", "--transform", "gzip"),
                          capture_output=True, text=True, env=env(), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not supported yet with --transform" in lines[0], proc.stderr


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_dry_run_that_would_replace_an_entry_of_another_kind_changes_nothing(server, tmp_path, direction):
    src, mine, ref = _twin(tmp_path, {"kind": b"now a file"}, {"kind/was-a-dir": b"w"})
    for args in (["-n", "-v"], ["-n", "-v", "--backup"]):
        proc = pcopy(server, "sync", *ends(direction, src, mine), *args)
        assert proc.returncode == 0, proc.err
        mirror = local("sync", src, ref, *args)
        assert items(proc.out + proc.err) == items(mirror.out + mirror.err)
        assert (mine / "kind" / "was-a-dir").read_bytes() == b"w"


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_link_dest_does_not_link_a_file_whose_xattrs_changed(server, tmp_path, direction):
    src, snaps = tmp_path / "src", tmp_path / "snaps"
    make_tree(src, {"tagged": b"t", "plain": b"p"})
    try:
        os.setxattr(src / "tagged", "user.pcopy", b"one")
    except OSError as exc:
        pytest.skip(f"no user xattrs here: {exc}")
    snaps.mkdir()
    assert pcopy(server, "sync", *ends(direction, src, snaps / "one"), "-X").returncode == 0
    assert os.getxattr(snaps / "one" / "tagged", "user.pcopy") == b"one"
    os.setxattr(src / "tagged", "user.pcopy", b"two")
    proc = pcopy(server, "sync", *ends(direction, src, snaps / "two"), "-X", "--link-dest", "../one")
    assert proc.returncode == 0, proc.err
    assert os.stat(snaps / "one" / "plain").st_ino == os.stat(snaps / "two" / "plain").st_ino
    assert os.stat(snaps / "one" / "tagged").st_ino != os.stat(snaps / "two" / "tagged").st_ino
    assert os.getxattr(snaps / "two" / "tagged", "user.pcopy") == b"two"
    assert os.getxattr(snaps / "one" / "tagged", "user.pcopy") == b"one"  # the old snapshot is never changed
