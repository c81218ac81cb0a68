"""Transforms: rewrite each file's content (and maybe its name) as it is copied.

A transform turns one readable binary stream into one writable binary stream:

    source fd ─► BufferedReader ─► transform(src, dst, relpath) ─► BufferedWriter ─► temp fd
                 (checks for Ctrl-C,                               (hashes the bytes written,
                  tags source errors)                               tags destination errors)

The worker (``transfer.transformed``) owns the temporary file, the metadata and
the rename; this package owns the registry (here), the built-ins
(``builtins``) and the streaming (``stream``). It sits below the planner,
which asks it for output names.

Where a transform comes from, in this order (``resolve``):

1. a built-in name: ``gzip``, ``gunzip``, ``xz``, ``unxz``, ``zstd``, ``unzstd``
   (the zstd pair needs the optional ``zstandard`` package: ``pip install 'pcopy[zstd]'``);
2. a name registered by a plugin in the entry-point group ``pcopy.transforms``
   (pointing at a ``Transform`` subclass, a ``Transform`` instance or a function);
3. ``module:function``, imported by name (from ``PYTHONPATH``);
4. from the Python API, a ``Transform`` or a top-level function object.

A function ``f(src, dst, relpath)`` returns ``None`` to keep the name or a new
name in the same directory. It may carry ``f.output_name = g`` (``g(name) ->
str``) so the planner knows the output name in advance (then incremental runs
skip up-to-date outputs even when they are renamed) and ``f.applies = h``
(``h(name) -> bool``) to leave some files untransformed (copied as they are).

Memory: the built-ins stream in chunks of ``CHUNK`` bytes, whatever the file size.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Callable, Optional

from ...errors import UsageError, describe
from .base import Transform, TransformError

ENTRY_POINT_GROUP = "pcopy.transforms"
SRC_SIZE_XATTR = "user.pcopy.src_size"  # the source's size, recorded on each output


class FunctionTransform(Transform):
    """Wraps a user function ``fn(src, dst, relpath) -> Optional[str]``."""

    def __init__(self, fn: Callable, name: Optional[str] = None) -> None:
        super().__init__(None)
        self.fn = fn
        self.name = name or f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"
        self._output_name = getattr(fn, "output_name", None)
        self._applies = getattr(fn, "applies", None)

    def applies(self, name: str) -> bool:
        return True if self._applies is None else bool(self._applies(name))

    def output_name(self, name: str) -> str:
        return name if self._output_name is None else self._output_name(name)

    def __call__(self, src, dst, relpath):
        return self.fn(src, dst, relpath)


# --------------------------------------------------------------------------- resolution


def _entry_point(name: str):
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep
    return None


def available() -> list:
    """Names usable with ``--transform``: built-ins, then registered plugins."""
    from importlib.metadata import entry_points

    from .builtins import BUILTINS

    return [*BUILTINS, *sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(BUILTINS))]


def _from_object(obj, name: str, level: Optional[int]) -> Transform:
    if isinstance(obj, type) and issubclass(obj, Transform):
        return obj(level)
    if isinstance(obj, Transform):
        if level is not None:
            raise UsageError(f"transform {name!r} takes no level")
        return obj
    if callable(obj):
        if level is not None:
            raise UsageError(f"transform {name!r} takes no level")
        return FunctionTransform(obj, name)
    raise UsageError(f"transform {name!r} is not callable ({type(obj).__name__})")


@functools.lru_cache(maxsize=32)
def _resolve_named(spec: str, level: Optional[int]) -> Transform:
    from .builtins import BUILTINS

    if spec in BUILTINS:
        return BUILTINS[spec](level)
    ep = _entry_point(spec)
    if ep is not None:
        try:
            obj = ep.load()
        except Exception as exc:
            raise UsageError(f"cannot load transform plugin {spec!r} ({ep.value}): {describe(exc)}") from None
        return _from_object(obj, spec, level)
    if ":" not in spec:
        raise UsageError(f"unknown transform {spec!r} (choose from {', '.join(available())}, "
                         "or give module:function)")
    module_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise UsageError(f"cannot import transform {spec!r}: {describe(exc)}") from None
    return _from_object(obj, spec, level)


def resolve(spec, level: Optional[int] = None) -> Transform:
    """The Transform for ``spec`` (a name, ``module:function``, a Transform or a function).

    Raises UsageError when it cannot be found or imported. Named specs are
    cached per process, so each worker imports a user module once.
    """
    if isinstance(spec, str):
        return _resolve_named(spec, level)
    return _from_object(spec, str(getattr(spec, "name", None) or getattr(spec, "__qualname__", "transform")), level)


def for_options(options) -> Optional[Transform]:
    """The run's transform (``options.transform``), or None."""
    spec = getattr(options, "transform", None)
    if spec is None:
        return None
    return resolve(spec, getattr(options, "transform_level", None))


def checked_name(returned, predicted: str, reldir: str) -> str:
    """The final name for a transform's return value (a name in the file's own directory)."""
    if returned is None:
        return predicted
    if isinstance(returned, os.PathLike):
        returned = os.fspath(returned)
    if not isinstance(returned, str):
        raise TransformError(f"transform returned {type(returned).__name__}, not a name or None")
    head, _, name = returned.rpartition(os.sep)
    if head and head != reldir:
        raise TransformError(f"transform returned {returned!r}: the output must stay in the file's directory")
    if name in ("", ".", "..") or "\0" in name or name.startswith(".pcopy-tmp-"):
        raise TransformError(f"transform returned an invalid name {returned!r}")
    return name


