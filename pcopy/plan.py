"""Pure decisions: what to do with each source entry, given what DST holds.

Nothing here touches the disk, so every rule is testable with plain values.
"""

from __future__ import annotations

import collections
import stat
from typing import Iterator, NamedTuple, Optional

from . import transforms
from .model import (
    COPY,
    DIR,
    FAILED,
    FILE,
    HASH,
    LINK,
    SKIPPED,
    SPECIAL,
    Batch,
    Entry,
    Options,
    Result,
    Task,
    relpath_join,
)


class DirPlan(NamedTuple):
    tasks: list  # Task, for the workers
    results: list  # Result decided without any I/O (skips, conflicts)
    subdirs: list  # Entry of each directory to create below this one


def is_unchanged(src: Entry, dst: Optional[Entry]) -> bool:
    """The quick check: same kind, size and modification time (to the ns)."""
    return (
        dst is not None
        and dst.kind == src.kind
        and dst.size == src.size
        and dst.mtime_ns == src.mtime_ns
    )


def special_reason(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "special file not copied: FIFO"
    if stat.S_ISSOCK(mode):
        return "special file not copied: socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "special file not copied: device"
    return "special file not copied"


def plan_directory(reldir: str, src_entries: list, dst_entries: dict, options: Options) -> DirPlan:
    """Decide the fate of every entry of one source directory."""
    tasks, results, subdirs = [], [], []
    transform = transforms.for_options(options)
    outputs = output_names(src_entries, transform) if transform is not None else None
    taken = collections.Counter(outputs.values()) if outputs is not None else None
    for src in src_entries:
        dst = dst_entries.get(src.name) if dst_entries else None
        relpath = relpath_join(reldir, src.name)
        if src.kind == DIR:
            if dst is not None and dst.kind != DIR:
                results.append(Result(relpath, FAILED, DIR, 0, None,
                                      f"cannot overwrite non-directory ({dst.kind}) with directory"))
            else:
                subdirs.append(src)
        elif src.kind == SPECIAL:
            results.append(Result(relpath, SKIPPED, SPECIAL, 0, None, special_reason(src.mode)))
        elif outputs is not None and src.kind == FILE and outputs[src.name] != src.name:
            plan_transformed(relpath, src, outputs[src.name], taken, dst_entries, tasks, results)
        elif dst is not None and dst.kind == DIR:
            results.append(Result(relpath, FAILED, src.kind, 0, None,
                                  f"cannot overwrite directory with non-directory ({src.kind})"))
        elif not options.force and is_unchanged(src, dst):
            if options.manifest and src.kind == FILE:
                tasks.append(Task(HASH, src.name, src.size))
            else:
                results.append(Result(relpath, SKIPPED, src.kind, src.size, None, "unchanged"))
        else:
            tasks.append(Task(COPY if src.kind == FILE else LINK, src.name, src.size))
    return DirPlan(tasks, results, subdirs)


def output_names(src_entries: list, transform) -> dict:
    """{source name: output name} for one directory under a transform.

    Files the transform does not apply to, and non-files, keep their name; a
    failing ``output_name`` maps to None (the file then fails alone).
    """
    names = {}
    for entry in src_entries:
        name = entry.name
        if entry.kind == FILE:
            try:
                if transform.applies(name):
                    name = transform.output_name(name)
            except Exception:
                name = None
        names[entry.name] = name
    return names


def plan_transformed(relpath: str, src: Entry, out: Optional[str], taken: collections.Counter,
                     dst_entries: dict, tasks: list, results: list) -> None:
    """Plan a file whose output gets another name, ``out`` (``taken``: outputs per name).

    Whether the output is up to date needs the source size recorded in its
    xattr, so that check is the worker's (``fsops._BatchCopier.transform_file``);
    here only conflicts are decided.
    """
    if out is None:
        results.append(Result(relpath, FAILED, FILE, 0, None, "transform: cannot compute the output name"))
        return
    if taken[out] > 1:
        results.append(Result(relpath, FAILED, FILE, 0, None,
                              f"transform: output name {out!r} is also the output of another entry"))
        return
    dst = dst_entries.get(out) if dst_entries else None
    if dst is not None and dst.kind == DIR:
        results.append(Result(relpath, FAILED, FILE, 0, None,
                              f"transform: cannot overwrite directory {out!r} with a file"))
        return
    tasks.append(Task(COPY, src.name, src.size))


def batches(reldir: str, tasks: list, max_files: int, max_bytes: int) -> Iterator[Batch]:
    """Group a directory's tasks so small files share a batch and big ones go alone."""
    group, group_bytes = [], 0
    for task in tasks:
        size = max(task.size, 0)  # UNKNOWN sizes batch by count; the worker defers big ones
        if group and (len(group) >= max_files or group_bytes + size > max_bytes):
            yield Batch(reldir, tuple(group))
            group, group_bytes = [], 0
        group.append(task)
        group_bytes += size
    if group:
        yield Batch(reldir, tuple(group))

