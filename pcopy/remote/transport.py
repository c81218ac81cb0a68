"""One ssh session running ``pcopy serve`` on the other machine.

The system's OpenSSH client is run as rsync runs it (``-e/--rsh`` replaces ``ssh``), so
``~/.ssh/config``, keys, agents, ``ProxyJump`` and ControlMaster work as the user has them.
The remote command is ``--remote-pcopy CMD serve`` or, by default, ``pcopy serve`` when
``pcopy`` is on the remote PATH, else ``python3 -m pcopy serve``. The first exchange is the
handshake; nothing is read or written on either side before both agree on ``PROTO``.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import threading
from collections import deque
from typing import Callable, NamedTuple, Optional

from ..errors import PcopyError
from .protocol import BUFFER, PROTO, ProtocolError, encode, read_frame

REMOTE = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^/\]]+\]|[^/:\[\]]+):(?P<path>.*)$", re.S)
WALK_FRAMES = ("listing", "walked")  # a walk's frames: they interleave with the answers of other operations
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
    """A request/answer channel over one ssh process; ``lost`` makes the one-line error naming the host.

    A walk streams beside the other operations (``pcopy serve`` walks in a thread of its own), so the
    control session is the walk's session too: its frames are told apart by type and wait in
    ``walk_frames`` while an answer is awaited (and the other way round in ``frames``). Operations
    from several threads (the flow's and the first data stream's) take turns under ``op_lock``.
    """

    def __init__(self, spec: Spec, rsh: Optional[str], remote_pcopy: Optional[str]) -> None:
        self.spec = spec
        self.argv = command(spec, rsh, remote_pcopy)
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True, bufsize=0)
        except OSError as exc:
            raise PcopyError(f"{self.argv[0]}: cannot run the ssh client: {exc.strerror}") from None
        self.rfile = io.BufferedReader(self.proc.stdout, BUFFER)  # type: ignore[arg-type,type-var]
        self.wfile = self.proc.stdin
        self.out: list = []  # frames not written yet (written before any read, and when BUFFER is full)
        self.out_size = 0
        self.stderr_lines: list = []
        self._drain = threading.Thread(target=self._read_stderr, name="pcopy-ssh-stderr", daemon=True)
        self._drain.start()
        self.closed = False
        self.frames: deque = deque()  # frames of operations, read while waiting for a walk's
        self.walk_frames: deque = deque()  # a walk's frames, read while waiting for an answer
        # The control session is shared by the flow's thread (operations, the walk) and a data stream:
        self.op_lock = threading.RLock()  # held for a whole operation: its request, its frames, its answer
        self.wlock = threading.Lock()  # for ``out`` and the writes
        self.turn = threading.Condition()  # one reader at a time (``_next``)
        self.reading = False
        self.posted: deque = deque()  # ``landed`` of the operations sent by ``post``, oldest first
        self.codecs: list = ["zlib"]  # the remote's -z codecs (from the handshake)
        self.ready = False  # the handshake is done
        self.joins_run = False  # a later session of a run that has started: losing it is a lost connection

    def _read_stderr(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):  # type: ignore[union-attr]
            self.stderr_lines.append(line.decode("utf-8", "replace").rstrip())
            del self.stderr_lines[:-20]

    # ----------------------------------------------------------------- frames

    def send(self, header: dict, payload: bytes = b"") -> None:
        frame = encode(header, payload)
        with self.wlock:
            self.out.append(frame)
            self.out_size += len(frame)
            if self.out_size >= BUFFER:
                self._write_out()

    def flush(self) -> None:
        with self.wlock:
            self._write_out()

    def _write_out(self) -> None:
        if not self.out:
            return
        data = memoryview(self.out[0] if len(self.out) == 1 else b"".join(self.out))
        self.out, self.out_size = [], 0
        try:
            while data:
                data = data[self.wfile.write(data):]  # type: ignore[union-attr]
        except (OSError, ValueError):
            raise self.lost() from None

    def _read(self) -> tuple:
        # whatever is read next may be the answer to what is still unwritten; a thread holding wlock is
        # writing (or sends more and then reads or flushes itself): not waited for, so that a sender
        # blocked on a full pipe never keeps us from reading what unblocks it (verify -m's manifest)
        if self.wlock.acquire(blocking=False):
            try:
                self._write_out()
            finally:
                self.wlock.release()
        try:
            return read_frame(self.rfile)
        except (EOFError, OSError, ValueError):
            raise self.lost() from None
        except ProtocolError as exc:
            raise PcopyError(f"{self.spec.host}: {exc}") from None

    def _next(self, walk: bool) -> tuple:
        """The next frame of the walk (``walk``) or of the operation in progress. One thread reads at a
        time; the frames it reads for the other wait in ``walk_frames`` or ``frames``."""
        with self.turn:
            while True:
                waiting = self.walk_frames if walk else self.frames
                if waiting:
                    return waiting.popleft()
                if not self.reading:
                    self.reading = True
                    break
                self.turn.wait()
        try:
            while True:
                frame = self._read()
                if (frame[0].get("t") in WALK_FRAMES) == walk:
                    return frame
                with self.turn:
                    (self.frames if walk else self.walk_frames).append(frame)
                    self.turn.notify_all()
        finally:
            with self.turn:
                self.reading = False
                self.turn.notify_all()

    def recv(self) -> tuple:
        """The next frame of the operation in progress (a walk's frames are set aside; the answers of
        operations posted before it are handed to their ``landed`` first)."""
        while True:
            frame = self._next(False)
            with self.turn:
                landed = self.posted.popleft() if self.posted else None
            if landed is None:
                return frame
            landed(frame[0])

    def post(self, header: dict, landed: Callable[[dict], None]) -> None:
        """Send an operation without waiting for its answer: ``landed(answer)`` gets it when the next
        operation (or ``settle``) reads it, on whichever thread does (a session answers in order)."""
        with self.op_lock:
            self.send(header)
            with self.turn:
                self.posted.append(landed)

    def settle(self) -> None:
        """Read the answers of every posted operation."""
        with self.op_lock:
            while self.posted:
                with self.turn:
                    if not self.posted:
                        return
                frame = self._next(False)
                with self.turn:
                    landed = self.posted.popleft()
                landed(frame[0])

    def recv_walk(self) -> dict:
        """The next frame of the walk in progress (other frames are set aside for ``recv``)."""
        return self._next(True)[0]

    def answer(self) -> dict:
        """The final frame of an operation; a refused operation raises its one-line error."""
        header, _ = self.recv()
        if not header.get("ok", False):
            raise PcopyError(f"{self.spec.host}: {header.get('error', 'the remote pcopy refused the request')}")
        return header

    def call(self, header: dict) -> dict:
        with self.op_lock:
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
            lost = ConnectionLost if self.ready or self.joins_run else PcopyError
            return lost(f"{self.spec.host}: ssh failed: {said or 'connection closed'}")
        why = said or (f"ssh exited with {code}" if code is not None and code >= 0 else "ssh was killed")
        if not self.ready and not self.joins_run:
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
            self.flush()
            self.wfile.close()  # type: ignore[union-attr]
        except (OSError, PcopyError):
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


class Sessions:
    """Every ssh session of a run, opened when it is needed (a no-op sync needs only its control
    session; data sessions start when batches wait for them) and killed or closed together. A data
    session a flow's stream is done with waits in ``idle`` for the next flow (several SRCs, a watch's
    next batch): ``take`` reuses it before opening another."""

    def __init__(self, spec: Spec, rsh: Optional[str], remote_pcopy: Optional[str]) -> None:
        self.spec, self.rsh, self.remote_pcopy = spec, rsh, remote_pcopy
        self.lock = threading.Lock()
        self.conns: list = []
        self.idle: list = []  # data sessions handed back (``give``), ready for another operation
        self.ended = False  # killed or closed: a session still opening is killed at once

    def __iter__(self):
        with self.lock:
            return iter(list(self.conns))

    def take(self) -> Connection:
        """An idle data session (``give``) if one is still up, else a new one (``open``)."""
        with self.lock:
            while self.idle:
                conn = self.idle.pop()
                if not conn.closed and conn.proc.poll() is None:
                    return conn
        return self.open()

    def give(self, conn: Connection) -> None:
        """A data session with nothing in flight, back for the next flow."""
        with self.lock:
            if not self.ended and not conn.closed:
                self.idle.append(conn)

    def open(self) -> Connection:
        """A new session, its handshake done (its one-line error when it fails)."""
        conn = Connection(self.spec, self.rsh, self.remote_pcopy)
        with self.lock:
            conn.joins_run = any(c.ready for c in self.conns)
            self.conns.append(conn)
            ended = self.ended
        if ended:
            conn.kill()
            raise PcopyError(f"{self.spec.host}: the run was stopped")
        try:
            conn.handshake()
        except BaseException:
            conn.kill()
            raise
        return conn

    def _end(self) -> list:
        with self.lock:
            self.ended = True
            return list(self.conns)

    def kill(self) -> None:
        for conn in self._end():
            conn.kill()

    def close(self, timeout: float = 2.0) -> None:
        close_all(self._end(), timeout)


def close_all(conns: list, timeout: float = 2.0) -> None:
    """Close every session at once: all stdins first, then one bounded wait for them all."""
    import time

    for conn in conns:
        if not conn.closed:
            try:
                conn.flush()  # nothing should wait there at the end; if it does, it goes first
                conn.wfile.close()  # type: ignore[union-attr]
            except (OSError, PcopyError):
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
