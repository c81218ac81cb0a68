"""rsync as the oracle, continued: file and several SRCs, --stats, the accepted rsync habits (-a -r -h -P),
remote paths, the --delete guard, and options rsync lacks (--exclude-if-present, --bwlimit's lower bound).

Where rsync has the same spelling its result is the oracle (as in test_rsync_oracle.py: two copies of one
DST state, rsync on one, pcopy on the other, trees compared); where it has no equivalent the test asserts
pcopy's documented behaviour directly.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from fault_helpers import XXHSUM, cli
from rsync_helpers import (
    RSYNC,
    assert_same_trees,
    build,
    clone,
    content,
    dst_spec,
    f,
    need_rsync,
    oracle_pair,
    pcopy_run,
    rsync_run,
    view,
)

import pcopy.api
from pcopy.model.results import Report


def rsync_plain(*args) -> subprocess.CompletedProcess:
    """rsync with exactly these arguments (SRCs as given: no trailing slash is added)."""
    need_rsync()
    return subprocess.run([RSYNC, *map(os.fspath, args)], capture_output=True, text=True, timeout=60)


def error_lines(text: str) -> list:
    return [line for line in text.splitlines() if line.startswith("pcopy: error:")]


# --------------------------------------------------------------------------- copy: a DST entry of another kind


def test_copy_reports_a_conflict_and_does_the_rest_as_rsync(tmp_path):
    """copy never replaces a DST file by SRC's directory (sync does, like rsync): exit 3, an error line for
    it (and for what SRC holds below it), the rest done as rsync does it."""
    src, r, p = oracle_pair(tmp_path)
    rs = rsync_run([], src, r, archive="-aH")
    pc = pcopy_run("copy", src, p, "-q")
    assert rs.returncode == 0, rs.stderr
    assert pc.returncode == 3, pc.stderr
    failed = [line.split(":")[2].strip() for line in error_lines(pc.stderr)]
    assert failed[0] == "conflict" and all(path.startswith("conflict") for path in failed), pc.stderr
    assert content(p, "conflict") == b"a file where SRC has a directory\n"
    assert_same_trees(r, p, ignore=("conflict", "conflict/inside.txt"))


# --------------------------------------------------------------------------- --exclude-if-present (not in rsync)


def marked_pair(tmp_path) -> tuple:
    src = build(tmp_path / "src", {"keep/a.txt": f(b"a\n", 1), "skip/.nobackup": f(b"", 2),
                                   "skip/data.txt": f(b"data\n", 3), "skip/sub/deep.txt": f(b"deep\n", 4)})
    dst = build(tmp_path / "dst", {"skip/old.txt": f(b"old\n", 5), "gone.txt": f(b"gone\n", 6)})
    return src, dst


@pytest.mark.parametrize("args,kept", [([], True), (["--delete"], True), (["--delete-excluded"], False)],
                         ids=["sync", "--delete", "--delete-excluded"])
def test_exclude_if_present(tmp_path, args, kept):
    src, dst = marked_pair(tmp_path)
    pc = pcopy_run("sync", src, dst, "-q", "--exclude-if-present", ".nobackup", *args)
    assert pc.returncode == 0, pc.stderr
    assert content(dst, "keep/a.txt") == b"a\n"
    assert content(dst, "skip/data.txt") is None and content(dst, "skip/.nobackup") is None
    assert content(dst, "skip/old.txt") == (b"old\n" if kept else None)
    assert content(dst, "gone.txt") == (None if args else b"gone\n")


def test_exclude_if_present_creates_no_directory(tmp_path):
    src, _ = marked_pair(tmp_path)
    pc = pcopy_run("copy", src, tmp_path / "new", "-q", "--exclude-if-present", ".nobackup")
    assert pc.returncode == 0, pc.stderr
    assert sorted(os.listdir(tmp_path / "new")) == ["keep"]


# --------------------------------------------------------------------------- --stats, -h, -a, -r, -P


def stats(text: str) -> dict:
    """{label: value} of the 'Label: value' lines."""
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line and not line.startswith("pcopy"))


def test_stats_lines_count_what_rsync_counts(tmp_path):
    src, r, p = oracle_pair(tmp_path)
    rs = rsync_run(["--stats", "--delete"], src, r)
    pc = pcopy_run("sync", src, p, "--stats", "--delete")
    assert (rs.returncode, pc.returncode) == (0, 0), pc.stderr
    ours, theirs = stats(pc.stderr), stats(rs.stdout)
    for label in ("Number of files", "Number of deleted files", "Number of regular files transferred",
                  "Total transferred file size"):
        assert label in ours and label in theirs, label
    assert ours["Number of regular files transferred"] == theirs["Number of regular files transferred"] == "20"
    assert ours["Number of deleted files"].split()[0] == theirs["Number of deleted files"].split()[0] == "6"


def test_stats_numbers_mean_what_rsyncs_mean(tmp_path):
    """The lines that share rsync's labels give rsync's numbers, on a first run and on a no-op one."""
    src, r, p = oracle_pair(tmp_path)
    for _ in range(2):
        rs = rsync_run(["--stats"], src, r)
        pc = pcopy_run("sync", src, p, "--stats")
        ours, theirs = stats(pc.stderr), stats(rs.stdout)
        for label in ("Number of files", "Number of created files", "Number of regular files transferred",
                      "Total file size", "Total transferred file size"):
            assert ours[label] == theirs[label], (label, ours[label], theirs[label])


def test_rsync_habits_are_accepted(tmp_path):
    """-a, -r and -h mean nothing new to pcopy but must not be refused; -h makes --stats sizes human."""
    src, r, p = oracle_pair(tmp_path)
    rs = rsync_run(["-a", "-r", "-h"], src, r)
    pc = pcopy_run("sync", "-a", "-r", "-h", "--stats", src, p)
    assert (rs.returncode, pc.returncode) == (0, 0), pc.stderr
    assert stats(pc.stderr)["Total transferred file size"].endswith("MiB")
    assert_same_trees(r, p)


def test_capital_p_is_partial_and_progress(tmp_path, monkeypatch):
    seen = {}

    def fake_sync(src, dst, **kwargs):
        seen.update(kwargs)
        return Report()

    monkeypatch.setattr(pcopy.api, "sync", fake_sync)
    assert cli(["sync", "-P", build(tmp_path / "src", {"a": f(b"a", 1)}), tmp_path / "dst"]) == 0
    assert (seen["partial"], seen["progress"]) == (True, True)


# --------------------------------------------------------------------------- a file SRC, several SRCs


def test_file_into_an_existing_dir_and_to_a_new_name(tmp_path):
    src, r, p = oracle_pair(tmp_path)
    for dst in (r, p):
        os.mkdir(os.path.join(dst, "into"))
    one = os.path.join(src, "exec.sh")
    assert rsync_plain("-a", one, os.path.join(r, "into") + "/").returncode == 0
    assert rsync_plain("-a", one, os.path.join(r, "renamed.sh")).returncode == 0
    assert pcopy_run("copy", one, os.path.join(p, "into"), "-q").returncode == 0
    assert pcopy_run("copy", one, os.path.join(p, "renamed.sh"), "-q").returncode == 0
    assert content(p, "into/exec.sh") == content(p, "renamed.sh") == b"#!/bin/sh\n"
    assert_same_trees(r, p)


def test_file_into_a_missing_dir_fails_and_creates_nothing(tmp_path):
    src = build(tmp_path / "src", {"a.txt": f(b"a\n", 1)})
    pc = pcopy_run("copy", os.path.join(src, "a.txt"), tmp_path / "missing" / "new.txt")
    assert pc.returncode == 1
    assert len(pc.stderr.splitlines()) == 1 and "missing" in pc.stderr, pc.stderr
    assert not os.path.lexists(tmp_path / "missing")


SEVERAL = ["exec.sh", "link", "nested", "empty", "new_dir"]
LISTED = ["exec.sh", "nested/d.txt", "nested/deep/c.txt", "new_dir/new.txt"]


def manifest_paths(manifest) -> list:
    return sorted(line.split("  ", 1)[1] for line in manifest.read_text().splitlines())


def test_several_sources_match_rsync(tmp_path):
    """pcopy copy A DIR1 DIR2 DST == rsync -a A DIR1 DIR2 DST/ (each as DST/NAME); one manifest for all."""
    src, r, p = oracle_pair(tmp_path, dst=dst_spec(conflict=False))
    sources = [os.path.join(src, n) for n in SEVERAL]
    assert rsync_plain("-aH", *sources, r + "/").returncode == 0
    manifest = tmp_path / "m.xxh"
    pc = pcopy_run("copy", *sources, p, "-q", "--manifest", manifest)
    assert pc.returncode == 0, pc.stderr
    assert_same_trees(r, p)
    assert manifest_paths(manifest) == LISTED
    if XXHSUM:
        check = subprocess.run([XXHSUM, "-c", str(manifest)], cwd=p, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_several_sources_manifest_lists_unchanged_files(tmp_path):
    src, _, p = oracle_pair(tmp_path, dst=dst_spec(conflict=False))
    sources = [os.path.join(src, n) for n in SEVERAL]
    assert pcopy_run("copy", *sources, p, "-q").returncode == 0
    pc = pcopy_run("copy", *sources, p, "-q", "--manifest", tmp_path / "again.xxh")
    assert pc.returncode == 0, pc.stderr
    assert manifest_paths(tmp_path / "again.xxh") == LISTED


def test_several_sources_sync_delete_matches_rsync(tmp_path):
    """--delete with several SRCs works inside each DST/NAME only, as rsync's does: DST's other entries stay."""
    src, r, p = oracle_pair(tmp_path)
    sources = [os.path.join(src, n) for n in ("nested", "same.txt")]
    assert rsync_plain("-aH", "--delete", *sources, r + "/").returncode == 0
    pc = pcopy_run("sync", *sources, p, "-q", "--delete")
    assert pc.returncode == 0, pc.stderr
    assert content(p, "nested/old.txt") is None and content(p, "extra.txt") == b"extra\n"
    assert_same_trees(r, p)


# --------------------------------------------------------------------------- remote paths


@pytest.mark.parametrize("spelling", ["host:photos", "user@host:photos", "host:/abs/photos"])
@pytest.mark.parametrize("side", ["SRC", "DST"])
def test_remote_paths_name_another_machine(tmp_path, spelling, side):
    """host:path goes to the remote shell (here one that cannot connect: ``-e false``), never to a local
    name; one line naming the host, nothing written here. (Transfers: tests/test_remote.py.)"""
    local = build(tmp_path / "local", {"a": f(b"a", 1)})
    paths = [spelling, tmp_path / "out"] if side == "SRC" else [local, spelling]
    for command in ("copy", "sync"):
        pc = pcopy_run(command, *paths, "-e", "false", cwd=tmp_path)
        assert pc.returncode == 1, pc.stderr
        assert len(error_lines(pc.stderr)) == 1 and "pcopy: error: host: " in pc.stderr, pc.stderr
    assert sorted(os.listdir(tmp_path)) == ["local"]


def test_a_local_name_with_a_colon(tmp_path):
    build(tmp_path / "a:b", {"in.txt": f(b"in\n", 1)})
    assert pcopy_run("copy", "./a:b", "./c:d", "-q", cwd=tmp_path).returncode == 0
    assert content(tmp_path, "c:d/in.txt") == b"in\n"


# --------------------------------------------------------------------------- the --delete guard


def guard_setup(tmp_path, backup: dict, photos_extra: dict = None) -> tuple:
    photos = build(tmp_path / "photos", {"a.jpg": f(b"a\n", 1), "b.jpg": f(b"b\n", 2), **(photos_extra or {})})
    return photos, build(tmp_path / "backup", backup)


MISTAKEN = {"photos/a.jpg": f(b"a\n", 1), "other.txt": f(b"other\n", 3)}  # `rsync -a photos backup` made it


def test_guard_refuses_a_mistaken_dst(tmp_path):
    photos, backup = guard_setup(tmp_path, MISTAKEN)
    before = view(backup)
    pc = pcopy_run("sync", "photos", "backup", "--delete", cwd=tmp_path)
    assert pc.returncode == 1, pc.stderr
    assert len(pc.stderr.splitlines()) == 1, pc.stderr
    assert "pcopy sync photos backup/photos --delete" in pc.stderr and "--delete-anyway" in pc.stderr
    assert view(backup) == before


def rsync_twin(tmp_path, dst: str, *args) -> str:
    """rsync -aH ARGS SRC/ on a copy of ``dst``, as it is now; returns the copy."""
    twin = clone(dst, str(tmp_path / "twin"))
    rs = rsync_run(list(args), str(tmp_path / "photos"), twin)
    assert rs.returncode == 0, rs.stderr
    return twin


def test_guard_delete_anyway_proceeds(tmp_path):
    photos, backup = guard_setup(tmp_path, MISTAKEN)
    twin = rsync_twin(tmp_path, backup, "--delete")
    pc = pcopy_run("sync", "photos", "backup", "--delete", "--delete-anyway", "-q", cwd=tmp_path)
    assert pc.returncode == 0, pc.stderr
    assert sorted(os.listdir(backup)) == ["a.jpg", "b.jpg"]
    assert_same_trees(twin, backup)


@pytest.mark.parametrize("backup,photos_extra,args", [
    ({**MISTAKEN, "photos/x": f(b"x\n", 4)}, {"photos/x": f(b"x\n", 4)}, ["--delete"]),  # SRC has a 'photos' too
    ({"photos/a.jpg": f(b"a\n", 1), "a.jpg": f(b"a\n", 1)}, {}, ["--delete", "--exclude", "/photos"]),  # deletes none
], ids=["SRC has the name", "nothing would be deleted"])
def test_guard_lets_real_syncs_through(tmp_path, backup, photos_extra, args):
    photos, backup = guard_setup(tmp_path, backup, photos_extra)
    twin = rsync_twin(tmp_path, backup, *args)
    pc = pcopy_run("sync", "photos", "backup", "-q", *args, cwd=tmp_path)
    assert pc.returncode == 0, pc.stderr
    assert_same_trees(twin, backup)


def test_guard_refuses_when_only_the_name_would_go(tmp_path):
    photos, backup = guard_setup(tmp_path, {"photos/a.jpg": f(b"a\n", 1), "photos/old.jpg": f(b"old\n", 5)})
    pc = pcopy_run("sync", "photos", "backup", "--delete", cwd=tmp_path)
    assert pc.returncode == 1, pc.stderr
    assert content(backup, "photos/old.jpg") == b"old\n"


# --------------------------------------------------------------------------- --bwlimit


def test_bwlimit_slows_the_copy_down(tmp_path):
    """6 MiB at 2 MiB/s: at least ~2 s whatever the bucket's start (only a lower bound: machines are noisy)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(6 << 20))
    started = time.monotonic()
    pc = pcopy_run("copy", src, tmp_path / "dst", "-q", "--bwlimit", "2M")
    elapsed = time.monotonic() - started
    assert pc.returncode == 0, pc.stderr
    assert (tmp_path / "dst" / "big").read_bytes() == (src / "big").read_bytes()
    assert elapsed >= 2.0, f"6 MiB at --bwlimit 2M took only {elapsed:.2f} s"

