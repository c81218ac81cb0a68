"""The map worker: call the user's function on each file of a batch; one MapResult per file.

A function that raises (anything, even a ``BaseException`` or an exception
whose arguments do not survive pickling) fails that file only: the worker
returns the exception's one-line description, a plain string, never the
exception object.

Under the process backend the function travels by reference: a
``"module:function"`` string is imported in each worker (once), and a
top-level function object is pickled by its qualified name. Lambdas and
local functions need ``backend="thread"``.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import pickle
from typing import Callable, NamedTuple, Optional

from ..errors import UsageError, describe
from ..model.entries import Batch, relpath_join
from ..runtime import worker

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
        raise UsageError(f"cannot import {spec!r}: {describe(exc)} (modules are looked up in the current "
                         "directory and on PYTHONPATH)") from None
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
            try:
                return repr(value), None
            except Exception as exc:
                return None, f"result cannot be shown: {describe(exc)}"
    elif mode == PICKLE:
        try:
            pickle.loads(pickle.dumps(value))
        except Exception as exc:
            return None, f"result cannot be sent back from a worker process: {describe(exc)}"
    return value, None


def run_map_batch(fn, root: str, mode: str, batch: Batch) -> list:
    """Call ``fn(path)`` for each file of a batch; one MapResult per file, never an exception."""
    function = resolve_function(fn)
    results = []
    stop = worker.stop_flag()
    for task in batch.tasks:
        if stop is not None and stop.is_set():
            break  # interrupted: the parent is discarding the run
        path = os.path.join(root, relpath_join(batch.reldir, task.name))
        try:
            value = function(path)
        except BaseException as exc:  # the user's function: whatever it raises fails this file only
            results.append(MapResult(path, None, describe(exc)))
            continue
        value, error = _portable(value, mode)
        results.append(MapResult(path, value, error))
    return results
