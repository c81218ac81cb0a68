"""scripts/backup-example: dated --link-dest snapshots, rotation, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from conftest import make_tree

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "backup-example")


def backup(src, backups, keep="2"):
    env = dict(os.environ, PCOPY=f"{sys.executable} -m pcopy")
    return subprocess.run(["bash", SCRIPT, str(src), str(backups), keep], env=env,
                          capture_output=True, text=True, timeout=120)


def snapshots(backups):
    return sorted(n for n in os.listdir(backups) if n.startswith("20"))


def test_snapshots_share_unchanged_files_and_rotate(tmp_path):
    src, backups = tmp_path / "src", tmp_path / "backups"
    make_tree(src, {"same": b"unchanged", "d/changing": b"v1"})
    for i in range(3):
        if i:
            (src / "d" / "changing").write_bytes(f"v{i + 1}".encode())
            time.sleep(1.1)  # snapshot names have one-second resolution
        proc = backup(src, backups)
        assert proc.returncode == 0, proc.stderr
    names = snapshots(backups)
    assert len(names) == 2  # KEEP=2: the oldest was removed
    older, newer = (backups / n for n in names)
    assert os.stat(older / "same").st_ino == os.stat(newer / "same").st_ino
    assert (newer / "d" / "changing").read_bytes() == b"v3"
    assert (older / "d" / "changing").read_bytes() == b"v2"
    assert os.readlink(backups / "latest") == names[-1]
    assert "pcopy sync" in (backups / "backup.log").read_text()


def test_failure_stops_with_pcopy_exit_code_and_keeps_latest(tmp_path):
    backups = tmp_path / "backups"
    proc = backup(tmp_path / "missing-source", backups)
    assert proc.returncode == 1
    assert "pcopy failed with exit code 1" in proc.stderr
    assert snapshots(backups) == [] and not os.path.lexists(backups / "latest")
