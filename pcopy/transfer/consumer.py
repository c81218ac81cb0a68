"""The single place results go: report counts, progress, manifest, the caller's callback."""

from __future__ import annotations

from typing import Callable, Optional

from ..content.manifest import ManifestWriter
from ..model.entries import SYMLINK
from ..model.results import COPIED, CREATED, DELETED, FAILED, LINKED, SKIPPED, UPDATED, Report, Result
from ..runtime.progress import Counters


class Consumer:
    def __init__(self, report: Report, counters: Counters, manifest: Optional[ManifestWriter],
                 on_result: Optional[Callable]) -> None:
        self.report = report
        self.counters = counters
        self.manifest = manifest
        self.on_result = on_result

    @property
    def wants_each(self) -> bool:
        """Whether every unchanged file needs a Result of its own (or only counting)."""
        return self.report.results is not None or self.on_result is not None

    def add(self, result: Result) -> None:
        self.add_many((result,))

    def add_unchanged(self, count: int) -> None:
        self.report.skipped += count
        self.counters.files_done += count

    def add_many(self, results) -> None:
        """Record a batch of results (one call per batch keeps the parent's per-file cost low).

        This is ``Report.count`` inlined for the hot path.
        """
        report, counters = self.report, self.counters
        nbytes = 0
        files = 0
        for result in results:
            status = result.status
            if status == COPIED:
                if result.kind == SYMLINK:
                    report.symlinks += 1
                else:
                    report.copied += 1
                nbytes += result.size  # a symlink counts its target's length, as in rsync
            elif status == SKIPPED:
                report.skipped += 1
            elif status == LINKED:
                report.linked += 1
            elif status == UPDATED:
                report.updated += 1
            elif status == DELETED:
                report.deleted += 1
                continue
            elif status == CREATED:
                report.dirs += 1
                continue
            elif status == FAILED:
                report.failed += 1
                report.failures.append(result)
                counters.failed += 1
            files += 1
        report.bytes_copied += nbytes
        counters.files_done += files
        counters.bytes_done += nbytes
        if report.results is not None:
            report.results.extend(results)
        if self.manifest is not None:
            self.manifest.add_many(results)
        if self.on_result is not None:
            for result in results:
                self.on_result(result)
