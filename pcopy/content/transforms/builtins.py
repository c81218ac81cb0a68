"""The built-in transforms: gzip, xz and zstd (each way); zstd needs the optional ``zstandard`` package."""

from __future__ import annotations

from typing import Callable, Optional

from ...errors import UsageError
from .base import Transform

CHUNK = 1 << 20


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


