"""Argument types and actions shared by the command parsers."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..fs.filters import read_pattern_file


def _whole(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}" if minimum
                                         else f"must be 0 or more, not {value}")
    return value


def positive_int(text: str) -> int:
    return _whole(text, 1)


def count(text: str) -> int:
    return _whole(text, 0)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


class FilterAction(argparse.Action):
    """Keeps --exclude/--include/--exclude-from in command-line order, as gitignore lines."""

    def __call__(self, parser, namespace, value, option_string=None):
        lines = list(getattr(namespace, self.dest, None) or [])
        if option_string == "--include":
            lines.append("!" + value)
        elif option_string == "--exclude-from":
            try:
                lines.extend(read_pattern_file(value))
            except UsageError as exc:
                parser.error(str(exc))
        else:
            lines.append(value)
        setattr(namespace, self.dest, lines)
