"""The public Python API: the CLI's commands as functions that return a Report."""

from __future__ import annotations

import os
from typing import Callable, Optional

from . import engine
from .errors import PcopyError, UsageError, describe
from .hashing import ALGORITHMS
from .model import Options, Report
from .pool import BACKENDS
from .progress import make_progress


def copytree(src, dst, *, jobs: Optional[int] = None, backend: str = "process", hash: str = "xxh128",
             manifest=None, progress: bool = False, follow_symlinks: bool = False, force: bool = False,
             keep_results: bool = True, on_result: Optional[Callable] = None) -> Report:
    """Copy the tree at ``src`` into ``dst`` in parallel, checksumming as it writes.

    Like ``pcopy copy``: files whose size and mtime already match at ``dst``
    are skipped unless ``force``. Per-file failures do not raise: they are in
    ``report.failures``. Raises ``PcopyError`` when the copy cannot start and
    ``Interrupted`` on SIGINT/SIGTERM (after cleaning up).
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if hash not in ALGORITHMS:
        raise UsageError(f"unknown hash {hash!r} (choose from {', '.join(ALGORITHMS)})")
    if manifest is not None and hash == "none":
        raise UsageError("a manifest needs checksums: do not combine manifest with hash='none'")
    if jobs is not None and jobs < 1:
        raise UsageError("jobs must be at least 1")
    options = Options(src=os.fspath(src), dst=os.fspath(dst), hash=hash, force=force,
                      follow_symlinks=follow_symlinks, manifest=manifest is not None)
    return engine.copy_tree(options, jobs=jobs, backend=backend, counters=make_progress(progress),
                            manifest_path=os.fspath(manifest) if manifest is not None else None,
                            keep_results=keep_results, on_result=on_result)


# --------------------------------------------------------------------------- integrity (hash, verify)


def _integrity_args(backend: str, jobs: Optional[int]) -> None:
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if jobs is not None and jobs < 1:
        raise UsageError("jobs must be at least 1")


def hash_tree(root, output=None, *, algo: str = "xxh128", jobs: Optional[int] = None, backend: str = "process",
              cache=True, progress: bool = False, on_difference: Optional[Callable] = None,
              on_warning: Optional[Callable] = None):
    """Write an ``xxhsum -H2`` (or, with ``algo='sha256'``, ``sha256sum``) manifest of ``root``.

    ``output``: a path (written to a temporary name, renamed when complete),
    a binary file object, or None to only return the report. Lines are in
    byte order of the relative path. ``cache``: True (default location),
    False, or the path of a cache file. Returns an ``IntegrityReport``.
    """
    from . import integrity as _verify
    from .hashing import HASH_ALGORITHMS, ManifestWriter

    _integrity_args(backend, jobs)
    if algo not in HASH_ALGORITHMS:
        raise UsageError(f"unknown algo {algo!r} (choose from {', '.join(HASH_ALGORITHMS)})")
    root = os.fspath(root)
    writer, skip = None, frozenset()
    if output is None:
        def write(data):
            return None
    elif isinstance(output, (str, bytes, os.PathLike)):
        path = os.fsdecode(output)
        real, real_root = os.path.realpath(path), os.path.realpath(root)
        if real.startswith(real_root.rstrip(os.sep) + os.sep):  # never list the manifest being written
            rel = os.path.relpath(real, real_root)
            skip = frozenset({rel, rel + ".pcopy-tmp"})
        try:
            writer = ManifestWriter(path)
        except OSError as exc:
            raise PcopyError(f"{path}: cannot write manifest: {describe(exc)}") from None
        write = writer.write_bytes
    else:
        write = output.write
    try:
        report = _verify.hash_tree(root, write, algo=algo, jobs=jobs, backend=backend, cache=cache,
                                   counters=make_progress(progress), on_difference=on_difference,
                                   on_warning=on_warning, skip=skip)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is not None:
        writer.close()
    return report


def verify(src, dst=None, *, manifest=None, jobs: Optional[int] = None, backend: str = "process", cache=True,
           progress: bool = False, on_difference: Optional[Callable] = None,
           on_warning: Optional[Callable] = None):
    """Compare two trees by content, or (``manifest=FILE``, ``src`` = ROOT) a tree against a manifest.

    Returns an ``IntegrityReport``; ``report.exit_code`` is 0 when identical,
    4 when differences were found, 3 when some files could not be checked.
    ``manifest`` may be a path, ``"-"`` (stdin) or a binary file object.
    """
    from . import integrity as _verify

    _integrity_args(backend, jobs)
    counters = make_progress(progress)
    common = dict(jobs=jobs, backend=backend, cache=cache, counters=counters, on_difference=on_difference,
                  on_warning=on_warning)
    if manifest is None:
        if dst is None:
            raise UsageError("verify needs SRC and DST, or a manifest and a ROOT")
        return _verify.verify_trees(os.fspath(src), os.fspath(dst), **common)
    if dst is not None:
        raise UsageError("with a manifest, give only ROOT")
    if hasattr(manifest, "read"):
        return _verify.verify_manifest(manifest, os.fspath(src), manifest_name="manifest", **common)
    name = os.fsdecode(manifest)
    if name == "-":
        import sys

        return _verify.verify_manifest(sys.stdin.buffer, os.fspath(src), manifest_name="<stdin>", **common)
    try:
        stream = open(name, "rb")
    except OSError as exc:
        raise PcopyError(f"{name}: cannot read manifest: {describe(exc)}") from None
    with stream:
        return _verify.verify_manifest(stream, os.fspath(src), manifest_name=name, **common)
