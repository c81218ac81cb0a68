"""fs.probe: what a destination stores, and mtime comparison with rsync's --modify-window.

The comparison and the granularity rule are pure (property tests); the probe runs on the real
tmpfs and disk of this machine and on a real FAT image (tests/fat_helpers.py: the kernel's vfat
through a loop device, else fusefat, else skipped with the reason).
"""

from __future__ import annotations

import os
import random

import pytest
from fat_helpers import fat_mount
from hypothesis import given
from hypothesis import strategies as st

from pcopy.content import metadata
from pcopy.fs import probe, temps
from pcopy.fs.probe import FAT_WINDOW_NS, SAME_SECOND, SECOND, Capabilities, mtimes_equal, window_for

# FAT dates run from 1980 to 2107; stay well inside
FAT_RANGE = st.integers(min_value=315_532_800 * SECOND + 10 * 86400 * SECOND, max_value=4_000_000_000 * SECOND)


def fat_store(ns: int) -> int:
    """What Linux vfat keeps of an mtime (fs/fat/misc.c: tv_sec & ~1, no nanoseconds)."""
    return ((ns // SECOND) & ~1) * SECOND


# --------------------------------------------------------------------------- mtimes_equal (pure)


def test_window_zero_is_exact_to_the_nanosecond():
    assert mtimes_equal(5, 5, 0)
    assert not mtimes_equal(5, 6, 0)


def test_negative_window_compares_whole_seconds():
    assert mtimes_equal(3 * SECOND + 1, 3 * SECOND + 999_999_999, SAME_SECOND)
    assert not mtimes_equal(3 * SECOND + 999_999_999, 4 * SECOND, SAME_SECOND)


def test_sub_second_window_is_a_distance():
    assert mtimes_equal(1_000, 1_999, 1_000)
    assert mtimes_equal(1_999, 1_000, 1_000)  # symmetric
    assert not mtimes_equal(1_000, 2_001, 1_000)


def test_second_windows_ignore_fractions_like_rsync():
    """rsync --modify-window=1: 1.9 s and 0.0 s are equal (seconds 1 and 0), but 2.0 and 0.9 are not
    (seconds 2 and 0), although only 1.1 s apart."""
    assert mtimes_equal(1_900_000_000, 0, SECOND)
    assert mtimes_equal(0, 1_900_000_000, SECOND)
    assert not mtimes_equal(2 * SECOND, 900_000_000, SECOND)
    assert mtimes_equal(10 * SECOND, 12 * SECOND + 999_999_999, 2 * SECOND)


def test_times_before_1970_floor_to_their_second():
    assert mtimes_equal(-1, -SECOND, SAME_SECOND)  # both in second -1, as time_t seconds are
    assert not mtimes_equal(-1, 0, SAME_SECOND)


@given(FAT_RANGE)
def test_a_fat_copy_is_always_equal_with_the_fat_window(src):
    assert mtimes_equal(src, fat_store(src), FAT_WINDOW_NS)
    assert mtimes_equal(fat_store(src), src, FAT_WINDOW_NS)


@given(FAT_RANGE, st.integers(min_value=2 * SECOND, max_value=10**6 * SECOND))
def test_a_newer_source_is_never_equal_to_its_old_fat_copy(src, later):
    """A file changed (mtime moved forward by >= 2 s) after its copy to FAT is copied again."""
    assert not mtimes_equal(src + later, fat_store(src), FAT_WINDOW_NS)


@given(FAT_RANGE, st.integers(min_value=3 * SECOND, max_value=10**6 * SECOND))
def test_an_older_source_3s_back_is_not_equal_either(src, earlier):
    assert not mtimes_equal(src - earlier, fat_store(src), FAT_WINDOW_NS)


def test_the_fat_window_needs_seconds_semantics():
    """A plain 1 s distance would recopy 1.5 s → 0 s every time: rsync's rule (whole seconds) does not."""
    src = 1_600_000_001_500_000_000
    assert abs(src - fat_store(src)) > SECOND
    assert mtimes_equal(src, fat_store(src), FAT_WINDOW_NS)


@pytest.mark.parametrize("step", [1, 1000, 100, 10**7, SECOND, 2 * SECOND, 4 * SECOND])
@pytest.mark.parametrize("rounds", [False, True])
def test_window_for_makes_every_stored_time_equal(step, rounds):
    rng = random.Random(step)
    window = window_for(step)
    for _ in range(2000):
        src = rng.randrange(315_600_000 * SECOND, 4_000_000_000 * SECOND)
        stored = (src + step // 2) // step * step if rounds else src // step * step
        assert mtimes_equal(src, stored, window), (src, stored, window)


def test_window_for_values():
    assert window_for(1) == 0
    assert window_for(1000) == 1000
    assert window_for(SECOND) == SECOND
    assert window_for(2 * SECOND) == FAT_WINDOW_NS == SECOND
    assert window_for(0) == 0  # times not stored at all: nothing a window can fix


# --------------------------------------------------------------------------- granularity (pure)

T1, T2 = probe.PROBE_TIMES


@pytest.mark.parametrize("stored,step", [
    ((T1, T2), 1),
    ((T1 // 1000 * 1000, T2 // 1000 * 1000), 1000),  # µs, truncated
    ((1_600_000_000_123_457_000, 1_600_000_001_234_568_000), 1000),  # µs, rounded
    ((T1 // 100 * 100, T2 // 100 * 100), 100),  # NTFS: ends in ...700, still 100 ns and not 10
    ((T1 // 10**7 * 10**7, T2 // 10**7 * 10**7), 10**7),  # exFAT: 10 ms
    ((1_600_000_000 * SECOND, 1_600_000_001 * SECOND), SECOND),  # ext3, HFS+: truncated or rounded
    ((1_600_000_000 * SECOND, 1_600_000_000 * SECOND), 2 * SECOND),  # FAT: odd second truncated
    ((1_600_000_000 * SECOND, 1_600_000_002 * SECOND), 2 * SECOND),  # a FAT driver that rounds
])
def test_granularity_from_the_two_probe_times(stored, step):
    assert probe.granularity(probe.PROBE_TIMES, stored) == step


def test_probe_times_tell_every_step_apart():
    for step in probe.STEPS:
        for rounds in (False, True):
            stored = tuple((w + step // 2 if rounds else w) // step * step for w in probe.PROBE_TIMES)
            assert probe.granularity(probe.PROBE_TIMES, stored) == step, (step, rounds)


def test_granularity_of_nonsense_still_covers_the_error():
    assert probe.granularity((10 * SECOND,), (3 * SECOND,)) > 7 * SECOND


# --------------------------------------------------------------------------- the probe (real file systems)


def _dirs(tmp_path):
    shm = "/dev/shm"
    found = [("disk", str(tmp_path))]
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        found.append(("tmpfs", shm))
    return found


def test_probe_on_this_machines_tmpfs_and_disk(tmp_path):
    for label, where in _dirs(tmp_path):
        before = sorted(os.listdir(where))
        caps = probe.probe(where, "probe-test")
        assert caps.time_granularity_ns == 1, label
        assert caps.modes and caps.symlinks and caps.hardlinks, (label, caps)
        assert caps.owners == (os.geteuid() == 0), (label, caps)
        assert caps.modify_window_ns == 0
        assert probe.describe_capabilities(caps, owners=os.geteuid() == 0) is None
        assert sorted(os.listdir(where)) == before, f"{label}: the probe left something behind"


def test_probe_takes_a_directory_fd(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        caps = probe.probe(fd, "probe-test")
        os.fstat(fd)  # still open: the caller's fd is the caller's
    finally:
        os.close(fd)
    assert caps.symlinks and os.listdir(tmp_path) == []


def test_probe_acl_value_is_one_the_kernel_takes(tmp_path):
    """So acls=False on a destination means "no ACLs", not "a malformed probe"."""
    path = tmp_path / "f"
    path.write_bytes(b"")
    os.setxattr(path, metadata.ACL_ACCESS, probe.probe_acl())
    assert os.getxattr(path, metadata.ACL_ACCESS) == probe.probe_acl()
    assert probe.probe(str(tmp_path), "t").acls is True


@pytest.mark.parametrize("failing", ["symlink", "link", "setxattr", "fchmod"])
def test_probe_leaves_nothing_behind_when_it_fails(tmp_path, monkeypatch, failing):
    def boom(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(RuntimeError):
        probe.probe(str(tmp_path), "probe-test")
    assert os.listdir(tmp_path) == []


def test_probe_uses_temp_names_and_refuses_to_follow_a_planted_link(tmp_path, monkeypatch):
    """The probe file is O_EXCL | O_NOFOLLOW under a temp name: a stale-temp sweep would find it."""
    seen = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *, dir_fd=None):
        if isinstance(path, str) and temps.is_temp_name(path):
            seen.append(flags)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", spy)
    probe.probe(str(tmp_path), "probe-test")
    assert seen and all(f & os.O_EXCL and f & os.O_NOFOLLOW for f in seen)


def test_unwritable_destination_raises(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError):
        probe.probe(str(missing), "t")


def test_describe_capabilities_names_what_is_lost():
    fat = Capabilities(2 * SECOND, False, False, False, False, False, False)
    text = probe.describe_capabilities(fat, owners=True)
    assert text == ("the destination does not store times finer than 2 s, permissions, owners, symlinks, "
                    "hard links, extended attributes, ACLs")
    assert "owners" not in probe.describe_capabilities(fat, owners=False)


# --------------------------------------------------------------------------- a real FAT image


@pytest.fixture
def fat(tmp_path):
    with fat_mount(tmp_path) as mounted:
        yield mounted


def test_probe_on_fat(fat):
    caps = probe.probe(fat.path, "probe-test")
    assert caps == Capabilities(2 * SECOND, modes=False, owners=False, symlinks=False, hardlinks=False,
                                xattrs=False, acls=False), fat.driver
    assert caps.modify_window_ns == FAT_WINDOW_NS
    assert os.listdir(fat.path) == []


def test_fat_truncates_mtimes_to_even_seconds_and_a_second_sync_is_a_no_op(fat):
    rng = random.Random(7)
    wanted = {}
    for i in range(120):
        seconds = rng.randrange(400_000_000, 4_000_000_000)
        if i % 3 == 0:
            seconds |= 1  # plenty of odd seconds
        ns = seconds * SECOND + rng.choice((0, 1, 999_999_999, rng.randrange(SECOND)))
        name = f"f{i}"
        with open(os.path.join(fat.path, name), "wb") as fh:
            fh.write(b"x")
        os.utime(os.path.join(fat.path, name), ns=(ns, ns))
        wanted[name] = ns
    for phase in ("after utime", "after a remount"):
        for name, src in wanted.items():
            dst = os.stat(os.path.join(fat.path, name)).st_mtime_ns
            assert dst == fat_store(src), (phase, fat.driver, name, src, dst)
            assert mtimes_equal(src, dst, FAT_WINDOW_NS)  # a second sync: nothing to copy
            assert not mtimes_equal(src + 3 * SECOND, dst, FAT_WINDOW_NS)  # a changed source: copied
            assert not mtimes_equal(src - 3 * SECOND, dst, FAT_WINDOW_NS)
        exact = sum(mtimes_equal(src, os.stat(os.path.join(fat.path, n)).st_mtime_ns, 0) for n, src in wanted.items())
        assert exact < len(wanted) // 2, "without a window most files would be copied again"
        if phase == "after utime":
            fat.remount()


def test_fat_refuses_modes_owners_links_and_xattrs(fat):
    path = os.path.join(fat.path, "f")
    with open(path, "wb") as fh:
        fh.write(b"x")
    mode = os.stat(path).st_mode
    try:
        os.chmod(path, 0o640)
    except OSError:
        pass
    assert os.stat(path).st_mode & 0o777 != 0o640
    assert os.stat(path).st_mode == mode
    with pytest.raises(OSError):
        os.chown(path, 65534, 65534)
    with pytest.raises(OSError):
        os.symlink("f", os.path.join(fat.path, "l"))
    with pytest.raises(OSError):
        os.link(path, os.path.join(fat.path, "h"))
    policy = metadata.Policy(True, True, os.geteuid() == 0)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert metadata.read(fd, policy) == {}
        outcome = metadata.apply(fd, {"user.a": b"1", metadata.ACL_ACCESS: probe.probe_acl()}, policy=policy)
    finally:
        os.close(fd)
    assert outcome.unsupported == {"user", "acl"} and outcome.failed == ()
