"""The LD_PRELOAD fault shim (tests/faultshim/shim.c) does what its rules say.

Targets are tiny ``python -c`` programs (no pcopy): each rule family must reach the libc
symbol CPython 3.11 really calls (openat64 for os.open(dir_fd=), fstatat64 for
os.stat(dir_fd=), renameat for os.rename/replace with dir fds, futimens for os.utime(fd)).
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap

import pytest
from faultshim_helpers import build_shim, read_log, rule, shim_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.faults

PRELUDE = """
import json, os, sys
d = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
def attempt(fn):
    try:
        fn()
        return 0
    except OSError as e:
        return e.errno
"""


def run_target(tmp_path, shim, rules, body, log=None) -> object:
    """Run PRELUDE + body under the shim in tmp_path; the body prints one JSON value."""
    env = shim_env(rules, shim, log=log)
    proc = subprocess.run([sys.executable, "-I", "-c", PRELUDE + textwrap.dedent(body)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_openat_match_gets_the_injected_errno(tmp_path, build_shim):  # noqa: F811
    (tmp_path / "secret.txt").write_text("s")
    (tmp_path / "other.txt").write_text("o")
    got = run_target(tmp_path, build_shim, rule("openat", match="secret.txt", errno="EACCES"), """
        print(json.dumps([attempt(lambda: os.open("secret.txt", os.O_RDONLY, dir_fd=d)),
                          attempt(lambda: os.open("other.txt", os.O_RDONLY, dir_fd=d)),
                          attempt(lambda: os.open("secret.txt", os.O_RDONLY))]))  # open64: another rule
    """)
    assert got == [errno.EACCES, 0, 0]


def test_match_resolves_a_relative_name_against_its_dir_fd(tmp_path, build_shim):  # noqa: F811
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_text("x")
    (tmp_path / "f").write_text("x")
    got = run_target(tmp_path, build_shim, rule("openat", match="sub/f", errno="ENOENT"), """
        s = os.open("sub", os.O_RDONLY | os.O_DIRECTORY)
        print(json.dumps([attempt(lambda: os.open("f", os.O_RDONLY, dir_fd=s)),
                          attempt(lambda: os.open("f", os.O_RDONLY, dir_fd=d))]))
    """)
    assert got == [errno.ENOENT, 0]


def test_nth_fails_exactly_that_call(tmp_path, build_shim):  # noqa: F811
    got = run_target(tmp_path, build_shim, rule("write", match="out.bin", nth=3, errno="EIO"), """
        f = os.open("out.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        print(json.dumps([attempt(lambda: os.write(f, b"x")) for _ in range(6)]))
    """)
    assert got == [0, 0, errno.EIO, 0, 0, 0]


def test_match_on_fd_calls_uses_the_descriptors_path(tmp_path, build_shim):  # noqa: F811
    got = run_target(tmp_path, build_shim, ";".join([rule("write", match="target.bin", errno="ENOSPC"),
                                                    rule("fchmod", match="target.bin", errno="EPERM")]), """
        t = os.open("target.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        o = os.open("other.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        print(json.dumps([attempt(lambda: os.write(t, b"x")), attempt(lambda: os.write(o, b"x")),
                          attempt(lambda: os.chmod(t, 0o600)), attempt(lambda: os.chmod(o, 0o600))]))
    """)
    assert got == [errno.ENOSPC, 0, errno.EPERM, 0]


PROB_BODY = """
    f = os.open("p.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    print(json.dumps([i for i in range(400) if attempt(lambda: os.write(f, b"x"))]))
"""


def test_prob_is_deterministic_for_a_seed(tmp_path, build_shim):  # noqa: F811
    runs = [run_target(tmp_path, build_shim, rule("write", match="p.bin", prob=0.25, seed=seed), PROB_BODY)
            for seed in (7, 7, 8)]
    assert runs[0] == runs[1], "same seed, different failures"
    assert runs[0] != runs[2], "the seed makes no difference"
    assert 50 < len(runs[0]) < 150, f"{len(runs[0])} of 400 failed with prob=0.25"
    assert run_target(tmp_path, build_shim, rule("write", match="p.bin", prob=0, seed=1), PROB_BODY) == []
    assert len(run_target(tmp_path, build_shim, rule("write", match="p.bin", prob=1), PROB_BODY)) == 400


FORK_BODY = """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, json.dumps(attempt(lambda: os.stat("x", dir_fd=d))).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    print(json.dumps([attempt(lambda: os.stat("x", dir_fd=d)), json.loads(os.read(r, 100))]))
"""


@pytest.mark.parametrize("who, expected", [("parent", [errno.EIO, 0]), ("child", [0, errno.EIO]),
                                           (None, [errno.EIO, errno.EIO])])
def test_pid_targets_the_parent_or_the_children(tmp_path, build_shim, who, expected):  # noqa: F811
    (tmp_path / "x").write_text("x")
    assert run_target(tmp_path, build_shim, rule("fstatat", match="x", pid=who), FORK_BODY) == expected


def test_counters_restart_in_a_forked_child_and_perpid_varies_the_pattern(tmp_path, build_shim):  # noqa: F811
    body = """
        def pattern():
            f = os.open("p.bin", os.O_WRONLY | os.O_CREAT, 0o644)
            return [i for i in range(64) if attempt(lambda: os.write(f, b"x"))]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, json.dumps(pattern()).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print(json.dumps([pattern(), json.loads(os.read(r, 10000))]))
    """
    same = run_target(tmp_path, build_shim, rule("write", match="p.bin", prob=0.5, seed=3), body)
    assert same[0] == same[1]
    differ = run_target(tmp_path, build_shim, rule("write", match="p.bin", prob=0.5, seed=3, perpid=1), body)
    assert differ[0] != differ[1]


def test_nth_counts_across_threads_exactly_once(tmp_path, build_shim):  # noqa: F811
    got = run_target(tmp_path, build_shim, rule("pwrite", match="t.bin", nth=500), """
        import threading
        f = os.open("t.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        fails = []
        def work():
            fails.extend(1 for _ in range(250) if attempt(lambda: os.pwrite(f, b"x", 0)))
        threads = [threading.Thread(target=work) for _ in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(json.dumps(len(fails)))
    """)
    assert got == 1


# Each call family, triggered the way CPython 3.11 reaches it; the rule matches "victim".
CALLS = {
    "openat": 'os.open("victim", os.O_RDONLY, dir_fd=d)',
    "open": 'os.open("victim", os.O_RDONLY)',
    "fstatat": 'os.stat("victim", dir_fd=d, follow_symlinks=False)',
    "stat": 'os.stat("victim")',
    "lstat": 'os.lstat("victim")',
    "fstat": 'os.stat(os.open("victim", os.O_RDONLY))',
    "mkdirat": 'os.mkdir("victim-dir", dir_fd=d)',
    "renameat": 'os.replace("victim", "victim2", src_dir_fd=d, dst_dir_fd=d)',
    "rename": 'os.rename("victim", "victim2")',
    "unlinkat": 'os.unlink("victim", dir_fd=d)',
    "linkat": 'os.link("victim", "victim-link", src_dir_fd=d, dst_dir_fd=d)',
    "symlinkat": 'os.symlink("x", "victim-sym", dir_fd=d)',
    "read": 'os.read(os.open("victim", os.O_RDONLY), 10)',
    "readv": 'os.readv(os.open("victim", os.O_RDONLY), [bytearray(4)])',
    "pread": 'os.pread(os.open("victim", os.O_RDONLY), 4, 0)',
    "write": 'os.write(os.open("victim", os.O_WRONLY), b"x")',
    "pwrite": 'os.pwrite(os.open("victim", os.O_WRONLY), b"x", 0)',
    "fchmod": 'os.chmod(os.open("victim", os.O_RDONLY), 0o600)',
    "fchmodat": 'os.chmod("victim", 0o600, dir_fd=d)',
    "fchown": 'os.chown(os.open("victim", os.O_RDONLY), -1, -1)',
    "futimens": 'os.utime(os.open("victim", os.O_RDONLY), ns=(1, 1))',
    "utimensat": 'os.utime("victim", ns=(1, 1), dir_fd=d)',
    "fsync": 'os.fsync(os.open("victim", os.O_RDONLY))',
    "fdatasync": 'os.fdatasync(os.open("victim", os.O_RDONLY))',
    "ftruncate": 'os.truncate(os.open("victim", os.O_WRONLY), 0)',
    "close": 'os.close(os.open("victim", os.O_RDONLY))',
    "fsetxattr": 'os.setxattr(os.open("victim", os.O_RDONLY), "user.x", b"1")',
    "copy_file_range": 'os.copy_file_range(os.open("src", os.O_RDONLY), os.open("victim", os.O_WRONLY), 1)',
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_each_call_family_is_wrapped(tmp_path, build_shim, call):  # noqa: F811
    (tmp_path / "victim").write_text("victim")
    (tmp_path / "src").write_text("src")
    log = tmp_path / "faults.log"
    got = run_target(tmp_path, build_shim, rule(call, match="victim", errno="EROFS"),
                     f"print(json.dumps(attempt(lambda: {CALLS[call]})))", log=log)
    assert got == errno.EROFS
    assert [(c, e) for _, c, e, _ in read_log(log)] == [(call, errno.EROFS)], read_log(log)
    assert "/victim" in read_log(log)[0][3], read_log(log)  # logged with its full path


def test_close_still_closes_the_descriptor(tmp_path, build_shim):  # noqa: F811
    (tmp_path / "victim").write_text("v")
    got = run_target(tmp_path, build_shim, rule("close", match="victim"), """
        f = os.open("victim", os.O_RDONLY)
        print(json.dumps([attempt(lambda: os.close(f)), attempt(lambda: os.fstat(f))]))
    """)
    assert got == [errno.EIO, errno.EBADF]


@pytest.mark.parametrize("bad", ["nosuchcall", "openat:nth=0", "openat:prob=2", "openat:errno=EWHAT", "read:delay=x",
                                 "openat:colour=red", "openat:pid=sibling", "openat:match"])
def test_a_malformed_rule_stops_the_program(tmp_path, build_shim, bad):  # noqa: F811
    proc = subprocess.run([sys.executable, "-I", "-c", "print('ran')"], env=shim_env(bad, build_shim),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 97 and "ran" not in proc.stdout
    assert "faultshim:" in proc.stderr and "PCOPY_FAULTS" in proc.stderr


def test_no_rules_changes_nothing(tmp_path, build_shim):  # noqa: F811
    assert run_target(tmp_path, build_shim, "", 'print(json.dumps(os.listdir(d)))') == []


def test_a_delay_rule_slows_the_call_down_and_lets_it_succeed(tmp_path, build_shim):  # noqa: F811
    (tmp_path / "slow").write_text("x")
    got = run_target(tmp_path, build_shim, [rule("fstatat", match="slow", delay=20000),
                                            rule("openat", match="slow", delay=20000, errno="EIO")], """
        import time
        t0 = time.monotonic()
        codes = [attempt(lambda: os.stat("slow", dir_fd=d)) for _ in range(5)]
        took = time.monotonic() - t0
        codes.append(attempt(lambda: os.open("slow", os.O_RDONLY, dir_fd=d)))
        print(json.dumps([codes, took]))
    """)
    assert got[0] == [0, 0, 0, 0, 0, errno.EIO]
    assert got[1] >= 0.1
