"""The ``remote`` row: pcopy over ssh (host:path) against ``rsync -a`` and ``scp -r`` through the same
private sshd on 127.0.0.1 (its own keys and config, as ``sshfs`` starts it), then again with every
packet delayed 1 ms each way by ``delayproxy.py`` as ssh's ProxyCommand (no tc netem here).

Trees: 20,000 files of 0.5-8 KiB, 4 x 256 MiB, and a no-op sync of the small tree. Every copy is
checked off the clock (rsync -anic against SRC; scp keeps no symlinks or owners, so its copies are
not checked). scp is timed on the big files only: it waits a round trip per file, so 20,000 small
files took it minutes here (3 minutes at a load of 6, more with the delay). With ``--baseline PYTHON``
that pcopy runs too, on both ends (``--remote-pcopy``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import Iterator

from . import sshfs, trees
from .common import BASELINE, PCOPY, QUIET, ROOT, Row, checker, clear, count_tree, time_table

HOST = "pcopy-bench"
SSH_CONFIG = """\
Host {host}
    HostName 127.0.0.1
    Port {port}
    User {user}
    IdentityFile {tmp}/user_key
    IdentitiesOnly yes
    UserKnownHostsFile /dev/null
    StrictHostKeyChecking no
    BatchMode yes
    LogLevel ERROR
{proxy}"""


@contextlib.contextmanager
def server(delay_ms: float, base: str = "/var/tmp") -> Iterator[str]:
    """A private sshd; yields the ssh config file that reaches it as ``HOST`` (delayed when asked)."""
    tmp = tempfile.mkdtemp(prefix="pcopy-bench-ssh-", dir=base)
    os.makedirs("/run/sshd", exist_ok=True)
    proc = None
    try:
        for key in ("host_key", "user_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(tmp, key)], check=True)
        shutil.copy(os.path.join(tmp, "user_key.pub"), os.path.join(tmp, "authorized_keys"))
        port = sshfs.free_port()
        user = os.environ.get("USER") or "root"
        with open(os.path.join(tmp, "sshd_config"), "w") as fh:
            fh.write(sshfs.SSHD_CONFIG.format(port=port, tmp=tmp, user=user) + "MaxStartups 100\nMaxSessions 100\n")
        proc = subprocess.Popen([sshfs.SSHD, "-D", "-e", "-f", os.path.join(tmp, "sshd_config")],
                                stdin=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "sshd.log"), "wb"))
        sshfs.wait_listening(port, proc)
        proxy = ""
        if delay_ms:
            relay = shlex.join([sys.executable, os.path.join(sshfs.HERE, "delayproxy.py"), "127.0.0.1", str(port),
                                str(delay_ms)])
            proxy = f"    ProxyCommand {relay}\n"
        config = os.path.join(tmp, "ssh_config")
        with open(config, "w") as fh:
            fh.write(SSH_CONFIG.format(host=HOST, port=port, user=user, tmp=tmp, proxy=proxy))
        yield config
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _tools(config: str, noop: bool, scp: bool) -> dict:
    rsh = f"ssh -F {shlex.quote(config)}"
    remote = shlex.join(PCOPY)
    verb = ["sync", "--delete"] if noop else ["copy"]
    table = {"rsync -a": ["rsync", "-a", *(["--delete"] if noop else []), "-e", rsh, "{src}/", f"{HOST}:{{dst}}/"]}
    if scp:
        table["scp -r"] = ["scp", "-O", "-q", "-r", "-p", "-F", config, "{src}", f"{HOST}:{{dst}}"]
    table["pcopy (ssh)"] = [*PCOPY, verb[0], *verb[1:], "{src}", f"{HOST}:{{dst}}", *QUIET, "-e", rsh,
                            "--remote-pcopy", remote]
    if BASELINE:  # --baseline: the other pcopy on both ends (its own serve), in the same rounds
        table["baseline pcopy (ssh)"] = [*BASELINE, verb[0], *verb[1:], "{src}", f"{HOST}:{{dst}}", *QUIET, "-e", rsh,
                                         "--remote-pcopy", shlex.join(BASELINE)]
    return table


def _prepare(src: str, noop: bool):
    def prepare(name: str, target: str) -> None:
        if noop:  # an up-to-date copy, made off the clock
            subprocess.run(["rsync", "-a", "--delete", src + "/", target + "/"], check=True)
        else:
            clear(target)
    return prepare


def _check(src: str):
    check = checker(src)

    def run(name: str, target: str) -> None:
        if not name.startswith("scp"):
            check(name, target)
    return run


def remote(rounds: int, keep: bool, files: int = 20_000, large_mib: int = 256) -> list:
    """One Row per tree and delay (see the module docstring)."""
    why = next((f"{tool} is not installed" for tool in ("ssh", "ssh-keygen", "scp", "rsync") if not shutil.which(tool)),
               None if os.access(sshfs.SSHD, os.X_OK) else f"{sshfs.SSHD} is not installed (openssh-server)")
    if why:
        return [Row("remote", "remote over ssh", skipped=why)]
    small, large = os.path.join(ROOT, "remote-small"), os.path.join(ROOT, "remote-large")
    trees.build_small(small, files=files, dirs=files // 100)
    trees.build_large(large, count=4, size_mib=large_mib)
    rows = []
    dst = os.path.join(ROOT, "remote-dst")
    for delay in (0.0, 1.0):
        with server(delay) as config:
            for key, src, noop in (("small", small, False), ("large", large, False), ("noop", small, True)):
                title = (f"remote over ssh{f' ({delay:g} ms each way)' if delay else ''}: "
                         f"{'no-op sync of ' if noop else ''}{os.path.basename(src)}")
                row = Row(f"remote-{key}{'-delay' if delay else ''}", title, headline="pcopy (ssh)",
                          reference="rsync -a", files=count_tree(src)[0])
                row.times = time_table(_tools(config, noop, key == "large"), rounds, src=src, dst=dst,
                                       prepare=_prepare(src, noop), check=_check(src))
                rows.append(row)
            clear(dst)
    if not keep:
        clear(small)
        clear(large)
    return rows


def remote_verify(rounds: int, keep: bool, files: int = 20_000) -> Row:
    """``pcopy verify SRC host:DST --no-cache`` against ``rsync -anc`` (both read every file on both
    machines) over the same loopback sshd; DST is an up-to-date copy made off the clock."""
    why = next((f"{tool} is not installed" for tool in ("ssh", "ssh-keygen", "rsync") if not shutil.which(tool)),
               None if os.access(sshfs.SSHD, os.X_OK) else f"{sshfs.SSHD} is not installed (openssh-server)")
    if why:
        return Row("remote-verify", "remote verify over ssh", skipped=why)
    small, dst = os.path.join(ROOT, "remote-small"), os.path.join(ROOT, "remote-verify-dst")
    trees.build_small(small, files=files, dirs=files // 100)
    subprocess.run(["rsync", "-a", "--delete", small + "/", dst + "/"], check=True)
    with server(0.0) as config:
        rsh = f"ssh -F {shlex.quote(config)}"
        table = {"rsync -anc": ["rsync", "-anc", "-e", rsh, "{src}/", f"{HOST}:{{dst}}/"],
                 "pcopy verify (ssh)": [*PCOPY, "verify", "--no-cache", "{src}", f"{HOST}:{{dst}}", *QUIET, "-e", rsh,
                                        "--remote-pcopy", shlex.join(PCOPY)]}
        row = Row("remote-verify", f"remote verify over ssh: {os.path.basename(small)}, no cache",
                  headline="pcopy verify (ssh)", reference="rsync -anc", files=count_tree(small)[0])
        row.times = time_table(table, rounds, src=small, dst=dst, prepare=lambda name, target: None)
    if not keep:
        clear(small)
        clear(dst)
    return row
