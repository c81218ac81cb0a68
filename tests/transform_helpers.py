"""Top-level functions the transform and map tests import by name (``transform_helpers:NAME``).

They live in a plain module (not a test file) so worker processes and ``pcopy``
subprocesses can import them from ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import time

from pcopy.content.transforms import Transform
from pcopy.content.transforms.builtins import CHUNK


def upper(src, dst, relpath):
    """Upper-case the content; rename ``*.txt`` to ``*.TXT``; keep other names."""
    while True:
        data = src.read(CHUNK)
        if not data:
            break
        dst.write(data.upper())
    if relpath.endswith(".txt"):
        return relpath[:-4] + ".TXT"
    return None


def upper_predicted(src, dst, relpath):
    """Like ``upper`` but announces its renames, so incremental runs can skip."""
    return upper(src, dst, relpath)


upper_predicted.output_name = lambda name: name[:-4] + ".TXT" if name.endswith(".txt") else name


def fail_on_bad(src, dst, relpath):
    """Copy, but raise for any file named ``bad*`` after writing part of the output."""
    dst.write(src.read(4))
    if os.path.basename(relpath).startswith("bad"):
        raise ValueError(f"cannot handle {os.path.basename(relpath)}")
    dst.write(src.read())


def escape_dir(src, dst, relpath):
    dst.write(src.read())
    return "../outside"


def swallow_errors(src, dst, relpath):
    """A careless transform that hides the errors of its streams."""
    try:
        dst.write(src.read())
        dst.flush()
    except Exception:
        pass


class Reverse(Transform):
    """A plugin-style Transform subclass: reverses the bytes, writes ``NAME.rev``."""

    name = "reverse"

    def output_name(self, name):
        return name + ".rev"

    def __call__(self, src, dst, relpath):
        dst.write(src.read()[::-1])


def rot13(src, dst, relpath):
    """A plugin-style plain function."""
    import codecs

    dst.write(codecs.encode(src.read().decode(), "rot13").encode())


# --------------------------------------------------------------------------- map functions


def size(path):
    return os.path.getsize(path)


def size_or_fail(path):
    if os.path.basename(path).startswith("bad"):
        raise ValueError("bad file\nsecond line is dropped")
    return os.path.getsize(path)


def first_line_and_pid(path):
    with open(path, "rb") as f:
        return {"first": f.readline().decode().rstrip("\n"), "pid": os.getpid()}


def not_serialisable(path):
    return {1, 2}  # a set: neither JSON nor (here: it is picklable) a problem for pickle


def unpicklable(path):
    return lambda: path


def slow(path):
    time.sleep(0.2)
    return path
