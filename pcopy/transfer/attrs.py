"""The copy worker's side of xattrs, ACLs and capabilities (``content.metadata`` does the calls).

One ``AttrCopier`` per batch knows the run's policy, whether the DST
directory has a default ACL (then no file is "born right": the ACL, not the
umask, masked its mode), and which attribute namespaces the destination was
found not to store, so each is tried once per worker and run, and reported
once per run (the consumer turns the notes into one warning).
"""

from __future__ import annotations

from typing import Optional

from ..content import metadata
from ..content.metadata import At, Attrs, Policy
from ..errors import describe

_unsupported: dict = {}  # run token -> namespaces this worker found unsupported at DST


class AttrCopier:
    """``unstored``: namespaces the engine's probe found DST does not store; they are neither
    compared nor written, and a source entry that has some gets the run's one warning."""

    def __init__(self, xattrs: bool, acls: bool, token: str, dst_fd: int, unstored: frozenset = frozenset()) -> None:
        self.policy = Policy.for_run(xattrs, acls)
        self.active = self.policy.active
        self.token = token
        self.unstored = unstored
        if len(_unsupported) > 16:
            _unsupported.clear()
        self.skip: set = _unsupported.setdefault(token, set())
        self.default_acl = self.active and metadata.has_default_acl(dst_fd)
        self.notes: list = []  # one-line warnings for the run (deduplicated by the consumer)

    def read(self, target) -> Attrs:
        """The source's attributes under the policy ({} when there is nothing to copy)."""
        if not self.active:
            return {}
        try:
            return metadata.read(target, self.policy)
        except OSError as exc:
            self.notes.append(f"cannot read extended attributes: {describe(exc)}")
            return {}

    def apply(self, target, attrs: Attrs, existing: Optional[Attrs] = None, fresh: bool = False) -> bool:
        """Give ``target`` exactly ``attrs``; True when something changed.

        ``fresh``: a file just created (nothing to remove unless a default ACL was inherited).
        """
        if not self.active or (not attrs and fresh and not self.default_acl):
            return False
        if fresh and existing is None and not self.default_acl:
            existing = {}
        if self.unstored:
            lost = {metadata.namespace(n) for n in attrs if n not in metadata.BEST_EFFORT} & self.unstored
            for space in lost - self.skip:
                self.skip.add(space)
                self.notes.append(metadata.unsupported_warning(space))
        outcome = metadata.apply(target, attrs, existing, policy=self.policy, skip=frozenset(self.skip | self.unstored))
        for space in outcome.unsupported - self.skip:
            self.skip.add(space)
            self.notes.append(metadata.unsupported_warning(space))
        for _name, reason in outcome.failed:
            self.notes.append(reason)
        return outcome.changed

    def compare(self, src: At, dst: At) -> tuple:
        """(xattrs differ, ACLs differ, source attrs, DST attrs) of two entries (sync's check)."""
        wanted, have = self.read(src), self.read(dst)
        x, a = self.differs(wanted, have)
        return x, a, wanted, have

    def differs(self, wanted: Attrs, have: Attrs) -> tuple:
        """(xattrs differ, ACLs differ); what DST cannot store is no difference (else every sync to
        FAT would "update" it)."""
        skip = self.skip | self.unstored
        if skip:
            wanted, have = ({n: v for n, v in attrs.items() if metadata.namespace(n) not in skip}
                            for attrs in (wanted, have))
        return metadata.differs(wanted, have)
