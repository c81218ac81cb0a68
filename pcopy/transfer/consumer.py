"""The single place results go: report counts, progress, manifest, the caller's callback."""

from __future__ import annotations

from typing import Callable, Optional

from ..content.manifest import ManifestWriter
from ..model.results import NOTE, Report, Result
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
        """Whether every unchanged file needs a Result of its own (or only counting).

        A callback with ``wants_unchanged = False`` (the CLI's reporter, unless
        it logs skips) keeps a no-op sync on its fast path.
        """
        return self.report.results is not None or (
            self.on_result is not None and getattr(self.on_result, "wants_unchanged", True))

    def add(self, result: Result, source: bool = True) -> None:
        self.add_many((result,), source)

    def add_unchanged(self, count: int) -> None:
        self.report.skipped += count
        self.counters.files_done += count

    def _take_notes(self, results) -> list:
        """A worker's run-wide warnings (attributes DST cannot store): one warning line each per run,
        neither files nor results."""
        warnings = self.report.warnings
        for result in results:
            if result.status == NOTE and result.message not in warnings:
                warnings.append(result.message)
        return [r for r in results if r.status != NOTE]

    def add_many(self, results, source: bool = True) -> None:
        """Record a batch of results: counts, progress, the kept list, the manifest, the callback.

        ``source=False``: results about DST entries (deletions, DST entries that
        cannot be stat'ed), which the walk did not count as source files found.
        """
        report, counters = self.report, self.counters
        if results and results[-1].status == NOTE:  # a worker's warnings come last in its batch
            results = self._take_notes(results)
        failed = report.failed
        files, nbytes = report.count(results)
        if source:
            counters.files_done += files
        counters.bytes_done += nbytes
        counters.failed += report.failed - failed
        if report.results is not None:
            report.results.extend(results)
        if self.manifest is not None:
            self.manifest.add_many(results)
        if self.on_result is not None:
            for result in results:
                self.on_result(result)
