"""The planner is pure: plain values in, tasks and results out, no disk."""

from __future__ import annotations

import stat

from hypothesis import given
from hypothesis import strategies as st

from pcopy.model import batching
from pcopy.model.entries import COPY, DIR, FILE, HASH, LINK, SPECIAL, SYMLINK, Entry, Task
from pcopy.model.results import FAILED, SKIPPED
from pcopy.options import Options
from pcopy.transfer import plan

OPTS = Options(src="/s", dst="/d")


def work(p) -> list:
    """The tasks of a plan as (action, name, size): what the workers will do."""
    return [(t.action, t.name, t.size) for t in p.tasks]


def subdir_names(p) -> list:
    return [(d[0] if isinstance(d, tuple) else d).name for d in p.subdirs]


def f(name, size=10, mtime=1000, kind=FILE, mode=None):
    default = {FILE: stat.S_IFREG | 0o644, DIR: stat.S_IFDIR | 0o755, SYMLINK: stat.S_IFLNK | 0o777,
               SPECIAL: stat.S_IFIFO | 0o644}[kind]
    return Entry(name, kind, size, mtime, 5, mode if mode is not None else default)


def test_new_entries_become_tasks_and_subdirs():
    src = [f("a"), f("d", 4096, kind=DIR), f("l", 3, kind=SYMLINK)]
    p = plan.plan_directory("x", src, {}, OPTS)
    assert work(p) == [(COPY, "a", 10), (LINK, "l", 3)]
    assert subdir_names(p) == ["d"]
    assert p.results == []


def test_dst_entries_may_be_none():
    p = plan.plan_directory("", [f("a")], None, OPTS)
    assert work(p) == [(COPY, "a", 10)]


def test_unchanged_is_skipped_without_io():
    src = [f("a"), f("l", 3, kind=SYMLINK)]
    dst = {e.name: e for e in src}
    p = plan.plan_directory("x", src, dst, OPTS)
    assert p.tasks == []
    assert [(r.relpath, r.status, r.kind, r.reason) for r in p.results] == [
        ("x/a", SKIPPED, FILE, "unchanged"), ("x/l", SKIPPED, SYMLINK, "unchanged")]


def test_force_copies_unchanged():
    src = [f("a"), f("l", 3, kind=SYMLINK)]
    p = plan.plan_directory("", src, {e.name: e for e in src}, Options(src="/s", dst="/d", force=True))
    assert work(p) == [(COPY, "a", 10), (LINK, "l", 3)]
    assert p.results == []


def test_any_difference_means_copy():
    src = f("a", 10, 1000)
    for other in (f("a", 11, 1000), f("a", 10, 1001), f("a", 10, 999), f("a", 10, 1000, kind=SYMLINK)):
        p = plan.plan_directory("", [src], {"a": other}, OPTS)
        assert work(p) == [(COPY, "a", 10)], other


def test_atime_alone_changes_nothing():
    dst = Entry("a", FILE, 10, 1000, 999999, stat.S_IFREG | 0o644)
    p = plan.plan_directory("", [f("a")], {"a": dst}, OPTS)
    assert p.tasks == [] and [r.status for r in p.results] == [SKIPPED]


def test_mode_alone_does_not_recopy_the_content():
    dst = Entry("a", FILE, 10, 1000, 5, stat.S_IFREG | 0o600)
    p = plan.plan_directory("", [f("a")], {"a": dst}, OPTS)
    assert COPY not in [t.action for t in p.tasks]


def test_manifest_turns_unchanged_files_into_hash_tasks():
    src = [f("a"), f("l", 3, kind=SYMLINK)]
    p = plan.plan_directory("", src, {e.name: e for e in src}, Options(src="/s", dst="/d", manifest=True))
    assert work(p) == [(HASH, "a", 10)]
    assert [(r.relpath, r.status) for r in p.results] == [("l", SKIPPED)]


