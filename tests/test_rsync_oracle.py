"""rsync as the oracle for pcopy's rsync-named options.

pcopy's copy/sync/watch take rsync's option names with rsync's meaning
(pcopy/cli/transfer_options.py), and ``pcopy sync SRC DST`` is meant to be
``rsync -aH SRC/ DST/`` (pcopy keeps hard links by default, as cp -a; ``copy``
is ``rsync -aH`` without deletions). So the simplest honest check of an
option is to ask rsync: one SRC tree (files with distinct mtimes and sizes,
modes, a symlink, a dangling symlink, an empty dir, nested dirs, a hard link)
and one initial DST state (files equal, older, newer, of equal size with
another mtime, of equal size and mtime with other content, extra ones, a file
where SRC has a directory) are built; the DST state is copied twice; rsync
runs on one copy and pcopy, with the same spelling, on the other; and the
two results are compared entry by entry: kind, file content, mode, owner,
symlink target, hard-link count, mtime of files and symlinks (at the
resolution rsync keeps, ns on Linux), and which entries exist. Directory
mtimes and atimes are ignored. Exit codes are compared too.

rsync compares mtimes to the second unless told ``--modify-window=-1``;
pcopy compares nanoseconds (its copies keep them). The oracle runs with
``--modify-window=-1`` unless the case sets a window, so the two compare
alike (``ns_only.txt`` differs from its DST twin only in the ns part).

Cases where pcopy is wrong are ``xfail(strict=True)``: the fix flips them.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from typing import Callable, Optional

import pytest
from fault_helpers import need_root
from rsync_helpers import (
    assert_same_trees,
    blob,
    build,
    content,
    dirs_in,
    dst_spec,
    f,
    oracle_pair,
    pcopy_run,
    rsync_run,
    src_spec,
    view,
)


@dataclasses.dataclass
class Case:
    id: str
    args: list  # the spelling both tools get
    expect: dict = dataclasses.field(default_factory=dict)  # relpath -> content() after the run (None: absent)
    command: str = "sync"
    src: Optional[Callable[[], dict]] = None
    conflict: bool = True  # DST holds a file where SRC has a directory
    ns: bool = True  # rsync compares ns (--modify-window=-1), as pcopy does
    ignore: tuple = ()  # relpaths not compared (each case says why)
    modes: dict = dataclasses.field(default_factory=dict)  # relpath -> permission bits after the run
    backup_dir: str = ""  # directories below it are not compared (test_backup_dir_makes_only_needed_dirs)
    xfail: str = ""


def with_tmp_only_dirs() -> dict:
    """SRC plus directories that hold only *.tmp files (empty once *.tmp is excluded)."""
    return {**src_spec(), "only_tmp/a.tmp": f(b"a\n", 300), "only_tmp/sub/b.tmp": f(b"b\n", 301)}


NEW = b"new content, longer\n"  # changed.txt in SRC
OLD = b"old\n"  # changed.txt in DST
TMP_FILTERS = ["--exclude", "*.tmp", "--exclude", "cache/"]
# -u: with --modify-window=-1 rsync's -u no longer skips a DST file newer by just 1 s (off_by_1s.txt), so
# the oracle compares whole seconds, and then sees ns_only.txt (same second) as unchanged: not compared.
SECONDS = dict(ns=False, ignore=("ns_only.txt",))
# rsync cannot descend into a directory whose DST is a file it was told to keep (exit 23): no conflict there.
KEEPING = dict(conflict=False)

CASES = [
    Case("plain", [], {"changed.txt": NEW, "extra.txt": b"extra\n", "conflict": "<dir>", "ns_only.txt": b"ns\n"}),
    Case("-u", ["-u"], {"newer_in_dst.txt": b"dst version, newer\n", "eq_mtime_diff_size.txt": b"src longer one\n",
                        "eq_size_newer_dst.txt": b"DDDD\n", "off_by_1s.txt": b"zw\n", "changed.txt": NEW}, **SECONDS),
    Case("--update", ["--update"], {"newer_in_dst.txt": b"dst version, newer\n"}, **SECONDS),
    Case("--ignore-existing", ["--ignore-existing"],
         {"changed.txt": OLD, "new_dir/new.txt": b"new\n", "tiny.bin": blob(100, 1)}, **KEEPING),
    Case("--existing", ["--existing"],
         {"changed.txt": NEW, "new_dir": None, "empty": None, "tiny.bin": None, "link": None}),
    Case("--existing --ignore-existing --delete", ["--existing", "--ignore-existing", "--delete"],
         {"changed.txt": OLD, "extra.txt": None, "extra_dir": None, "new_dir": None}, **KEEPING),
    Case("--size-only", ["--size-only"], {"eq_size_diff_mtime.txt": b"BBBB\n", "changed.txt": NEW}),
    Case("--min-size 1K", ["--min-size", "1K"], {"tiny.bin": None, "small.bin": None, "large.bin": blob(1_100_000, 4)}),
    Case("--max-size 1M", ["--max-size", "1M"], {"large.bin": None, "mid.bin": blob(1_040_000, 3)}),
    Case("--max-size 1K", ["--max-size", "1K"], {"small.bin": blob(1010, 2), "mid.bin": blob(1_040_000, 9)}),
    Case("--modify-window 2", ["--modify-window", "2"], {"off_by_1s.txt": b"zw\n", "ns_only.txt": b"NS\n"}),
    Case("--exclude without -m", ["--exclude", "*.tmp"], {"only_tmp/sub": "<dir>", "empty": "<dir>"},
         src=with_tmp_only_dirs),
    Case("-m", ["-m", "--exclude", "*.tmp"], {"only_tmp": None, "empty": None, "nested/d.txt": b"d\n"},
         src=with_tmp_only_dirs),
    Case("--prune-empty-dirs", ["--prune-empty-dirs", "--exclude", "*.tmp"], {"only_tmp": None},
         src=with_tmp_only_dirs),
    Case("--backup", ["--backup"], {"changed.txt~": OLD, "changed.txt": NEW, "same.txt~": None}),
    Case("--backup --suffix .bak", ["--backup", "--suffix", ".bak"], {"changed.txt.bak": OLD, "changed.txt~": None}),
    Case("--backup-dir", ["--backup-dir", "bak"], {"bak/changed.txt": OLD, "bak/nested/deep/c.txt": b"c\n"},
         backup_dir="bak", **KEEPING),
    Case("--backup-dir --delete", ["--backup-dir", "bak", "--delete"],
         {"bak/changed.txt": OLD, "bak/extra.txt": b"extra\n", "bak/extra_dir/x.txt": b"x\n", "extra.txt": None},
         backup_dir="bak", **KEEPING),
    Case("--backup-dir, a file where SRC has a dir", ["--backup-dir", "bak"],
         {"conflict/inside.txt": b"inside\n", "bak/conflict": b"a file where SRC has a directory\n"},
         backup_dir="bak"),
    Case("--chmod D755,F644", ["--chmod", "D755,F644"], {"exec.sh": b"#!/bin/sh\n"},
         modes={"exec.sh": 0o644, "mode600.txt": 0o644, "nested": 0o755, "new_dir/new.txt": 0o644}),
    Case("--chmod ug+w,o-rwx", ["--chmod", "ug+w,o-rwx"], {"mode600.txt": b"private\n"},
         modes={"exec.sh": 0o770, "mode600.txt": 0o620, "nested": 0o770, "same.txt": 0o660}),
    Case("--delete", ["--delete"], {"extra.txt": None, "extra_dir": None, "nested/old.txt": None,
                                    "extra.tmp": None, "changed.txt": NEW}),
    Case("--delete with filters", ["--delete", *TMP_FILTERS],
         {"extra.txt": None, "extra.tmp": b"extra tmp\n", "cache/stale": b"stale cache\n", "keep.tmp": None}),
    Case("--delete --delete-excluded", ["--delete", "--delete-excluded", *TMP_FILTERS],
         {"extra.txt": None, "extra.tmp": None, "cache": None, "keep.tmp": None}),
    Case("--delete-excluded alone", ["--delete-excluded", "--exclude", "*.tmp"],
         {"extra.txt": None, "extra.tmp": None, "keep.tmp": None}),
    Case("-c", ["-c"], {"same_meta_diff_content.txt": b"1234\n"}),
    Case("copy", [], {"changed.txt": NEW, "extra.txt": b"extra\n"}, command="copy", **KEEPING),
    Case("copy -c", ["-c"], {"same_meta_diff_content.txt": b"1234\n", "extra.txt": b"extra\n"}, command="copy",
         **KEEPING),
    Case("copy -u", ["-u"], {"newer_in_dst.txt": b"dst version, newer\n"}, command="copy", **KEEPING, **SECONDS),
]


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


def run_both(tmp_path, case: Case, pcopy_args=(), rsync_args=()) -> tuple:
    """Run rsync and pcopy on two copies of the DST state; return (src, r, p, rsync proc, pcopy proc)."""
    src, r, p = oracle_pair(tmp_path, case.src() if case.src else None, dst_spec(case.conflict))
    archive = "-aH"  # pcopy keeps hard links by default (as cp -a)
    rs = rsync_run([*case.args, *rsync_args], src, r, archive=archive, ns=case.ns)
    pc = pcopy_run(case.command, src, p, "-q", *case.args, *pcopy_args)
    return src, r, p, rs, pc


def assert_expected(root, expect: dict, modes: Optional[dict] = None) -> None:
    got = {rel: content(root, rel) for rel in expect}
    assert got == expect
    got_modes = {rel: os.lstat(os.path.join(root, rel)).st_mode & 0o7777 for rel in modes or {}}
    assert got_modes == (modes or {})


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_option_matches_rsync(tmp_path, case):
    src, r, p, rs, pc = run_both(tmp_path, case)
    assert rs.returncode == 0, rs.stderr
    assert pc.returncode == 0, pc.stderr
    assert_expected(r, case.expect, case.modes)  # rsync does what the case claims (else the case is wrong)
    assert_same_trees(r, p, case.ignore, case.backup_dir)


def files_list(tmp_path, names) -> str:
    path = tmp_path / "list"
    path.write_text("".join(f"{n}\n" for n in names))
    return str(path)


LISTED = ["same.txt", "changed.txt", "nested", "new_dir/new.txt", "empty", "link"]


@pytest.mark.parametrize("recursive", [False, True], ids=["-a --files-from", "-a -r --files-from"])
def test_files_from_matches_rsync(tmp_path, recursive):
    """rsync -a --files-from does not recurse into a listed directory (-a's -r is off) unless -r is given."""
    listing = files_list(tmp_path, LISTED)
    extra = ["-r"] if recursive else []
    case = Case("files-from", ["--files-from", listing, *extra])
    src, r, p, rs, pc = run_both(tmp_path, case)
    assert rs.returncode == 0, rs.stderr
    assert pc.returncode == 0, pc.stderr
    nested_c = b"c, the new one\n" if recursive else b"c\n"
    assert_expected(r, {"changed.txt": NEW, "new_dir/new.txt": b"new\n", "tiny.bin": None, "nested": "<dir>",
                        "nested/deep/c.txt": nested_c, "nested/d.txt": b"d\n" if recursive else None})
    assert_same_trees(r, p, ignore=(".",))  # DST's own mode: test_files_from_leaves_dst_root_alone


def test_files_from_leaves_dst_root_alone(tmp_path):
    case = Case("files-from", ["--files-from", files_list(tmp_path, ["same.txt"])])
    src, r, p, rs, pc = run_both(tmp_path, case)
    assert (rs.returncode, pc.returncode) == (0, 0), pc.stderr
    assert oct(os.stat(r).st_mode & 0o7777) == "0o700"
    assert_same_trees(r, p)


def test_backup_dir_makes_only_needed_dirs(tmp_path):
    """Their modes differ on purpose (pcopy makes backup directories 0700): only which exist is compared."""
    src, r, p, rs, pc = run_both(tmp_path, Case("--backup-dir", ["--backup-dir", "bak", "--delete"], conflict=False))
    assert (rs.returncode, pc.returncode) == (0, 0), pc.stderr
    assert dirs_in(p, "bak") == dirs_in(r, "bak")


def test_backup_delete_keeps_a_deleted_dir_whole(tmp_path):
    """--backup --delete: rsync deletes a directory's files one by one, leaving DIR/FILE~ in a DIR that stays;
    pcopy moves the whole directory to DIR~ (pcopy.fs.backup: "a deleted entry is moved"), so DST holds no
    DIR after --delete. Everything else is as rsync does it."""
    src, r, p, rs, pc = run_both(tmp_path, Case("--backup --delete", ["--backup", "--delete"]))
    assert (rs.returncode, pc.returncode) == (0, 0), pc.stderr
    assert_expected(r, {"extra.txt~": b"extra\n", "extra_dir/x.txt~": b"x\n", "changed.txt~": OLD})
    assert_expected(p, {"extra.txt~": b"extra\n", "extra_dir~/x.txt": b"x\n", "extra_dir": None})
    assert_same_trees(r, p, ignore=("extra_dir", "extra_dir/x.txt~", "extra_dir~", "extra_dir~/x.txt"))


@pytest.mark.skipif(os.geteuid() != 0, reason="--chown needs root")
def test_chown_matches_rsync(tmp_path):
    case = Case("--chown", ["--chown", "65534:65534"])
    src, r, p, rs, pc = run_both(tmp_path, case)
    assert rs.returncode == 0, rs.stderr
    assert pc.returncode == 0, pc.stderr
    st = os.lstat(os.path.join(r, "changed.txt"))
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert_same_trees(r, p)


def test_one_file_system_matches_rsync(tmp_path):
    """-x: a mount point below SRC is copied as an empty directory (with the mounted root's mode), as rsync -x."""
    need_root()
    src, r, p = oracle_pair(tmp_path)
    mnt = os.path.join(src, "mnt")
    os.mkdir(mnt)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0750", "tmpfs", mnt], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        build(mnt, {"inside.txt": f(b"on another file system\n", 400)})
        rs = rsync_run(["-x"], src, r)
        pc = pcopy_run("sync", src, p, "-q", "-x")
    finally:
        if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
    assert rs.returncode == 0, rs.stderr
    assert pc.returncode == 0, pc.stderr
    assert_expected(r, {"mnt": "<dir>", "mnt/inside.txt": None, "changed.txt": NEW})
    assert_same_trees(r, p)


def itemized(text: str) -> set:
    """(code, path) of the itemized lines in rsync -i / pcopy -n output, normalized where the two differ
    only in form: directories' attribute lines (``.d..t...... nested/``) are left out (pcopy does not itemize
    them); a hard link counts as a new file (rsync and pcopy pick different first names); a deleted
    directory's trailing slash is dropped (test_dry_run_deleted_dir_has_a_slash)."""
    found = set()
    for line in text.splitlines():
        code, path = line[:11].rstrip(), line[12:].split(" -> ")[0].split(" => ")[0]
        if line[11:12] != " " or not (code == "*deleting" or len(code) == 11 and code[0] in "<>ch."):
            continue
        if not code.startswith(".d"):
            found.add((">f+++++++++" if code == "hf+++++++++" else code, path.rstrip("/")))
    return found


@pytest.mark.parametrize("command,args", [("copy", []), ("sync", ["--delete"])], ids=["copy -n", "sync -n --delete"])
def test_dry_run_matches_rsync(tmp_path, command, args):
    """-n writes nothing; pcopy itemizes on stderr without -v the same changes rsync -n -i lists.

    sync also shows the DST file it replaces by SRC's directory as ``*deleting conflict`` (README: "an entry
    of another kind that sync would replace shows as *deleting but is not a deletion"); rsync shows only
    the ``cd+++++++++ conflict/`` that follows."""
    src, r, p = oracle_pair(tmp_path, dst=dst_spec(conflict=command == "sync"))
    before = view(p)
    rs = rsync_run(["-n", "-i", *args], src, r, archive="-aH")
    pc = pcopy_run(command, src, p, "-n", *args)
    assert rs.returncode == 0, rs.stderr
    assert pc.returncode == 0, pc.stderr
    assert view(r) == before and view(p) == before
    assert pc.stdout == ""
    expected = itemized(rs.stdout) | ({("*deleting", "conflict")} if command == "sync" else set())
    assert itemized(pc.stderr) == expected
    assert len(itemized(pc.stderr)) > 25


def test_dry_run_deleted_dir_has_a_slash(tmp_path):
    src, r, p = oracle_pair(tmp_path)
    rs = rsync_run(["-n", "-i", "--delete"], src, r)
    pc = pcopy_run("sync", src, p, "-n", "--delete")
    assert "*deleting   extra_dir/" in rs.stdout.splitlines()
    assert "*deleting   extra_dir/" in pc.stderr.splitlines()
