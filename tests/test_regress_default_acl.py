"""Regression (found while building content.metadata): a DST directory with a default ACL.

A file created there gets ``mode & default ACL``, not ``mode & ~umask``; the worker trusts the
latter ("born right": no fchmod), so ``pcopy copy`` of a 0644 file into a directory whose default
ACL says ``o::---`` used to leave it 0640, where ``cp -a`` and ``rsync -a`` give 0644: the worker
trusted mode & ~umask. It now always sets the mode where DST's directory has a default ACL.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from pcopy.content.metadata import ACL_DEFAULT


def test_copy_into_a_directory_with_a_default_acl_keeps_the_mode(tmp_path):
    if shutil.which("setfacl") is None:
        pytest.skip("setfacl (acl) is not installed")
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_bytes(b"hi\n")
    os.chmod(src / "f", 0o644)
    try:
        subprocess.run(["setfacl", "-d", "-m", "u::rwx,g::rx,o::-", str(dst)], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        pytest.skip("the disk here does not store ACLs")
    assert os.getxattr(dst, ACL_DEFAULT)
    import pcopy

    report = pcopy.copytree(str(src), str(dst), jobs=1)
    assert report.failed == 0
    assert stat.S_IMODE(os.stat(dst / "f").st_mode) == 0o644
