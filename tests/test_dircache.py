"""fs.beneath.DirCache: directory fds reused across batches, bounded, never through a planted symlink,
and never left open once a run returns."""

from __future__ import annotations

import errno
import os

import pytest

from pcopy import api
from pcopy.fs.beneath import DirCache


def open_fds_below(path) -> list:
    real = os.path.realpath(path)
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target == real or target.startswith(real + os.sep):
            found.append(target)
    return found


def same_dir(fd: int, path) -> bool:
    a, b = os.fstat(fd), os.stat(path)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def test_each_directory_is_the_one_named(tmp_path):
    for rel in ("a/b/c", "a/x", "d"):
        (tmp_path / rel).mkdir(parents=True)
    cache = DirCache(str(tmp_path))
    for rel in ("a/b/c", "a", "", "a/x", "d", "a/b"):
        with cache.dir(rel.replace("/", os.sep)) as fd:
            assert same_dir(fd, tmp_path / rel), rel
    cache.close()
    assert open_fds_below(tmp_path) == []


def test_a_symlink_below_the_root_is_never_followed(tmp_path):
    (tmp_path / "real" / "in").mkdir(parents=True)
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "root" / "link")
    cache = DirCache(str(tmp_path / "root"))
    with pytest.raises(OSError) as caught:
        cache.acquire(os.path.join("link", "in"))
    assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR)
    following = DirCache(str(tmp_path / "root"), follow_symlinks=True)
    with following.dir(os.path.join("link", "in")) as fd:
        assert same_dir(fd, tmp_path / "real" / "in")
    cache.close()
    following.close()


def test_the_root_itself_may_be_a_symlink(tmp_path):
    (tmp_path / "real" / "sub").mkdir(parents=True)
    os.symlink(tmp_path / "real", tmp_path / "named")
    cache = DirCache(str(tmp_path / "named"))
    with cache.dir("sub") as fd:
        assert same_dir(fd, tmp_path / "real" / "sub")
    cache.close()


def test_open_fds_stay_bounded_and_pinned_ones_survive(tmp_path):
    names = [f"d{i}" for i in range(100)]
    for name in names:
        (tmp_path / name).mkdir()
    cache = DirCache(str(tmp_path), limit=8)
    with cache.dir("d0") as pinned:
        for name in names[1:]:
            with cache.dir(name) as fd:
                assert same_dir(fd, tmp_path / name)
            assert len(open_fds_below(tmp_path)) <= 8 + 1  # the limit, and at most one over it
        assert same_dir(pinned, tmp_path / "d0")  # evictions never closed it
    cache.close()
    assert open_fds_below(tmp_path) == []


def test_forget_drops_a_replaced_directory_and_everything_below(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    cache = DirCache(str(tmp_path))
    with cache.dir(os.path.join("a", "b")):
        pass
    os.rename(tmp_path / "a", tmp_path / "old")
    (tmp_path / "a" / "b").mkdir(parents=True)
    cache.forget("a")
    with cache.dir(os.path.join("a", "b")) as fd:
        assert same_dir(fd, tmp_path / "a" / "b")  # the new one, not the moved one
    assert not any(p.startswith(str(tmp_path / "old")) for p in open_fds_below(tmp_path))
    cache.close()


def test_a_directory_forgotten_while_in_use_is_closed_when_released(tmp_path):
    (tmp_path / "a").mkdir()
    cache = DirCache(str(tmp_path))
    with cache.dir("a") as fd:
        cache.forget("a")
        assert same_dir(fd, tmp_path / "a")  # still usable by its holder
    with pytest.raises(OSError):
        os.fstat(fd)
    cache.close()
    assert open_fds_below(tmp_path) == []


def test_depth_past_path_max(tmp_path):
    parts = ["d" * 200] * 30  # about 6 KB of path: more than PATH_MAX
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    for part in parts:
        os.mkdir(part, dir_fd=fd)
        next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = next_fd
    os.mkdir("leaf", dir_fd=fd)
    os.close(fd)
    cache = DirCache(str(tmp_path), limit=4)
    with cache.dir(os.sep.join(parts + ["leaf"])) as leaf:
        assert os.listdir(leaf) == []
    cache.close()


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_no_directory_of_the_run_stays_open_once_it_returns(tmp_path, backend):
    """DST can be unmounted (and SRC too) right after copytree/sync return, whatever the backend."""
    src = tmp_path / "src"
    for i in range(30):
        (src / f"d{i}" / "e").mkdir(parents=True)
        (src / f"d{i}" / "e" / "f").write_bytes(b"x" * i)
    api.copytree(src, tmp_path / "dst", backend=backend, jobs=2)
    assert open_fds_below(tmp_path) == []
    (src / "d3" / "e" / "f").write_bytes(b"changed")
    api.sync(src, tmp_path / "dst", backend=backend, jobs=2, delete=True)
    assert open_fds_below(tmp_path) == []
    assert (tmp_path / "dst" / "d3" / "e" / "f").read_bytes() == b"changed"
