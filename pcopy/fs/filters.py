"""Include/exclude filters with gitignore semantics.

Patterns are applied in command-line order and the last matching one wins,
as in a ``.gitignore``: ``--exclude PAT`` adds ``PAT``, ``--include PAT``
adds ``!PAT`` (re-include), and ``--exclude-from FILE`` adds FILE's lines.
Paths are matched relative to the tree root with ``/`` separators; a
directory is matched with a trailing ``/`` so ``build/`` patterns work. An
excluded directory is not entered, so (as in git) nothing below it can be
re-included.

The gitignore dialect (anchoring, ``**``, negation, escapes) is subtle, so we
use the well-kept ``pathspec`` library rather than a home-grown matcher. A
pattern it cannot turn into a matcher (an unclosed ``[``) would silently match
nothing; that is refused here instead.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Optional

from ..errors import UsageError

MAX_PATTERN_FILE = 16 << 20  # bytes: an --exclude-from file larger than this is refused


def read_pattern_file(path: str) -> list:
    """Lines of an --exclude-from file (comments and blanks are handled by the matcher)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PATTERN_FILE + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read pattern file: {exc.strerror}") from None
    if len(data) > MAX_PATTERN_FILE:
        raise UsageError(f"{path}: pattern file is larger than {MAX_PATTERN_FILE >> 20} MiB")
    if b"\0" in data:
        raise UsageError(f"{path}: pattern file contains a NUL byte (not a text file?)")
    return [line.rstrip("\r") for line in os.fsdecode(data).split("\n")]


def _patterns(lines: Iterable[str]) -> list:
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def check_patterns(lines: Iterable[str]) -> None:
    """UsageError naming the first pattern that cannot work (say, an unclosed ``[``)."""
    make_filter(lines)


def make_filter(lines: Iterable[str]) -> Optional[Callable[[str, bool], bool]]:
    """A predicate ``keep(relpath, is_dir)``, or None when there are no patterns."""
    lines = _patterns(lines)
    if not lines:
        return None
    import pathspec  # only when filters are used

    for line in lines:
        text = line[1:] if line.startswith("!") else line
        try:
            compiled = pathspec.GitIgnoreSpec.from_lines([line])
        except Exception as exc:  # pathspec raises various errors for bad patterns
            raise UsageError(f"bad filter pattern {line!r}: {exc}") from None
        if text.strip() and all(getattr(p, "regex", 1) is None for p in compiled.patterns):
            hint = " (unclosed '[': write '\\[' for a literal bracket)" if "[" in text else ""
            raise UsageError(f"bad filter pattern {line!r}: it can never match{hint}")
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    match = spec.match_file
    sep = os.sep

    def keep(relpath: str, is_dir: bool) -> bool:
        path = relpath.replace(sep, "/") if sep != "/" else relpath
        return not match(path + "/" if is_dir else path)

    return keep


def read_files_from(path: str) -> frozenset:
    """The relative paths an ``--files-from`` file lists (``-``: stdin), normalised as rsync does.

    Blank lines and lines starting with ``#`` or ``;`` are skipped; a leading
    ``/`` or ``./`` is dropped; ``..`` is refused (it would leave SRC).
    """
    import sys

    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_PATTERN_FILE + 1)
        else:
            with open(path, "rb") as fh:
                data = fh.read(MAX_PATTERN_FILE + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read --files-from: {exc.strerror}") from None
    if len(data) > MAX_PATTERN_FILE:
        raise UsageError(f"{path}: --files-from list is larger than {MAX_PATTERN_FILE >> 20} MiB")
    listed = set()
    for raw in os.fsdecode(data).split("\n"):
        line = raw.rstrip("\r")
        if not line.strip() or line[0] in "#;":
            continue
        parts = [p for p in line.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise UsageError(f"{path}: --files-from path {line!r} leaves SRC (..)")
        listed.add(os.sep.join(parts))  # "." is "": the root itself (its attributes; with -r, everything)
    return frozenset(listed)


def restrict(keep: Optional[Callable[[str, bool], bool]], src_root: str, markers: tuple = (),
             listed: Optional[frozenset] = None, recursive: bool = False) -> Optional[Callable[[str, bool], bool]]:
    """``keep`` narrowed by ``--exclude-if-present`` markers and a ``--files-from`` list.

    A directory holding one of ``markers`` (looked up in SRC, so both sides of a
    sync agree) is excluded. With ``listed``, only those paths, the directories
    on the way to them and (``recursive``) everything below a listed directory
    are kept.
    """
    if not markers and listed is None:
        return keep
    ancestors: frozenset = frozenset()
    if listed is not None:
        ancestors = frozenset(os.sep.join(p.split(os.sep)[:i]) for p in listed for i in range(1, p.count(os.sep) + 1))

    everything = recursive and listed is not None and "" in listed

    def narrowed(relpath: str, is_dir: bool) -> bool:
        if keep is not None and not keep(relpath, is_dir):
            return False
        if listed is not None and not everything and relpath not in listed and not (is_dir and relpath in ancestors):
            if not recursive:
                return False
            parent = relpath
            while os.sep in parent:
                parent = parent.rpartition(os.sep)[0]
                if parent in listed:
                    break
            else:
                return False
        if is_dir and markers:
            base = os.path.join(src_root, relpath)
            if any(os.path.lexists(os.path.join(base, marker)) for marker in markers):
                return False
        return True

    return narrowed