def test_special_files_are_skipped_with_a_reason():
    src = [f("fifo", 0, kind=SPECIAL, mode=stat.S_IFIFO | 0o644),
           f("sock", 0, kind=SPECIAL, mode=stat.S_IFSOCK | 0o755),
           f("dev", 0, kind=SPECIAL, mode=stat.S_IFCHR | 0o600)]
    p = plan.plan_directory("d", src, {}, OPTS)
    assert p.tasks == []
    assert [(r.relpath, r.status, r.kind) for r in p.results] == [
        ("d/fifo", SKIPPED, SPECIAL), ("d/sock", SKIPPED, SPECIAL), ("d/dev", SKIPPED, SPECIAL)]
    assert ["FIFO" in p.results[0].message, "socket" in p.results[1].message,
            "device" in p.results[2].message] == [True, True, True]


def test_conflicts_between_files_and_directories():
    src = [f("was-file", kind=DIR), f("was-dir"), f("was-link", kind=DIR), f("ok", kind=DIR)]
    dst = {"was-file": f("was-file"), "was-dir": f("was-dir", kind=DIR),
           "was-link": f("was-link", kind=SYMLINK), "ok": f("ok", kind=DIR)}
    p = plan.plan_directory("", src, dst, OPTS)
    assert p.tasks == []
    assert subdir_names(p) == ["ok"]
    failed = {r.relpath: r.message for r in p.results if r.status == FAILED}
    assert set(failed) == {"was-file", "was-dir", "was-link"}
    assert "cannot overwrite non-directory with directory" in failed["was-file"]
    assert "cannot overwrite non-directory with directory" in failed["was-link"]
    assert "cannot overwrite directory with non-directory" in failed["was-dir"]


# --------------------------------------------------------------------------- batches


def tasks(*sizes):
    return [Task(COPY, f"f{i}", size) for i, size in enumerate(sizes)]


def sizes_of(batches):
    return [[t.size for t in b.tasks] for b in batches]


def test_batches_by_count():
    out = list(batching.batches("r", tasks(*[1] * 7), max_files=3, max_bytes=1000))
    assert sizes_of(out) == [[1, 1, 1], [1, 1, 1], [1]]
    assert all(b.reldir == "r" for b in out)
    assert [t.name for b in out for t in b.tasks] == [f"f{i}" for i in range(7)]


def test_batches_by_bytes():
    assert sizes_of(batching.batches("", tasks(40, 40, 40, 20), 100, 100)) == [[40, 40], [40, 20]]
    assert sizes_of(batching.batches("", tasks(50, 50, 1), 100, 100)) == [[50, 50], [1]]


def test_big_file_goes_alone():
    assert sizes_of(batching.batches("", tasks(10, 500, 10), 100, 100)) == [[10], [500], [10]]
    assert sizes_of(batching.batches("", tasks(500, 600), 100, 100)) == [[500], [600]]


def test_no_tasks_no_batches():
    assert list(batching.batches("", [], 10, 10)) == []


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=60),
       st.integers(min_value=1, max_value=8), st.integers(min_value=1, max_value=400))
def test_batches_properties(sizes, max_files, max_bytes):
    items = tasks(*sizes)
    out = list(batching.batches("d", items, max_files, max_bytes))
    assert [t for b in out for t in b.tasks] == items  # a partition, in order
    for b in out:
        assert 1 <= len(b.tasks) <= max_files
        if len(b.tasks) > 1:
            assert sum(t.size for t in b.tasks) <= max_bytes
    # greedy: each batch could not have taken the next task
    for b, nxt in zip(out, out[1:], strict=False):
        first = nxt.tasks[0]
        assert len(b.tasks) == max_files or sum(t.size for t in b.tasks) + first.size > max_bytes


def test_is_unchanged():
    assert plan.is_unchanged(f("a"), f("a"))
    assert not plan.is_unchanged(f("a"), None)
    assert not plan.is_unchanged(f("a"), f("a", 10, 1001))
