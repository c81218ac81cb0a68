"""Pure decisions: what to do with each source entry, given what DST holds.

Nothing here touches the disk, so every rule is testable with plain values.
Each decision carries an rsync-style itemized change string (``YXcstpoguax``,
as ``rsync -i`` prints it) saying what will change and why: ``>f+++++++++``
a new file, ``>f.st......`` a file whose size and time differ, ``cd+++++++++``
a new directory, ``hf`` a hard link, ``*deleting`` a deletion.
"""

from __future__ import annotations

import collections
import stat
from typing import NamedTuple, Optional

from ..content import transforms
from ..fs.probe import XATTR_NAMESPACES, mtimes_equal
from ..model.entries import (
    ATTRS,
    CHECKSUM,
    COPY,
    DIR,
    FILE,
    HARDLINK,
    HASH,
    LINK,
    LINKDEST,
    SPECIAL,
    SYMLINK,
    Entry,
    Task,
    kind_name,
    relpath_join,
)
from ..model.modes import apply_chmod
from ..model.results import (
    EXISTS_IN_DST,
    NEWER_IN_DST,
    NOT_IN_DST,
    SIZE_LIMIT,
    SKIPPED,
    SPECIAL_FILE,
    UNCHANGED,
    Result,
    failure,
)
from ..options import Options

NEW_DIR = "cd+++++++++"
NEW_FILE = ">f+++++++++"
NEW_LINK = "cL+++++++++"
DELETING = "*deleting  "


def wanted_attrs(options: Options, mode: int, uid: int, gid: int, is_dir: bool) -> tuple:
    """(mode, uid, gid) DST should have for a source entry: the source's, changed by --chmod/--chown."""
    if options.chmod:
        mode = (mode & ~0o7777) | apply_chmod(options.chmod, mode, is_dir)
    if options.chown != (-1, -1):
        uid = options.chown[0] if options.chown[0] >= 0 else uid
        gid = options.chown[1] if options.chown[1] >= 0 else gid
    return mode, uid, gid


def hardlink_names(first_names: dict, reldir: str, entries: list) -> tuple:
    """-H: ({name: first name's relpath} of names whose inode was seen before, {names that are first});
    ``first_names`` ((dev, ino) -> relpath) remembers the run's groups across directories."""
    names, firsts = {}, set()
    for e in entries:
        if e.kind == FILE and e.nlink > 1:
            relpath = relpath_join(reldir, e.name)
            first = first_names.setdefault((e.dev, e.ino), relpath)
            if first != relpath:
                names[e.name] = first
            else:
                firsts.add(e.name)
    return names, firsts


def _as_wanted(options: Options, entry: Entry) -> Entry:
    mode, uid, gid = wanted_attrs(options, entry.mode, entry.uid, entry.gid, entry.kind == DIR)
    return entry._replace(mode=mode, uid=uid, gid=gid)


class DirPlan(NamedTuple):
    tasks: list  # Task, for the workers
    results: list  # Result decided without any I/O (skips, conflicts)
    subdirs: list  # (Entry, why): each directory to create or enter below this one
    replace: list  # names whose DST entry is of another kind and must go first (sync)
    deletions: list  # DST Entries with no source counterpart (only with --delete)
    hardlinks: list  # Task(HARDLINK): names to link once their first name is copied
    unchanged: int = 0  # skipped as unchanged without a Result (when the caller wants only counts)
    prune: tuple = ()  # names of source directories not to enter (--existing: DST has none)


def is_unchanged(src: Entry, dst: Optional[Entry], window_ns: int = 0, size_only: bool = False) -> bool:
    """The quick check: same kind, size and modification time (to the ns, or within ``window_ns``)."""
    return (
        dst is not None
        and dst.kind == src.kind
        and dst.size == src.size
        and (size_only or dst.mtime_ns == src.mtime_ns
             or (window_ns != 0 and mtimes_equal(src.mtime_ns, dst.mtime_ns, window_ns)))
    )


def _skipped_by_rule(src: Entry, dst: Optional[Entry], options: Options, window_ns: int) -> str:
    """The reason rsync's selection options skip this entry, or ""."""
    if src.kind == FILE and src.size >= 0 and (0 <= options.max_size < src.size or src.size < options.min_size):
        return SIZE_LIMIT
    if options.existing and dst is None:
        return NOT_IN_DST
    if options.ignore_existing and dst is not None and src.kind != DIR:
        return EXISTS_IN_DST
    if (options.update and dst is not None and dst.kind == src.kind == FILE and dst.mtime_ns > src.mtime_ns
            and not mtimes_equal(src.mtime_ns, dst.mtime_ns, window_ns)):
        return NEWER_IN_DST
    return ""


def _owner_differs(src: Entry, dst: Entry) -> tuple:
    """(uid differs, gid differs), counting only ids both sides know."""
    return (src.uid >= 0 and dst.uid >= 0 and src.uid != dst.uid,
            src.gid >= 0 and dst.gid >= 0 and src.gid != dst.gid)


