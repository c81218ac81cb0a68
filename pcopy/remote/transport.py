"""One ssh session running ``pcopy serve`` on the other machine.

The system's OpenSSH client is run as rsync runs it (``-e/--rsh`` replaces ``ssh``), so
``~/.ssh/config``, keys, agents, ``ProxyJump`` and ControlMaster work as the user has them.
The remote command is ``--remote-pcopy CMD serve`` or, by default, ``pcopy serve`` when
``pcopy`` is on the remote PATH, else ``python3 -m pcopy serve``. The first exchange is the
handshake; nothing is read or written on either side before both agree on ``PROTO``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
from typing import NamedTuple, Optional

from ..errors import PcopyError
from .protocol import PROTO, ProtocolError, encode, read_frame

REMOTE = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^/\]]+\]|[^/:\[\]]+):(?P<path>.*)$", re.S)
DEFAULT_SERVE = ("if command -v pcopy >/dev/null 2>&1; then exec pcopy serve; "
                 "else exec python3 -m pcopy serve; fi")


class Spec(NamedTuple):
    """``[user@]host:path`` split up."""

    user: Optional[str]
    host: str
    path: str

    @property
    def login(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        return f"{self.login}:{self.path}"


def parse(arg: str) -> Optional[Spec]:
    """The remote spec of ``arg``, or None for a local path (``/a:b``, ``./host:x`` are local)."""
    if arg.startswith(("/", "./", "../")):
        return None
    match = REMOTE.match(arg)
    if match is None:
        return None
    host = match.group("host").strip("[]")
    return Spec(match.group("user"), host, match.group("path") or ".")


def command(spec: Spec, rsh: Optional[str], remote_pcopy: Optional[str]) -> list:
    """The argv that starts ``pcopy serve`` on ``spec``'s host."""
    argv = shlex.split(rsh) if rsh else ["ssh"]
    if not argv:
        raise PcopyError("--rsh: empty command")
    remote = f"{remote_pcopy} serve" if remote_pcopy else f"sh -c {shlex.quote(DEFAULT_SERVE)}"
    return argv + [spec.login, remote]


class ConnectionLost(PcopyError):
    """A session that had shaken hands ended (ssh killed, network gone): watch reconnects on it."""


class Connection:
    """A request/answer channel over one ssh process; ``lost`` makes the one-line error naming the host."""

    def __init__(self, spec: Spec, rsh: Optional[str], remote_pcopy: Optional[str]) -> None:
        self.spec = spec
        self.argv = command(spec, rsh, remote_pcopy)
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True, bufsize=0)
        except OSError as exc:
            raise PcopyError(f"{self.argv[0]}: cannot run the ssh client: {exc.strerror}") from None
        self.rfile = self.proc.stdout
        self.wfile = self.proc.stdin
        self.stderr_lines: list = []
        self._drain = threading.Thread(target=self._read_stderr, name="pcopy-ssh-stderr", daemon=True)
        self._drain.start()
        self.closed = False
        self.codecs: list = ["zlib"]  # the remote's -z codecs (from the handshake)
        self.ready = False  # the handshake is done

    def _read_stderr(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):  # type: ignore[union-attr]
            self.stderr_lines.append(line.decode("utf-8", "replace").rstrip())
            del self.stderr_lines[:-20]

    # ----------------------------------------------------------------- frames

    def send(self, header: dict, payload: bytes = b"") -> None:
        try:
            self.wfile.write(encode(header, payload))  # type: ignore[union-attr]
        except (OSError, ValueError):
            raise self.lost() from None

    def recv(self) -> tuple:
        try:
            return read_frame(self.rfile)
        except (EOFError, OSError, ValueError):
            raise self.lost() from None
        except ProtocolError as exc:
            raise PcopyError(f"{self.spec.host}: {exc}") from None

    def answer(self) -> dict:
        """The final frame of an operation; a refused operation raises its one-line error."""
        header, _ = self.recv()
        if not header.get("ok", False):
            raise PcopyError(f"{self.spec.host}: {header.get('error', 'the remote pcopy refused the request')}")
        return header

    def call(self, header: dict) -> dict:
        self.send(header)
        return self.answer()

    def lost(self) -> PcopyError:
        """The error for a connection that ended: the remote's last words when it had some."""
        try:
            self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        self._drain.join(timeout=0.5)
        said = next((line for line in reversed(self.stderr_lines) if line.strip()), "")
        code = self.proc.returncode
        if code in (126, 127) or "No module named pcopy" in said or "not found" in said:
            return PcopyError(f"{self.spec.host}: no pcopy on the remote ({said or f'exit {code}'}); "
                              "install it there or name it with --remote-pcopy")
        if code == 255:
            lost = ConnectionLost if self.ready else PcopyError
            return lost(f"{self.spec.host}: ssh failed: {said or 'connection closed'}")
        why = said or (f"ssh exited with {code}" if code is not None and code >= 0 else "ssh was killed")
        if not self.ready:
            return PcopyError(f"{self.spec.host}: cannot start pcopy there: {why}")
        return ConnectionLost(f"{self.spec.host}: connection lost: {why}")

    # ----------------------------------------------------------------- life

    def handshake(self) -> dict:
        from ..version import __version__

        self.send({"op": "hello", "proto": PROTO, "version": __version__})
        header, _ = self.recv()
        if header.get("proto") != PROTO:
            raise PcopyError(f"{self.spec.host}: protocol version mismatch: the remote pcopy "
                             f"{header.get('version', '?')} speaks {header.get('proto')}, this one "
                             f"{__version__} speaks {PROTO}; install the same pcopy on both machines")
        if not header.get("ok"):
            raise PcopyError(f"{self.spec.host}: {header.get('error', 'handshake refused')}")
        self.codecs = header.get("codecs") or ["zlib"]
        self.ready = True
        return header

    def close(self, timeout: float = 2.0) -> None:
        """Ask the remote to exit, wait a bounded time, then kill the ssh client."""
        if self.closed:
            return
        self.closed = True
        try:
            self.wfile.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        try:
            self.rfile.close()  # type: ignore[union-attr]
        except OSError:
            pass

    def kill(self) -> None:
        self.closed = True
        try:
            os.killpg(self.proc.pid, 9)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass


def close_all(conns: list, timeout: float = 2.0) -> None:
    """Close every session at once: all stdins first, then one bounded wait for them all."""
    import time

    for conn in conns:
        if not conn.closed:
            try:
                conn.wfile.close()  # type: ignore[union-attr]
            except OSError:
                pass
    deadline = time.monotonic() + timeout
    for conn in conns:
        if conn.closed:
            continue
        try:
            conn.proc.wait(timeout=max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        conn.close(timeout=0)


def connect(spec: Spec, rsh: Optional[str], remote_pcopy: Optional[str]) -> Connection:
    conn = Connection(spec, rsh, remote_pcopy)
    try:
        conn.handshake()
    except BaseException:
        conn.kill()
        raise
    return conn
