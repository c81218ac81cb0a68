"""Include/exclude filters with gitignore semantics.

Patterns are applied in command-line order and the last matching one wins,
as in a ``.gitignore``: ``--exclude PAT`` adds ``PAT``, ``--include PAT``
adds ``!PAT`` (re-include), and ``--exclude-from FILE`` adds FILE's lines.
Paths are matched relative to the tree root with ``/`` separators; a
directory is matched with a trailing ``/`` so ``build/`` patterns work. An
excluded directory is not entered, so (as in git) nothing below it can be
re-included.

The gitignore dialect (anchoring, ``**``, negation, escapes) is subtle, so we
use the well-kept ``pathspec`` library rather than a home-grown matcher.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Optional

from .errors import UsageError


def read_pattern_file(path: str) -> list:
    """Lines of an --exclude-from file (comments and blanks are handled by the matcher)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return [line.rstrip("\n") for line in fh]
    except OSError as exc:
        raise UsageError(f"{path}: cannot read pattern file: {exc.strerror}") from None


def make_filter(lines: Iterable[str]) -> Optional[Callable[[str, bool], bool]]:
    """A predicate ``keep(relpath, is_dir)``, or None when there are no patterns."""
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return None
    import pathspec  # only when filters are used

    try:
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
    except Exception as exc:  # pathspec raises various errors for bad patterns
        raise UsageError(f"bad filter pattern: {exc}") from None
    match = spec.match_file
    sep = os.sep

    def keep(relpath: str, is_dir: bool) -> bool:
        path = relpath.replace(sep, "/") if sep != "/" else relpath
        return not match(path + "/" if is_dir else path)

    return keep