def itemize(src: Entry, dst: Optional[Entry], checksum_differs: bool = False, owner: bool = False) -> str:
    """rsync's ``-i`` code (``YXcstpoguax``) for a file or symlink update; ``owner``: compare uid/gid."""
    kind = "L" if src.kind != FILE else "f"
    update = ">" if src.kind == FILE else "c"
    if dst is None or dst.kind != src.kind:
        return f"{update}{kind}+++++++++"
    uid, gid = _owner_differs(src, dst) if owner else (False, False)
    return "".join((
        update, kind,
        "c" if checksum_differs else ".",
        "s" if dst.size != src.size else ".",
        "t" if dst.mtime_ns != src.mtime_ns else ".",
        "p" if src.kind == FILE and stat.S_IMODE(dst.mode) != stat.S_IMODE(src.mode) else ".",
        "o" if uid else ".",
        "g" if gid else ".",
        "...",
    ))


def attrs_item(src: Entry, dst: Entry, owner: bool, modes: bool = True, times: bool = False) -> str:
    """The ``.f..tpog...`` code when only attributes differ, or "" when nothing does.

    ``times``: the mtime counts too (--size-only: like rsync, a skipped file gets SRC's mtime, so
    that a later run without --size-only skips it as well).
    """
    mode = modes and src.kind == FILE and stat.S_IMODE(dst.mode) != stat.S_IMODE(src.mode)
    uid, gid = _owner_differs(src, dst) if owner else (False, False)
    mtime = times and src.mtime_ns != dst.mtime_ns
    if not (mode or uid or gid or mtime):
        return ""
    kind = "L" if src.kind == SYMLINK else "f"
    return f".{kind}..{'t' if mtime else '.'}{'p' if mode else '.'}{'o' if uid else '.'}{'g' if gid else '.'}..."


def special_reason(mode: int) -> str:
    kind = kind_name(mode)
    return "special file not copied" if kind == "special file" else f"special file not copied: {kind}"


def _same_for_link_dest(src: Entry, old: Optional[Entry], owner: bool) -> bool:
    return (old is not None and old.kind == FILE and old.size == src.size
            and old.mtime_ns == src.mtime_ns and stat.S_IMODE(old.mode) == stat.S_IMODE(src.mode)
            and not (owner and any(_owner_differs(src, old))))


