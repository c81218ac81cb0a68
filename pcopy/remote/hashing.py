"""``pcopy hash host:ROOT``: the remote ``pcopy serve`` hashes its own files (``integrity.tree``, the
local hash command's code, with its cache) and only the manifest lines, differences and the report
travel back.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from ..errors import PcopyError
from ..integrity import tree
from ..integrity.report import Difference, IntegrityReport
from . import transport

SEND_EVERY = 256 << 10  # bytes of manifest lines per frame


class _Lines:
    """The remote's manifest lines, sent in frames of about SEND_EVERY bytes."""

    def __init__(self, emit: Callable) -> None:
        self.emit = emit
        self.buf: list = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.buf.append(bytes(data))
        self.size += len(data)
        if self.size >= SEND_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.emit({"t": "data"}, b"".join(self.buf))
            self.buf, self.size = [], 0


def serve_hash(emit: Callable, h: dict) -> dict:
    """In ``pcopy serve``: hash ``h["root"]``; returns the answer's fields (the report)."""
    lines = _Lines(emit)

    def difference(diff: Difference) -> None:
        lines.flush()
        emit({"t": "diff", "kind": diff.kind, "path": diff.path, "detail": diff.detail})

    def warning(message: str) -> None:
        emit({"t": "warn", "message": message})

    cache = h.get("cache", True)
    report = tree.hash_tree(h["root"], lines.write, algo=h.get("algo", "xxh128"), jobs=h.get("jobs"),
                            cache=cache if cache in (True, False) else True, on_difference=difference,
                            on_warning=warning, keep=False)
    lines.flush()
    return {"report": report.to_dict()}


def hash_remote(arg: str, write: Callable, *, algo: str, jobs: Optional[int], cache, rsh: Optional[str],
                remote_pcopy: Optional[str], on_difference: Optional[Callable] = None,
                on_warning: Optional[Callable] = None) -> IntegrityReport:
    """The client of ``pcopy hash host:ROOT``: manifest lines go to ``write``."""
    spec = transport.parse(arg)
    assert spec is not None
    if cache not in (True, False):
        raise PcopyError(f"{arg}: --cache FILE names a local file; a remote tree uses the remote's default cache")
    conn = transport.connect(spec, rsh, remote_pcopy)
    found: list = []  # the remote keeps none (its report travels without them): --json lists them as locally
    try:
        conn.send({"op": "hash", "root": spec.path, "algo": algo, "jobs": jobs, "cache": cache})
        while True:
            header, payload = conn.recv()
            kind = header.get("t")
            if kind == "data":
                write(payload)
            elif kind == "diff":
                diff = Difference(header["kind"], header["path"], header.get("detail", ""))
                found.append(diff)
                if on_difference is not None:
                    on_difference(diff)
            elif kind == "warn":
                if on_warning is not None:
                    on_warning(header["message"])
            elif not header.get("ok"):
                raise PcopyError(f"{spec.host}: {header.get('error') or 'remote hash failed'}")
            else:
                break
    finally:
        conn.close()
    report = report_from(header["report"])
    report.differences = found
    return report


def report_from(plain: dict) -> IntegrityReport:
    """The IntegrityReport a remote sent as ``to_dict()``."""
    data = dict(plain)
    differences = data.pop("differences", None)
    report = IntegrityReport(**{k: v for k, v in data.items() if k in IntegrityReport.__dataclass_fields__})
    report.differences = [Difference(**d) for d in differences] if differences is not None else None
    return report


def hash_to(arg: str, stdout, output: Optional[str], **kwargs) -> IntegrityReport:
    """``hash_remote`` into stdout, or into ``output`` written like a shell redirect (``fs.outputs``)."""
    if stdout is not None:
        return hash_remote(arg, stdout.write, **kwargs)
    from ..content.manifest import ManifestWriter

    writer = ManifestWriter.to_path(os.fsdecode(output), os.urandom(4).hex())  # type: ignore[arg-type]
    try:
        report = hash_remote(arg, writer.write_bytes, **kwargs)
    except BaseException:
        writer.discard()
        raise
    writer.close()
    return report


def is_remote(path: str) -> bool:
    return transport.parse(os.fspath(path)) is not None
