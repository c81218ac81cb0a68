"""What hash and verify found: counts and typed differences."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

from ..errors import EXIT_DIFFERENCES, EXIT_OK, EXIT_PARTIAL

# Difference kinds
DIFFER = "differ"
MISSING = "missing"  # in SRC (or the manifest) but not in DST (or ROOT)
EXTRA = "extra"  # in DST but not in SRC
ERROR = "error"  # could not be checked
VANISHED = "vanished"  # hash: deleted while the tree was being hashed (not listed; a warning, not an error)

_COUNTED = {DIFFER: "differ", MISSING: "missing", EXTRA: "extra", ERROR: "errors", VANISHED: "vanished"}


class Difference(NamedTuple):
    kind: str
    path: str
    detail: str = ""


@dataclasses.dataclass
class IntegrityReport:
    """What ``hash`` or ``verify`` found; ``exit_code`` follows the shared contract."""

    files: int = 0  # files with an established digest (read, or taken from the cache)
    hashed: int = 0  # files actually read by a worker
    bytes_hashed: int = 0
    cache_hits: int = 0
    identical: int = 0
    differ: int = 0
    missing: int = 0
    extra: int = 0
    errors: int = 0
    vanished: int = 0
    seconds: float = 0.0
    workers_started: bool = False
    warnings: list = dataclasses.field(default_factory=list)
    differences: Optional[list] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.differ or self.missing or self.extra or self.errors)

    @property
    def exit_code(self) -> int:
        if self.differ or self.missing or self.extra:
            return EXIT_DIFFERENCES
        return EXIT_PARTIAL if self.errors else EXIT_OK

    def add(self, difference: Difference) -> None:
        name = _COUNTED[difference.kind]
        setattr(self, name, getattr(self, name) + 1)
        if self.differences is not None:
            self.differences.append(difference)

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in ("files", "hashed", "bytes_hashed", "cache_hits", "identical",
                                               "differ", "missing", "extra", "errors", "vanished", "warnings")}
        data["seconds"] = round(self.seconds, 6)
        if self.differences is not None:
            data["differences"] = [d._asdict() for d in self.differences]
        return data
