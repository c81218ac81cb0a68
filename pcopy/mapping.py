"""``pcopy map``: run a function on every file of a tree, on the same bounded pool.

    walk(ROOT) ─► exclude (prunes directories) ─► batches ─► BoundedPool ─► run_map_batch (worker)
                                                                                 │ one MapResult
                                                                                 ▼ per file
                                          caller ◄── yielded as each batch completes (unordered)

``map_files`` is a generator: the walker is pulled only when the pool has a
free slot, so at most ``jobs * 4`` batches exist beyond the directory being
read, and memory stays flat for any tree size. A function that raises fails
that file only: the worker catches the exception and returns its one-line
description as ``MapResult.error``.

Under the process backend the function travels by reference: a
``"module:function"`` string is imported in each worker (once), and a
top-level function object is pickled by its qualified name. Lambdas and
local functions need ``backend="thread"``.

Filters: ``exclude`` takes gitignore-style patterns (see ``filters``), as sync does.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import pickle
import signal
import stat
from typing import Callable, Iterable, Iterator, NamedTuple, Optional

from . import walk
from .engine import ABORT_GRACE, SignalGuard, default_jobs
from .errors import PcopyError, UsageError, describe
from .filters import make_filter
from .model import FILE, Batch, Task, relpath_join
from .plan import batches
from .pool import BACKENDS, BoundedPool, make_backend
from .progress import Counters

BATCH_FILES = 256
BATCH_BYTES = 16 << 20

# How a worker hands a function's return value back.
RAW = "raw"  # as it is (thread backend: nothing crosses a process boundary)
PICKLE = "pickle"  # must pickle; otherwise that file gets an error
JSON = "json"  # must be JSON-serialisable; otherwise its repr() string is used


class MapResult(NamedTuple):
    """What ``fn(path)`` gave for one file: ``result``, or ``error`` (a one-line message)."""

    path: str
    result: object = None
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> str:
        if self.error is not None:
            return json.dumps({"path": self.path, "error": self.error})
        return json.dumps({"path": self.path, "result": self.result})


# --------------------------------------------------------------------------- worker side

_stop = None  # the run's stop Event, set in each worker by _worker_init


def _worker_init(stop_event, in_subprocess: bool = True) -> None:
    """Pool initializer: only the parent handles Ctrl-C; unlike copy workers, the umask is left alone."""
    global _stop
    if in_subprocess:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _stop = stop_event


@functools.lru_cache(maxsize=16)
def _import_function(spec: str) -> Callable:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"function must be given as module:function, not {spec!r}")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise UsageError(f"cannot import {spec!r}: {describe(exc)}") from None
    if not callable(obj):
        raise UsageError(f"{spec!r} is not callable ({type(obj).__name__})")
    return obj


def resolve_function(fn) -> Callable:
    return _import_function(fn) if isinstance(fn, str) else fn


def _portable(value, mode: str) -> tuple:
    """``(value, error)``: the value as it can travel back to the caller."""
    if mode == JSON:
        try:
            json.dumps(value)
        except (TypeError, ValueError, RecursionError):
            return repr(value), None
    elif mode == PICKLE:
        try:
            pickle.dumps(value)
        except Exception as exc:
            return None, f"result cannot be sent back from a worker process: {describe(exc)}"
    return value, None


def run_map_batch(fn, root: str, mode: str, batch: Batch) -> list:
    """Call ``fn(path)`` for each file of a batch; one MapResult per file, never an exception."""
    function = resolve_function(fn)
    results = []
    stop = _stop
    for task in batch.tasks:
        if stop is not None and stop.is_set():
            break  # interrupted: the parent is discarding the run
        path = os.path.join(root, relpath_join(batch.reldir, task.name))
        try:
            value = function(path)
        except Exception as exc:
            results.append(MapResult(path, None, describe(exc)))
            continue
        value, error = _portable(value, mode)
        results.append(MapResult(path, value, error))
    return results


# --------------------------------------------------------------------------- parent side


def map_files(fn, root, *, jobs: Optional[int] = None, backend: str = "process", exclude: Iterable[str] = (),
              counters: Optional[Counters] = None, json_results: bool = False,
              handle_signals: bool = False) -> Iterator[MapResult]:
    """Run ``fn(path)`` on every regular file under ``root``; yield MapResults as they complete.

    Arguments are checked now (UsageError, PcopyError); the work starts when
    the first result is asked for. ``json_results`` makes every result
    JSON-serialisable (repr() otherwise); ``handle_signals`` turns
    SIGINT/SIGTERM into ``Interrupted`` (the CLI's behaviour). Closing the
    generator early stops the workers.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if jobs is not None and jobs < 1:
        raise UsageError("jobs must be at least 1")
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
    try:
        st = os.stat(root)
    except OSError as exc:
        raise PcopyError(f"{root}: cannot read: {describe(exc)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise PcopyError(f"{root}: not a directory")
    mode = JSON if json_results else (PICKLE if backend == "process" else RAW)
    return _run(fn, root, jobs or default_jobs(), backend, keep, counters or Counters(), mode, handle_signals)


def _produce(root: str, keep, counters: Counters, check: Callable, errors: list) -> Iterator[Batch]:
    for listing in walk.walk(root, keep=keep):
        check()
        reldir = listing.reldir
        if listing.error is not None:
            errors.append(MapResult(os.path.join(root, reldir) if reldir else root, None,
                                    f"cannot read directory: {describe(listing.error)}"))
            continue
        tasks = [Task("map", e.name, e.size) for e in listing.entries if e.kind == FILE]
        counters.discovered(len(tasks), sum(t.size for t in tasks))
        yield from batches(reldir, tasks, BATCH_FILES, BATCH_BYTES)
    counters.walk_done = True


def _run(fn, root, jobs, backend, keep, counters, mode, handle_signals) -> Iterator[MapResult]:
    guard = SignalGuard() if handle_signals else None
    if guard is not None:
        guard.__enter__()
    check = guard.check if guard is not None else (lambda: None)
    pool = BoundedPool(make_backend(backend, jobs, _worker_init), max_in_flight=jobs * 4)
    worker = functools.partial(run_map_batch, fn, root, mode)
    dir_errors: list = []
    counters.start()
    try:
        for batch, results, exc in pool.map_unordered(worker, _produce(root, keep, counters, check, dir_errors),
                                                      check):
            while dir_errors:
                counters.failed += 1
                yield dir_errors.pop()
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
        check()
        while dir_errors:
            counters.failed += 1
            yield dir_errors.pop()
    except BaseException:
        pool.abort(ABORT_GRACE)
        raise
    finally:
        counters.close()
        if guard is not None:
            guard.__exit__(None, None, None)
