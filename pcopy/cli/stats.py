"""``--stats``: the transfer statistics rsync users read, from a Report."""

from __future__ import annotations

from ..model.results import Report
from .output import human_bytes


def _size(n: int, human: bool) -> str:
    return human_bytes(n) if human else f"{n:,} bytes"


def stats_lines(report: Report, human: bool = False) -> list:
    rate = report.bytes_copied / report.seconds if report.seconds > 0 else 0.0
    written = report.copied + report.symlinks + report.linked
    return [
        "",
        f"Number of files: {written + report.skipped + report.updated + report.failed:,} "
        f"(reg: {report.copied:,}, link: {report.symlinks:,}, hard link: {report.linked:,})",
        f"Number of created directories: {report.dirs:,}",
        f"Number of deleted files: {report.deleted:,}",
        f"Number of regular files transferred: {report.copied:,}",
        f"Number of files with attributes updated: {report.updated:,}",
        f"Number of unchanged files: {report.skipped:,}",
        f"Number of failures: {report.failed:,}",
        f"Total transferred file size: {_size(report.bytes_copied, human)}",
        f"Total time: {report.seconds:.2f} s",
        f"Rate: {human_bytes(rate)}/s",
    ]
