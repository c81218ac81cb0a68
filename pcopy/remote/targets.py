"""cp's rules for a remote run's SRCs, as ``transfer.sources`` has them for local ones:

    pcopy copy DIR host:DST           → DST holds DIR's contents (pcopy's rule, rsync's DIR/)
    pcopy copy FILE host:DIR          → DIR/FILE                 (DIR exists)
    pcopy copy FILE host:NEWNAME      → NEWNAME                  (its directory exists)
    pcopy copy A B C host:DIR         → DIR/A, DIR/B, DIR/C      (DIR made if missing; each a run of its own)

and the same for a pull (``host:FILE DST``, ``host:A host:B DST``). Several SRCs share one report,
one manifest (paths relative to DST) and the run's ssh sessions. Paths here are paths of the end
they name: on the other machine for a remote one.
"""

from __future__ import annotations

import posixpath
from typing import NamedTuple, Optional

from ..errors import PcopyError
from ..model.entries import make_entry


class Target(NamedTuple):
    src: str  # SRC root: the tree, or the directory holding the file
    dst: str  # DST root: where the tree's contents go, or the directory the file goes into
    single: Optional[tuple]  # (source name, DST name, SRC Entry named as in DST): one file, not a tree
    view: str = ""  # the manifest's prefix for this run (several SRCs: NAME)


def _kind(info: dict, label: str) -> str:
    if info["kind"] is None:
        raise PcopyError(f"{label}: cannot read source: No such file or directory")
    if info["kind"] == "error":
        raise PcopyError(f"{label}: cannot read source: {info['error']}")
    return info["kind"]


def _name(path: str, info: dict) -> str:
    name = posixpath.basename(path.rstrip("/"))
    return name if name not in ("", ".", "..") else posixpath.basename(info.get("real") or path)


def _single(path: str, info: dict, dst_dir: str, dst_name: str) -> Target:
    src_dir, src_name = posixpath.split(path.rstrip("/"))
    entry = make_entry((dst_name, *info["stat"][1:]))
    return Target(src_dir or ".", dst_dir, (src_name, dst_name, entry))


def resolve(sources: list, dst: str, src_end, dst_end, follow: bool, dry_run: bool) -> list:
    """The runs ``sources`` (paths on ``src_end``) into ``dst`` (on ``dst_end``) make; nothing is written
    but DST itself for several SRCs (unless ``dry_run``)."""
    infos = [src_end.info_at(path, follow) for path in sources]
    labels = [src_end.label_of(path) for path in sources]
    kinds = [_kind(info, label) for info, label in zip(infos, labels, strict=True)]
    there = dst_end.info_at(dst)
    if there["kind"] == "error":
        raise PcopyError(f"{dst_end.label_of(dst)}: cannot read destination: {there['error']}")
    if len(sources) == 1:
        if kinds[0] == "dir":
            return [Target(sources[0], dst, None)]
        if there["kind"] == "dir":
            return [_single(sources[0], infos[0], dst, _name(sources[0], infos[0]))]
        dst_dir, dst_name = posixpath.split(dst)
        if not dst_name:
            raise PcopyError(f"{dst_end.label_of(dst)}: destination directory does not exist")
        parent = dst_end.info_at(dst_dir or ".")
        if parent["kind"] != "dir":
            why = "No such file or directory" if parent["kind"] is None else "not a directory"
            raise PcopyError(f"{dst_end.label_of(dst_dir or '.')}: cannot read destination directory: {why}")
        return [_single(sources[0], infos[0], dst_dir or ".", dst_name)]
    if there["kind"] not in (None, "dir"):
        raise PcopyError(f"{dst_end.label_of(dst)}: several SRCs need a directory as DST, and it is not one")
    if there["kind"] is None and not dry_run:
        dst_end.make_root_at(dst)
    out = []
    for path, info, kind in zip(sources, infos, kinds, strict=True):
        name = _name(path, info)
        if kind == "dir":
            out.append(Target(path, posixpath.join(dst, name), None, name))
        else:
            out.append(_single(path, info, dst, name))
    return out
