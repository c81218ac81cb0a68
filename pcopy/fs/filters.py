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
