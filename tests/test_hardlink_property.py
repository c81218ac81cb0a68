"""Property: with hard links (-H) and random per-file failures, no DST name ever holds another inode's content.

Random trees of hard-link groups spread over a few directories, a DST that
already holds old versions of some names, and failures injected by name
(the source open of one name fails while other names of the same inode can
still be read; or writing into a whole DST directory fails). Whatever fails,
every DST name must hold either its own source content (the content of the
source inode behind that very name) or what DST held there before; and DST
names linked together must come from one source inode.
"""

from __future__ import annotations

import errno
import os

import pytest
from conftest import make_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcopy
from pcopy.fs import temps

DIRS = ("", "a", "b", "a/c")


@st.composite
def scenarios(draw):
    groups = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=6))
    names = []
    for g, size in enumerate(groups):
        for k in range(size):
            directory = draw(st.sampled_from(DIRS))
            names.append((os.path.join(directory, f"g{g}n{k}") if directory else f"g{g}n{k}", g))
    old = draw(st.sets(st.sampled_from([n for n, _ in names])))
    failing_opens = draw(st.sets(st.sampled_from([os.path.basename(n) for n, _ in names])))
    failing_dirs = draw(st.sets(st.sampled_from(DIRS[1:]), max_size=1))
    return names, old, failing_opens, failing_dirs


@pytest.mark.faults
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_no_name_gets_another_inodes_content(tmp_path_factory, monkeypatch, scenario):
    names, old, failing_opens, failing_dirs = scenario
    root = tmp_path_factory.mktemp("hl")
    src, dst = root / "src", root / "dst"
    content = {g: f"group {g} content\n".encode() * (g + 1) for _, g in names}
    first = {}
    make_tree(src, {d: b"" for d in ()})
    for relpath, g in names:
        path = src / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if g in first:
            os.link(first[g], path)
        else:
            path.write_bytes(content[g])
            first[g] = path
    before = {}
    for relpath in old:
        path = dst / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        before[relpath] = f"old bytes of {relpath}\n".encode()
        path.write_bytes(before[relpath])
    group_of = dict(names)

    real_open = os.open

    def failing_open(path, flags, mode=0o777, *, dir_fd=None):
        name = os.fsdecode(path) if isinstance(path, (str, bytes)) else ""
        if dir_fd is not None and not flags & os.O_DIRECTORY:
            if flags & os.O_ACCMODE == os.O_RDONLY and name in failing_opens:
                raise PermissionError(errno.EACCES, "Permission denied")
            if name.startswith(temps.TMP_PREFIX) and flags & os.O_CREAT:
                where = os.path.relpath(os.readlink(f"/proc/self/fd/{dir_fd}"), dst)
                if where in failing_dirs:
                    raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", failing_open)
    try:
        report = pcopy.sync(src, dst, hard_links=True, backend="thread", jobs=2)
    finally:
        monkeypatch.undo()

    failed = {r.relpath for r in report.failures}
    inode_of: dict = {}
    for relpath, g in names:
        path = dst / relpath
        if not os.path.lexists(path):
            assert relpath in failed or any(relpath.startswith(d + "/") for d in failing_dirs), relpath
            continue
        data = path.read_bytes()
        assert data in (content[g], before.get(relpath)), f"{relpath} holds another file's content: {data!r}"
        if data == content[g] and data != before.get(relpath):
            pass  # written in this run from its own inode
        elif relpath not in failed:
            assert data == content[g], f"{relpath} kept old content without a failure being reported"
        inode_of.setdefault(os.lstat(path).st_ino, set()).add(relpath)
    for linked in inode_of.values():
        assert len({group_of[r] for r in linked}) == 1, f"DST links names of different source inodes: {linked}"
    assert all(not n.startswith(temps.TMP_PREFIX) for _, _, files in os.walk(dst) for n in files)
