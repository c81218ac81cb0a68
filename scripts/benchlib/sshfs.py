"""A private sshd on 127.0.0.1 and an sshfs mount of it through a delaying proxy.

Everything lives in one temporary directory: the host key, the user key, authorized_keys, the
sshd config and pid file, the exported directory and the mount point. ``mount()`` yields the
mount point and the exported directory behind it (the same files, seen without sshfs: the
benchmark checks and removes copies there, off the clock); on the way out it unmounts, stops
sshd and removes the directory, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
SSHD = "/usr/sbin/sshd"


def missing() -> str | None:
    """Why the sshfs row cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (/dev/fuse and a private sshd)"
    for tool in ("sshfs", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is not installed (openssh-server)"
    if not shutil.which("fusermount3") and not shutil.which("fusermount"):
        return "fusermount is not installed (fuse3)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {tmp}/host_key
PidFile {tmp}/sshd.pid
AuthorizedKeysFile {tmp}/authorized_keys
AllowUsers {user}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
LogLevel ERROR
Subsystem sftp internal-sftp
"""


def wait_listening(port: int, sshd: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sshd.poll() is not None:
            raise RuntimeError(f"sshd exited ({sshd.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("sshd did not start listening")


def unmount(mnt: str) -> None:
    tool = shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount"
    for _ in range(50):
        if not os.path.ismount(mnt):
            return
        if subprocess.run([tool, "-u", mnt], stderr=subprocess.DEVNULL).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run([tool, "-u", "-z", mnt], stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def mount(delay_ms: float, base: str = "/var/tmp") -> Iterator[tuple[str, str]]:
    """sshfs of a private sshd's directory, every packet delayed ``delay_ms`` each way."""
    tmp = tempfile.mkdtemp(prefix="pcopy-bench-sshfs-", dir=base)
    export, mnt = os.path.join(tmp, "export"), os.path.join(tmp, "mnt")
    os.makedirs(export)
    os.makedirs(mnt)
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
    sshd = None
    mounted = False
    try:
        for key in ("host_key", "user_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pcopy-bench", "-f",
                            os.path.join(tmp, key)], check=True)
        shutil.copy(os.path.join(tmp, "user_key.pub"), os.path.join(tmp, "authorized_keys"))
        port = free_port()
        user = os.environ.get("USER") or "root"
        with open(os.path.join(tmp, "sshd_config"), "w") as fh:
            fh.write(SSHD_CONFIG.format(port=port, tmp=tmp, user=user))
        sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", os.path.join(tmp, "sshd_config")],
                                stdin=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "sshd.log"), "wb"))
        wait_listening(port, sshd)
        proxy = shlex.join([sys.executable, os.path.join(HERE, "delayproxy.py"), "127.0.0.1", str(port),
                            str(delay_ms)])
        subprocess.run(["sshfs", f"{user}@127.0.0.1:{export}", mnt, "-F", "/dev/null",
                        "-o", f"ProxyCommand={proxy}", "-o", f"IdentityFile={tmp}/user_key",
                        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"],
                       check=True, stdin=subprocess.DEVNULL)
        mounted = True
        yield mnt, export
    finally:
        if mounted:
            unmount(mnt)
        if sshd is not None:
            sshd.terminate()
            try:
                sshd.wait(5)
            except subprocess.TimeoutExpired:
                sshd.kill()
                sshd.wait()
        if not os.path.ismount(mnt):
            shutil.rmtree(tmp, ignore_errors=True)
