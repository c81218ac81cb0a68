"""``--stats``: the transfer statistics rsync users read, from a Report."""

from __future__ import annotations

from ..model.results import KINDS, Report
from .output import human_bytes


def _size(n: int, human: bool) -> str:
    return human_bytes(n) if human else f"{n:,} bytes"


def _by_kind(counts: dict) -> str:
    """rsync's ``5 (reg: 2, dir: 2, link: 1)``: kinds with none are left out, and so is an empty list."""
    total = sum(counts.values())
    kinds = ", ".join(f"{kind}: {counts[kind]:,}" for kind in KINDS if counts[kind])
    return f"{total:,} ({kinds})" if total else "0"


def stats_lines(report: Report, human: bool = False) -> list:
    """rsync's lines, with rsync's meanings (SRC's entries looked at, new ones, regular files' bytes),
    then pcopy's own counts."""
    rate = report.bytes_copied / report.seconds if report.seconds > 0 else 0.0
    return [
        "",
        f"Number of files: {_by_kind(report.listed)}",
        f"Number of created files: {_by_kind(report.created)}",
        f"Number of deleted files: {report.deleted:,}",
        f"Number of regular files transferred: {report.copied:,}",
        f"Number of hard links made: {report.linked:,}",
        f"Number of files with attributes updated: {report.updated:,}",
        f"Number of unchanged files: {report.skipped:,}",
        f"Number of failures: {report.failed:,}",
        f"Total file size: {_size(report.total_size, human)}",
        f"Total transferred file size: {_size(report.file_bytes, human)}",
        f"Total time: {report.seconds:.2f} s",
        f"Rate: {human_bytes(rate)}/s",
    ]
