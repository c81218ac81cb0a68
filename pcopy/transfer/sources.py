"""cp's rules for what is not one directory: a file SRC, or several SRCs.

    pcopy copy FILE DIR        → DIR/FILE            (DIR exists)
    pcopy copy FILE NEWNAME    → NEWNAME             (its directory exists)
    pcopy copy A B C DIR       → DIR/A, DIR/B, DIR/C (DIR is created if missing; each as one copy of its own)

A directory SRC on its own keeps pcopy's rule (its *contents* go into DST,
like ``rsync SRC/ DST/``). Several SRCs share one report and one manifest
(paths relative to DST); with ``--delete`` each DST/NAME is synced on its own.
"""

from __future__ import annotations

import os
from typing import Optional

from ..content.manifest import ManifestWriter
from ..errors import PcopyError, describe
from ..model.results import Report
from ..options import Options
from ..runtime.progress import Counters
from .engine import copy_tree


class _Shared(Counters):
    """The caller's progress counters, started and closed once for all the runs of several SRCs."""

    def __init__(self, real: Counters) -> None:  # no super().__init__: every attribute lives on ``real``
        object.__setattr__(self, "_real", real)

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._real, name, value)

    def start(self) -> None:
        """The owner starts the display."""

    def close(self) -> None:
        """The owner closes the display."""


def _is_tree(path: str, options: Options) -> bool:
    if options.follow_symlinks:
        return os.path.isdir(path)
    return os.path.isdir(path) and not os.path.islink(path.rstrip(os.sep) or os.sep)


def _name(path: str) -> str:
    name = os.path.basename(path.rstrip(os.sep))
    return name if name not in ("", ".", "..") else os.path.basename(os.path.realpath(path))


def _file_target(src: str, dst: str) -> tuple:
    """(options.src, options.dst, (source name, DST name)) for one file copied to ``dst``."""
    src_dir, src_name = os.path.split(src)
    if os.path.isdir(dst):
        return src_dir or ".", dst, (src_name, src_name)
    dst_dir, dst_name = os.path.split(dst.rstrip(os.sep) if not dst.endswith(os.sep) else dst)
    if not dst_name:
        raise PcopyError(f"{dst}: destination directory does not exist")
    return src_dir or ".", dst_dir or ".", (src_name, dst_name)


def copy_sources(options: Options, sources: list, *, counters: Optional[Counters] = None,
                 keep_results: bool = False, on_result=None, stop_event=None, scheduler=None) -> Report:
    """Copy or sync a file SRC, or several SRCs, into options.dst (see the module docstring)."""
    hooks = dict(keep_results=keep_results, on_result=on_result, stop_event=stop_event, scheduler=scheduler)
    counters = counters if counters is not None else Counters()
    if len(sources) == 1:
        src_dir, dst_dir, single = _file_target(sources[0], options.dst)
        return copy_tree(options._replace(src=src_dir, dst=dst_dir), counters=counters, single=single, **hooks)
    dst = options.dst
    if os.path.lexists(dst) and not os.path.isdir(dst):
        raise PcopyError(f"{dst}: several SRCs need a directory as DST, and it is not one")
    for src in sources:
        if not os.path.lexists(src):
            raise PcopyError(f"{src}: cannot read source: No such file or directory")
    if not os.path.isdir(dst) and not options.dry_run:
        try:
            os.makedirs(dst, 0o777)
        except OSError as exc:
            raise PcopyError(f"{dst}: cannot create destination: {describe(exc)}") from None
    manifest = ManifestWriter.to_path(options.manifest, os.urandom(4).hex()) if options.manifest else None
    total = Report(results=[] if keep_results else None, dry_run=options.dry_run)
    shared = _Shared(counters)
    counters.start()
    try:
        for src in sources:
            name = _name(src)
            if _is_tree(src, options):
                # options.manifest stays set: unchanged files are hashed for the shared manifest too
                sub = options._replace(src=src, dst=os.path.join(dst, name))
                view = manifest.below(name) if manifest is not None else None
                report = copy_tree(sub, counters=shared, manifest=view, **hooks)  # type: ignore[arg-type]
            else:
                src_dir, src_name = os.path.split(src)
                sub = options._replace(src=src_dir or ".", dst=dst)
                report = copy_tree(sub, counters=shared, manifest=manifest, single=(src_name, name),
                                   **hooks)  # type: ignore[arg-type]
            total.merge(report)
            total.failures.extend(report.failures)
            total.seconds += report.seconds
            if total.results is not None and report.results is not None:
                total.results.extend(report.results)
    except BaseException:
        if manifest is not None:
            manifest.discard()
        raise
    finally:
        counters.close()
    if manifest is not None:
        manifest.close()
    return total
