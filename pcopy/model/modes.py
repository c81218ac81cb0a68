"""rsync's ``--chmod`` rules: parsed once, applied to each file's or directory's mode (pure).

A spec is a comma-separated list of chmod(1)-style changes, each optionally
prefixed by ``D`` (directories only) or ``F`` (files only): ``D755,F644``,
``Dg+s,ug+w,Fo-w,+X``. ``X`` sets execute only for directories and files
that have an execute bit already, as chmod does.
"""

from __future__ import annotations

import re
import stat
from typing import NamedTuple

_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007, "a": 0o7777}
_SYMBOLIC = re.compile(r"^([ugoa]*)([-+=])([rwxXst]*)$")


class ModeRule(NamedTuple):
    applies_to: str  # "D", "F" or "" (both)
    octal: int  # -1 when symbolic
    who: str
    op: str
    perms: str


def parse_chmod(spec: str) -> tuple:
    """Rules of a ``--chmod`` spec; ValueError naming the part that makes no sense."""
    rules = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        applies_to = ""
        if part[0] in "DF":
            applies_to, part = part[0], part[1:]
        if re.fullmatch(r"[0-7]{1,4}", part):
            rules.append(ModeRule(applies_to, int(part, 8), "", "", ""))
            continue
        match = _SYMBOLIC.match(part)
        if match is None:
            raise ValueError(f"{part!r} is not a chmod change (like u+rw, go-w, D755 or F644)")
        who, op, perms = match.groups()
        rules.append(ModeRule(applies_to, -1, who, op, perms))
    if not rules:
        raise ValueError("empty --chmod")
    return tuple(rules)


def _bits(who: str, perms: str, mode: int, is_dir: bool) -> int:
    mask = 0
    for w in who or "a":
        mask |= _WHO[w]
    bits = 0
    for p in perms:
        if p == "r":
            bits |= 0o444
        elif p == "w":
            bits |= 0o222
        elif p == "x" or (p == "X" and (is_dir or mode & 0o111)):
            bits |= 0o111
        elif p == "s":
            bits |= stat.S_ISUID | stat.S_ISGID
        elif p == "t":
            bits |= stat.S_ISVTX
    return bits & mask


def apply_chmod(rules: tuple, mode: int, is_dir: bool) -> int:
    """The permission bits after the rules (only the rules for this kind apply)."""
    perms = stat.S_IMODE(mode)
    for rule in rules:
        if rule.applies_to and rule.applies_to != ("D" if is_dir else "F"):
            continue
        if rule.octal >= 0:
            perms = rule.octal
            continue
        bits = _bits(rule.who, rule.perms, perms, is_dir)
        if rule.op == "+":
            perms |= bits
        elif rule.op == "-":
            perms &= ~bits
        else:  # "=": the named classes get exactly these bits
            cleared = 0
            for w in rule.who or "a":
                cleared |= _WHO[w]
            perms = (perms & ~cleared) | bits
    return perms
