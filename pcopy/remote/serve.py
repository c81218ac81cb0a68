"""``pcopy serve``: the remote end of an ssh session. It speaks only the protocol (``protocol``) on
stdin/stdout and runs only the operations in ``OPS``, each on paths beneath the root it was given.

It dies with its ssh session: stdin at EOF or stdout closed ends it, and the kernel kills it when
its parent (sshd's session process) goes (``PR_SET_PDEATHSIG``), so Ctrl-C or a killed client
leaves no remote process behind.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading

from ..errors import PcopyError, describe
from ..runtime import children
from ..version import __version__
from . import ops
from .protocol import BUFFER, PROTO, ProtocolError, check_name, check_relpath, codecs, encode, read_frame


class Server:
    def __init__(self, rfile, wfile) -> None:
        self.rfile, self.wfile = rfile, wfile
        self.lock = threading.Lock()

    def emit(self, header: dict, payload: bytes = b"") -> None:
        frame = encode(header, payload)
        with self.lock:  # a walk's thread writes its frames between the other operations'
            self.wfile.write(frame)

    def next_frame(self) -> tuple:
        return read_frame(self.rfile)

    def answer(self, **fields) -> None:
        self.emit(dict(fields, ok=True))
        self.flush()

    def flush(self) -> None:
        with self.lock:
            self.wfile.flush()

    def run(self) -> int:
        header, _ = self.next_frame()
        if header.get("op") != "hello":
            self.emit({"ok": False, "proto": PROTO, "version": __version__, "error": "expected hello"})
            return 2
        if header.get("proto") != PROTO:
            self.emit({"ok": False, "proto": PROTO, "version": __version__,
                       "error": f"protocol version mismatch (client {header.get('proto')}, server {PROTO})"})
            self.flush()
            return 2
        self.answer(proto=PROTO, version=__version__, pid=os.getpid(), codecs=codecs())
        while True:
            try:
                header, _ = self.next_frame()
            except EOFError:
                return 0
            for key in ("root", "path"):  # host:~/dir and host:~user/dir, as a remote shell would expand them
                if isinstance(header.get(key), str) and header[key].startswith("~"):
                    header[key] = os.path.expanduser(header[key])
            op = OPS.get(header.get("op", ""))
            if op is None:
                self.emit({"ok": False, "error": f"unknown operation {header.get('op')!r}"})
                self.flush()
                continue
            try:
                op(self, header)
            except ProtocolError:
                raise  # the stream may be out of step: end the session
            except PcopyError as exc:  # the operation could not start (a missing root): its one line
                self.emit({"ok": False, "error": str(exc)})
                self.flush()

    # ----------------------------------------------------------------- operations

    def op_stat(self, h: dict) -> None:
        self.answer(**ops.root_info(h["path"], h.get("follow", True) is not False))

    def op_mkroot(self, h: dict) -> None:
        error = ops.make_root(h["path"])
        if error:
            self.emit({"ok": False, "error": error})
            self.flush()
        else:
            self.answer()

    def op_fit(self, h: dict) -> None:
        from .client import fit_fields

        owner = bool(h.get("owner")) and os.geteuid() == 0
        self.answer(**fit_fields(h["path"], str(h["token"]), int(h["window"]), owner, bool(h.get("dry"))))

    def op_walk(self, h: dict) -> None:
        """Streams in a thread of its own, so the same session keeps answering other operations (a
        push makes directories while it reads the DST walk): one session less to start."""
        threading.Thread(target=self._walk, args=(h,), name="pcopy-serve-walk", daemon=True).start()

    def _walk(self, h: dict) -> None:
        try:
            marked: set = set()
            keep = ops.make_keep(h["root"], h.get("filter"), marked)
            for message in ops.walk_out(h["root"], bool(h.get("follow")), keep, bool(h.get("xdev")), marked):
                self.emit(dict(message, t="listing"))
                self.flush()
            end: dict = {"t": "walked", "ok": True}
        except (ValueError, BrokenPipeError):
            return  # the client went away
        except (PcopyError, OSError) as exc:
            end = {"t": "walked", "ok": False, "error": str(exc) if isinstance(exc, PcopyError) else describe(exc)}
        try:
            self.emit(end)
            self.flush()
        except (OSError, ValueError):
            pass

    def op_readdir(self, h: dict) -> None:
        check_relpath(h["reldir"])
        self.answer(**ops.readdir_out(h["root"], h["reldir"]))

    def op_mkdirs(self, h: dict) -> None:
        for reldir in h["reldirs"]:
            check_relpath(reldir)
        self.answer(errors=ops.mkdirs(h["root"], h["reldirs"]))

    def op_delete(self, h: dict) -> None:
        for item in h["items"]:
            check_relpath(item[0])
        keep = ops.make_keep(h["root"], h.get("filter"))
        self.answer(found=ops.delete(h["root"], h["items"], keep, bool(h.get("dry")), h.get("backup")))

    def op_dirs(self, h: dict) -> None:
        from .receive import receiver_options, set_dirs  # imported here: a walk's session never needs it

        options = receiver_options(h["root"], h["token"], h.get("opts") or {})
        self.answer(**set_dirs(options, h["items"]))

    def op_srcmeta(self, h: dict) -> None:
        from .send import src_meta

        for relpath in h["relpaths"]:
            check_relpath(relpath)
        attrs = tuple(bool(a) for a in (h.get("attrs") or (False, False))[:2])
        self.answer(meta=src_meta(h["root"], h["relpaths"], bool(h.get("follow")), attrs))

    def op_fix(self, h: dict) -> None:
        from .receive import fix_batch, receiver_options

        options = receiver_options(h["root"], h["token"], h.get("opts") or {})
        self.answer(results=fix_batch(options, h["reldir"], h["items"]))

    def op_links(self, h: dict) -> None:
        from .receive import link_names

        self.answer(results=link_names(h["root"], h["token"], h["items"]))

    def op_stale(self, h: dict) -> None:
        check_relpath(h["reldir"])
        self.answer(removed=ops.remove_stale(h["root"], h["reldir"], h["names"], bool(h.get("partials"))))

    def op_kept(self, h: dict) -> None:
        from .resume import kept_sizes

        check_relpath(h["reldir"])
        self.answer(sizes=kept_sizes(h["root"], h["reldir"], [check_name(n) for n in h["names"]]))

    def op_cleanup(self, h: dict) -> None:
        self.answer(removed=ops.remove_run_temps(h["root"], h["reldirs"], h["token"]))

    def op_digests(self, h: dict) -> None:
        check_relpath(h["reldir"])
        self.answer(digests=ops.digests(h["root"], h["reldir"], h["names"]))

    def op_rename(self, h: dict) -> None:
        from .moves import serve_renames  # watch's moves

        self.answer(done=serve_renames(h["root"], h["moves"], h.get("parents") or {}))

    def op_recv(self, h: dict) -> None:
        from .receive import receive_batch, receiver_options  # imported here: a walk's session never needs it

        options = receiver_options(h["root"], h["token"], h.get("opts") or {})
        results = receive_batch(options, h["reldir"], self.next_frame, bool(h.get("mkdir")))
        self.answer(results=results)

    def op_dsttasks(self, h: dict) -> None:
        from .dstonly import run_dst_tasks, task_in

        tasks = [task_in(t) for t in h["tasks"]]
        given = h.get("attrs") or {}
        if not isinstance(given, dict):
            raise ProtocolError("bad attributes from the other end")
        self.answer(results=run_dst_tasks(h["root"], h["token"], h["reldir"], tasks, h.get("opts") or {}, given))

    def op_hash(self, h: dict) -> None:
        from .hashing import serve_hash

        self.answer(**serve_hash(self.emit, h))

    def op_vtree(self, h: dict) -> None:
        from .verify_serve import serve_tree

        def emit(header: dict) -> None:  # each directory at once: the client compares while we hash on
            self.emit(header)
            self.flush()

        self.answer(**serve_tree(emit, self.next_frame, h))

    def op_vmanifest(self, h: dict) -> None:
        from .verify_serve import serve_manifest

        self.answer(**serve_manifest(self.emit, self.next_frame, h))

    def op_send(self, h: dict) -> None:
        check_relpath(h["reldir"])
        for item in h["files"]:  # [name, why, is_link] and with --partial the bytes the other end kept
            if len(item) not in (3, 4) or not all(isinstance(n, int) and n >= 0 for n in item[3:]):
                raise ProtocolError(f"bad file from the other end: {item!r}")
        codec = h.get("z") or ""
        if codec and codec not in codecs():
            raise ProtocolError(f"unknown codec {codec!r}")
        from .send import send_batch

        attrs = tuple(bool(a) for a in (h.get("attrs") or (False, False))[:2])
        results = send_batch(h["root"], h["reldir"], h["files"], self.emit, bool(h.get("follow")), codec=codec,
                             attrs=attrs)
        self.answer(results=results)


OPS = {name[3:]: getattr(Server, name) for name in dir(Server) if name.startswith("op_")}


def _stop(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _term_with_parent() -> None:
    """SIGTERM (not SIGKILL, as for workers: the temp file being written must go) when sshd's session
    process, our parent, exits."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(children._PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main() -> int:
    """Entry point of ``pcopy serve``."""
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, _stop)  # unwinds: a file being received loses its temp name on the way out
    _term_with_parent()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # the client went away: end now, quietly
    signal.signal(signal.SIGIO, signal.SIG_IGN)  # lease probes of young files (content.digest.open_for_writing)
    # frames in blocks of BUFFER, not a syscall (and an ssh packet) per small file
    # (on the fds themselves: with PYTHONUNBUFFERED sys.stdout.buffer is already raw)
    rfile = io.BufferedReader(io.FileIO(sys.stdin.fileno(), "rb", closefd=False), BUFFER)
    wfile = io.BufferedWriter(io.FileIO(sys.stdout.fileno(), "wb", closefd=False), BUFFER)
    sys.stdout = sys.stderr  # nothing else may write into the protocol stream
    sys.stdin = open(os.devnull)  # a forked worker closes sys.stdin: never the protocol stream a thread may be reading
    try:
        return Server(rfile, wfile).run()
    except (EOFError, BrokenPipeError):
        return 0
    except ProtocolError as exc:
        sys.stderr.write(f"pcopy serve: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"pcopy serve: {describe(exc)}\n")
        return 1
