"""Transforms: rewrite each file's content (and maybe its name) as it is copied.

A transform turns one readable binary stream into one writable binary stream:

    source fd ─► BufferedReader ─► transform(src, dst, relpath) ─► BufferedWriter ─► temp fd
                 (checks for Ctrl-C,                               (hashes the bytes written,
                  tags source errors)                               tags destination errors)

The worker (``fsops._BatchCopier.transform_file``) owns the temporary file,
the metadata and the rename; this module owns the registry, the built-ins and
the streaming. It sits below ``plan`` and ``fsops`` (the planner asks it for
output names) and imports nothing above ``hashing``.

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
import io
import os
from typing import Callable, Optional

from .errors import UsageError, describe

CHUNK = 1 << 20
ENTRY_POINT_GROUP = "pcopy.transforms"
SRC_SIZE_XATTR = "user.pcopy.src_size"  # the source's size, recorded on each output


class TransformError(Exception):
    """The transform itself failed on one file (the message is one line)."""


class Transform:
    """Base class of named transforms; subclass it in a plugin to add one.

    ``level`` is the ``--level`` option (compression level); a transform that
    takes none rejects it by leaving ``levels`` empty.
    """

    name = "transform"
    levels: range = range(0)
    default_level: Optional[int] = None

    def __init__(self, level: Optional[int] = None) -> None:
        if level is not None and level not in self.levels:
            if not self.levels:
                raise UsageError(f"transform {self.name!r} takes no level")
            raise UsageError(f"transform {self.name!r}: level must be {self.levels.start}..{self.levels.stop - 1}")
        self.level = self.default_level if level is None else level

    def applies(self, name: str) -> bool:
        """False leaves the file as it is (copied like without a transform)."""
        return True

    def output_name(self, name: str) -> str:
        """The name the output will have in the same directory (planner's guess)."""
        return name

    def __call__(self, src, dst, relpath: str) -> Optional[str]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<transform {self.name}>"


def copy_stream(read: Callable, write: Callable) -> None:
    """Copy in CHUNK-sized pieces until ``read`` returns nothing."""
    while True:
        data = read(CHUNK)
        if not data:
            return
        write(data)


class _Compress(Transform):
    suffix = ""

    def output_name(self, name: str) -> str:
        return name + self.suffix

    def open_writer(self, dst):
        raise NotImplementedError

    def __call__(self, src, dst, relpath):
        with self.open_writer(dst) as out:
            copy_stream(src.read, out.write)
        return None


class _Decompress(Transform):
    suffixes: tuple = ()

    def _suffix(self, name: str) -> Optional[str]:
        for suffix in self.suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                return suffix
        return None

    def applies(self, name: str) -> bool:
        return self._suffix(name) is not None

    def output_name(self, name: str) -> str:
        suffix = self._suffix(name)
        return name[: -len(suffix)] if suffix else name

    def open_reader(self, src):
        raise NotImplementedError

    def __call__(self, src, dst, relpath):
        with self.open_reader(src) as data:
            copy_stream(data.read, dst.write)
        return None


class Gzip(_Compress):
    """gzip each file to ``NAME.gz`` (level 1-9, default 6; header mtime 0, no name: reproducible)."""

    name, suffix, levels, default_level = "gzip", ".gz", range(0, 10), 6

    def open_writer(self, dst):
        import gzip

        return gzip.GzipFile(filename="", fileobj=dst, mode="wb", compresslevel=self.level, mtime=0)


class Gunzip(_Decompress):
    """Decompress ``*.gz`` files to the name without ``.gz``; other files are copied as they are."""

    name, suffixes = "gunzip", (".gz",)

    def open_reader(self, src):
        import gzip

        return gzip.GzipFile(fileobj=src, mode="rb")


class Xz(_Compress):
    """xz each file to ``NAME.xz`` (preset 0-9, default 6)."""

    name, suffix, levels, default_level = "xz", ".xz", range(0, 10), 6

    def open_writer(self, dst):
        import lzma

        return lzma.LZMAFile(dst, "wb", format=lzma.FORMAT_XZ, preset=self.level)


class Unxz(_Decompress):
    """Decompress ``*.xz`` files to the name without ``.xz``; other files are copied as they are."""

    name, suffixes = "unxz", (".xz",)

    def open_reader(self, src):
        import lzma

        return lzma.LZMAFile(src, "rb")


def _zstandard():
    try:
        import zstandard
    except ImportError:
        raise UsageError("the zstd transforms need the zstandard package: pip install 'pcopy[zstd]'") from None
    return zstandard


class Zstd(_Compress):
    """zstd each file to ``NAME.zst`` (level 1-22, default 3); needs the ``zstandard`` package."""

    name, suffix, levels, default_level = "zstd", ".zst", range(1, 23), 3

    def __init__(self, level: Optional[int] = None) -> None:
        super().__init__(level)
        _zstandard()  # fail at start-up, not on every file

    def open_writer(self, dst):
        return _zstandard().ZstdCompressor(level=self.level).stream_writer(dst, closefd=False)


class Unzstd(_Decompress):
    """Decompress ``*.zst`` files; needs the ``zstandard`` package."""

    name, suffixes = "unzstd", (".zst",)

    def __init__(self, level: Optional[int] = None) -> None:
        super().__init__(level)
        _zstandard()

    def open_reader(self, src):
        return _zstandard().ZstdDecompressor().stream_reader(src, read_across_frames=True, closefd=False)


BUILTINS = {cls.name: cls for cls in (Gzip, Gunzip, Xz, Unxz, Zstd, Unzstd)}


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
    return _from_object(spec, getattr(spec, "name", None) or getattr(spec, "__qualname__", "transform"), level)


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


# --------------------------------------------------------------------------- streaming


class _SourceRaw(io.RawIOBase):
    """The source fd as a raw stream; never closes the fd; checks for a stop on each read."""

    def __init__(self, fd: int, check: Callable) -> None:
        self.fd = fd
        self.check = check
        self.failure: Optional[BaseException] = None
        self.consumed = 0
        self.detached = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.detached:  # the transform kept a reference after it returned
            return 0
        try:
            self.check()
            n = os.readv(self.fd, [buffer])
        except OSError as exc:
            exc.pcopy_side = "source"
            self.failure = exc
            raise
        except BaseException as exc:  # a stop request
            self.failure = exc
            raise
        self.consumed += n
        return n


class _OutputRaw(io.RawIOBase):
    """The temp file fd as a raw stream that hashes what is written; never closes the fd."""

    def __init__(self, fd: int, hasher, check: Callable) -> None:
        self.fd = fd
        self.hasher = hasher
        self.check = check
        self.failure: Optional[BaseException] = None
        self.written = 0
        self.detached = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        if self.detached:  # never write to the fd after stream() returned: it may be reused
            return size
        try:
            self.check()
            if self.hasher is not None:
                self.hasher.update(view)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            exc.pcopy_side = "destination"
            self.failure = exc
            raise
        except BaseException as exc:
            self.failure = exc
            raise
        self.written += size
        return size


def stream(transform: Transform, src_fd: int, out_fd: int, relpath: str, hasher, check: Callable):
    """Run ``transform`` from ``src_fd`` into ``out_fd``; return ``(returned_name, bytes_written)``.

    I/O failures of our own streams (tagged with ``pcopy_side``) and stop
    requests from ``check`` are re-raised as they are, even when the transform
    caught them or wrapped them in its own exception; anything else the
    transform raises becomes ``TransformError`` with a one-line message.
    """
    source = _SourceRaw(src_fd, check)
    output = _OutputRaw(out_fd, hasher, check)
    reader = io.BufferedReader(source, CHUNK)
    writer = io.BufferedWriter(output, CHUNK)
    try:
        returned = transform(reader, writer, relpath)
        if not writer.closed:
            writer.flush()
    except Exception as exc:
        failure = output.failure or source.failure
        if failure is not None:
            raise failure from None
        raise TransformError(describe(exc)) from None
    finally:
        source.detached = output.detached = True
        for stream_ in (writer, reader):
            try:
                stream_.close()  # detached: drops any unflushed bytes, touches no fd
            except Exception:
                pass
    failure = output.failure or source.failure
    if failure is not None:  # the transform swallowed one of our errors: the output is incomplete
        raise failure
    return returned, output.written
