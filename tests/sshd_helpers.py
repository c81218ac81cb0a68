"""A private sshd on 127.0.0.1 for the remote tests: its own host key, user key, config and port in a
temporary directory; started as ``sshd -D`` and stopped by its pid. Clients reach it through an
ssh config file of their own (``ssh -F``), so the machine's ~/.ssh is never read or written."""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import NamedTuple, Optional

SSHD = "/usr/sbin/sshd"
HOST = "pcopytest"  # the Host alias in the private ssh config

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
MaxStartups 100:30:200
MaxSessions 100
"""

SSH_CONFIG = """\
Host {host}
    HostName 127.0.0.1
    Port {port}
    User {user}
    IdentityFile {tmp}/user_key
    IdentitiesOnly yes
    UserKnownHostsFile {tmp}/known_hosts
    StrictHostKeyChecking no
    BatchMode yes
    LogLevel ERROR
"""


def missing() -> Optional[str]:
    for tool in ("ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} is not installed (openssh-client)"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is not installed (openssh-server)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sshd(NamedTuple):
    tmp: str
    port: int
    proc: subprocess.Popen
    user: str

    @property
    def config(self) -> str:
        return os.path.join(self.tmp, "ssh_config")

    @property
    def rsh(self) -> str:
        return f"ssh -F {shlex.quote(self.config)}"

    @property
    def remote_pcopy(self) -> str:
        """This interpreter (its venv has pcopy installed) as the remote pcopy."""
        return f"{shlex.quote(sys.executable)} -m pcopy"

    def args(self) -> list:
        return ["-e", self.rsh, "--remote-pcopy", self.remote_pcopy]


def start(tmp: str) -> Sshd:
    os.makedirs(tmp, exist_ok=True)
    user = getpass.getuser()
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(tmp, key)], check=True,
                       stdin=subprocess.DEVNULL)
    shutil.copy(os.path.join(tmp, "user_key.pub"), os.path.join(tmp, "authorized_keys"))
    port = free_port()
    with open(os.path.join(tmp, "sshd_config"), "w") as fh:
        fh.write(SSHD_CONFIG.format(port=port, tmp=tmp, user=user))
    with open(os.path.join(tmp, "ssh_config"), "w") as fh:
        fh.write(SSH_CONFIG.format(host=HOST, port=port, tmp=tmp, user=user))
    os.makedirs("/run/sshd", exist_ok=True)  # Debian's sshd wants its privilege-separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", os.path.join(tmp, "sshd_config")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "sshd.log"), "wb"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited ({proc.returncode}): {open(os.path.join(tmp, 'sshd.log')).read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return Sshd(tmp, port, proc, user)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("sshd did not start listening")


def stop(sshd: Sshd) -> None:
    if sshd.proc.poll() is None:
        sshd.proc.send_signal(signal.SIGTERM)
        try:
            sshd.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            sshd.proc.kill()
            sshd.proc.wait()


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def serve_pids(sshd: "Sshd") -> list:
    """Pids of ``pcopy serve`` processes started through this sshd (the remote end is this machine;
    other runs' serve processes are not counted)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if b"serve" not in argv or not any(a.endswith(b"pcopy") for a in argv):
            continue
        pid = int(name)
        while pid > 1 and pid != sshd.proc.pid:
            pid = _ppid(pid)
        if pid == sshd.proc.pid:
            pids.append(int(name))
    return pids
