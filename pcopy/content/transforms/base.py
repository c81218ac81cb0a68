"""The base class of transforms and the error a transform raises for one file."""

from __future__ import annotations

from typing import Optional

from ...errors import UsageError


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