def plan_directory(reldir: str, src_entries: list, dst_entries: Optional[dict], options: Options,
                   link_dest: tuple = (), first_names: Optional[dict] = None,
                   unchanged_results: bool = True) -> DirPlan:
    """Decide the fate of every entry of one source directory.

    ``dst_entries``: name → Entry already in DST (filtered like the source).
    ``link_dest``: (root, {name: Entry}) for each --link-dest directory.
    ``first_names``: name → relpath of the first-seen name of the same inode (-H).
    ``unchanged_results=False``: count unchanged entries instead of making a
    Result for each (a no-op sync of a big tree then builds almost nothing).
    """
    window = max(options.modify_window_ns, 0)
    selective = (options.existing or options.ignore_existing or options.update or options.min_size >= 0
                 or options.max_size >= 0)
    if options.chmod or options.chown != (-1, -1):
        src_entries = [_as_wanted(options, e) for e in src_entries]
    if not dst_entries and not first_names and not link_dest and options.transform is None and not selective:
        return _plan_into_empty(reldir, src_entries)
    unchanged = 0
    prune: list = []
    tasks: list = []
    results: list = []
    subdirs: list = []
    replace: list = []
    hardlinks: list = []
    dst_entries = dst_entries or {}
    first_names = first_names or {}
    owner = options.owner
    transform = transforms.for_options(options)
    outputs = output_names(src_entries, transform) if transform is not None else None
    taken = collections.Counter(outputs.values()) if outputs is not None else None
    # An unchanged file needs no further thought: the common case of a sync, checked first and cheaply.
    quick = not (options.force or options.checksum or options.manifest or unchanged_results
                 or outputs is not None or window or options.size_only or selective or not options.dst_modes)
    # Attributes (xattrs, ACLs) are compared only where SRC changed after DST was written (its ctime is
    # newer): listing them for every file would double a no-op sync, and such a change moves ctime.
    unstored = options.dst_unstored
    attrs_check = (options.xattrs and not XATTR_NAMESPACES <= unstored) or (options.acls and "acl" not in unstored)
    get = dst_entries.get
    for src in src_entries:
        dst = get(src[0])
        if (quick and dst is not None and src[1:4] == dst[1:4] and src[1] != DIR
                and (src[5] & 0o7777) == (dst[5] & 0o7777) and src[0] not in first_names
                and (not owner or src[9:11] == dst[9:11]) and not (attrs_check and src[11] > dst[11])):
            unchanged += 1  # same kind, size, mtime, permissions (and owner, as root)
            continue
        relpath = relpath_join(reldir, src.name)
        if selective:
            reason = _skipped_by_rule(src, dst, options, window)
            if reason:
                if src.kind == DIR:
                    prune.append(src.name)
                elif unchanged_results:
                    results.append(Result(relpath, SKIPPED, src.kind, max(src.size, 0), None, "", reason))
                else:
                    unchanged += 1
                continue
        if src.kind == SPECIAL:
            results.append(Result(relpath, SKIPPED, SPECIAL, 0, None, "", SPECIAL_FILE, special_reason(src.mode)))
            continue
        if outputs is not None and src.kind == FILE and outputs[src.name] != src.name:
            plan_transformed(relpath, src, outputs[src.name], taken or collections.Counter(), dst_entries, tasks,
                             results)
            continue
        if dst is not None and (dst.kind == DIR) != (src.kind == DIR):
            if not options.replace:
                what = "non-directory with directory" if src.kind == DIR else "directory with non-directory"
                results.append(failure(relpath, src.kind, f"cannot overwrite {what} (use sync to replace it)"))
                continue
            replace.append(src.name)
            dst = None
        if src.kind == DIR:
            subdirs.append((src, NEW_DIR if dst is None else ""))
            continue
        if src.name in first_names:
            hardlinks.append(Task(HARDLINK, src.name, src.size, "hf+++++++++", first_names[src.name]))
            continue
        if (not options.force and dst is not None and is_unchanged(src, dst, window, options.size_only)
                and not (options.checksum and src.kind == FILE)):
            item = attrs_item(src, dst, owner, options.dst_modes, options.size_only
                              and not (window and mtimes_equal(src.mtime_ns, dst.mtime_ns, window)))
            if item or (attrs_check and src.ctime_ns > dst.ctime_ns and src.kind in (FILE, SYMLINK)):
                tasks.append(Task(ATTRS, src.name, src.size, item or ("." + ("L" if src.kind == SYMLINK else "f")
                                                                      + "." * 9)))
            elif options.manifest and src.kind == FILE:
                tasks.append(Task(HASH, src.name, src.size))
            elif unchanged_results:
                results.append(Result(relpath, SKIPPED, src.kind, src.size, None, "", UNCHANGED))
            else:
                unchanged += 1
            continue
        if (options.checksum and not options.force and src.kind == FILE and dst is not None
                and dst.kind == FILE and dst.size == src.size):
            tasks.append(Task(CHECKSUM, src.name, src.size, itemize(src, dst, True, owner)))
            continue
        if src.kind == FILE:
            old_root = next((root for root, old in link_dest
                             if _same_for_link_dest(src, old.get(src.name), owner)), None)
            if old_root is not None:
                tasks.append(Task(LINKDEST, src.name, src.size, "hf+++++++++", old_root))
                continue
        tasks.append(Task(COPY if src.kind == FILE else LINK, src.name, src.size, itemize(src, dst, False, owner)))
    deletions = []
    if options.delete and dst_entries:
        src_names = {e.name for e in src_entries}
        if outputs is not None:
            src_names.update(name for name in outputs.values() if name)  # a transform's outputs are expected
        deletions = [d for name, d in dst_entries.items() if name not in src_names]
    return DirPlan(tasks, results, subdirs, replace, deletions, hardlinks, unchanged, tuple(prune))


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
    xattr, so that check is the worker's (``transfer.transformed``);
    here only conflicts are decided.
    """
    if out is None:
        results.append(failure(relpath, FILE, "transform: cannot compute the output name"))
        return
    if taken[out] > 1:
        results.append(failure(relpath, FILE, f"transform: output name {out!r} is also the output of another entry"))
        return
    dst = dst_entries.get(out) if dst_entries else None
    if dst is not None and dst.kind == DIR:
        results.append(failure(relpath, FILE, f"transform: cannot overwrite directory {out!r} with a file"))
        return
    tasks.append(Task(COPY, src.name, src.size))


def _plan_into_empty(reldir: str, src_entries: list) -> DirPlan:
    """The common case of a first copy: DST has nothing here, so every entry is new (no comparisons)."""
    tasks, results, subdirs = [], [], []
    for src in src_entries:
        kind = src.kind
        if kind == FILE:
            tasks.append(Task(COPY, src.name, src.size, NEW_FILE))
        elif kind == DIR:
            subdirs.append((src, NEW_DIR))
        elif kind == SYMLINK:
            tasks.append(Task(LINK, src.name, src.size, NEW_LINK))
        else:
            results.append(Result(relpath_join(reldir, src.name), SKIPPED, SPECIAL, 0, None, "", SPECIAL_FILE,
                                  special_reason(src.mode)))
    return DirPlan(tasks, results, subdirs, [], [], [])
