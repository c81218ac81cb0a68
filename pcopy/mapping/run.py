"""The parent side of ``map``: walk, batch, run on the pool, yield results as batches complete.

    walk(ROOT) ─► exclude (prunes directories) ─► batches ─► BoundedPool ─► worker.run_map_batch
                                                                                 │ one MapResult
                                                                                 ▼ per file
                                          caller ◄── yielded as each batch completes (unordered)

``map_files`` is a generator: the walker is pulled only when the pool has a
free slot, so at most ``jobs * 4`` batches exist beyond the directory being
read, and memory stays flat for any tree size. Closing the generator early
(a consumer that stops, a closed stdout) stops the workers, bounded.
"""

from __future__ import annotations

import functools
import os
import pickle
from typing import Callable, Iterable, Iterator, Optional

from ..errors import UsageError, describe
from ..fs.filters import make_filter
from ..fs.scan import require_dir, walk
from ..model.batching import batches
from ..model.entries import FILE, Task, relpath_join
from ..options import check_run
from ..runtime.pool import ABORT_GRACE, make_pool
from ..runtime.progress import Counters
from ..runtime.signals import SignalGuard
from .worker import JSON, PICKLE, RAW, MapResult, resolve_function, run_map_batch


def map_files(fn, root, *, jobs: Optional[int] = None, backend: str = "process", exclude: Iterable[str] = (),
              counters: Optional[Counters] = None, json_results: bool = False,
              handle_signals: bool = False) -> Iterator[MapResult]:
    """Run ``fn(path)`` on every regular file under ``root``; yield MapResults as they complete.

    Arguments are checked now (UsageError, PcopyError); the work starts when
    the first result is asked for. ``json_results`` makes every result
    JSON-serialisable (repr() otherwise); ``handle_signals`` turns
    SIGINT/SIGTERM into ``Interrupted`` (the CLI's behaviour).
    """
    check_run(jobs, backend)
    if isinstance(exclude, str):
        exclude = (exclude,)
    keep = make_filter(exclude)
    function = resolve_function(fn)  # imports a "module:function" now, so a typo fails fast
    if not callable(function):
        raise UsageError(f"fn must be callable, not {type(function).__name__}")
    if backend == "process" and not isinstance(fn, str):
        try:
            pickle.dumps(fn)
        except Exception as exc:
            raise UsageError("the process backend needs a function it can pickle (a top-level function or a "
                             f"'module:function' name; use backend='thread' for others): {describe(exc)}") from None
    root = os.fspath(root)
    require_dir(root, "root")
    mode = JSON if json_results else (PICKLE if backend == "process" else RAW)
    return _run(fn, root, jobs, backend, keep, counters or Counters(), mode, handle_signals)


def _produce(root: str, keep, counters: Counters, check: Callable, errors: list) -> Iterator:
    for listing in walk(root, keep=keep):
        check()
        reldir = listing.reldir
        if listing.error is not None:
            errors.append(MapResult(os.path.join(root, reldir) if reldir else root, None,
                                    f"cannot read directory: {describe(listing.error)}"))
            continue
        for name, exc in listing.entry_errors:
            errors.append(MapResult(os.path.join(root, relpath_join(reldir, name)), None,
                                    f"cannot stat: {describe(exc)}"))
        tasks = [Task("map", e.name, e.size) for e in listing.entries if e.kind == FILE]
        counters.discovered(len(tasks), sum(t.size for t in tasks))
        yield from batches(reldir, tasks)
    counters.walk_done = True


def _run(fn, root, jobs, backend, keep, counters, mode, handle_signals) -> Iterator[MapResult]:
    guard = SignalGuard() if handle_signals else None
    if guard is not None:
        guard.__enter__()
    check = guard.check if guard is not None else (lambda: None)
    pool = None
    try:
        pool = make_pool(backend, jobs)
        work = functools.partial(run_map_batch, fn, root, mode)
        dir_errors: list = []
        counters.start()
        for batch, results, exc in pool.map_unordered(work, _produce(root, keep, counters, check, dir_errors),
                                                      check):
            while dir_errors:
                counters.failed += 1
                yield dir_errors.pop(0)
            if exc is not None:
                results = [MapResult(os.path.join(root, relpath_join(batch.reldir, t.name)), None,
                                     f"worker failed: {describe(exc)}") for t in batch.tasks]
            counters.files_done += len(results)
            counters.bytes_done += sum(max(t.size, 0) for t in batch.tasks)
            for result in results:
                if result.error is not None:
                    counters.failed += 1
                yield result
        pool.close()
        pool = None
        check()
        while dir_errors:
            counters.failed += 1
            yield dir_errors.pop(0)
    finally:
        if pool is not None:  # an exception, or the caller closed the generator early
            pool.abort(ABORT_GRACE)
        counters.close()
        if guard is not None:
            guard.__exit__(None, None, None)


__all__ = ["MapResult", "map_files", "RAW"]
