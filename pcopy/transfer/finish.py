"""What a copy or sync does after the pool is drained: hard links, deletions, directory metadata.

Order matters: links need every first name in place; ``--delete`` runs only
after the copies succeeded (and is refused past ``--max-delete``); directory
modes and times come last, deepest first, because writing into a directory
changes its mtime.

Hard links (-H) keep the promise that a name is only ever linked to a file
written (or found unchanged) in this run from the same source inode: when the
first name of a group could not be written, the next name is copied instead
and the rest are linked to that one.
"""

from __future__ import annotations

import errno
import functools
import os
from typing import Optional

from ..errors import describe
from ..fs import beneath
from ..fs.temps import temp_name
from ..model.entries import COPY, DIR, FILE, Batch, Task, keep_parents, relpath_join
from ..model.results import DELETED, LINK_IN_PLACE, LINKED, SKIPPED, Result, failure
from . import dirmeta
from .plan import DELETING
from .run import ANCHOR_OK, Run, backups
from .worker import run_batch


def link_hardlinks(run: Run) -> None:
    """-H: link every other name to its group's first name (or to the next name that could be copied)."""
    options, consumer = run.options, run.consumer
    replaced: dict = {}  # a bad first name -> the name copied in its place (or None: none could be)
    for reldir, task in run.hardlinks:
        run.check()
        if run.pending_dirs:
            run.materialize(reldir)
        relpath = relpath_join(reldir, task.name)
        if options.dry_run:
            consumer.add(Result(relpath, LINKED, FILE, 0, None, task.why, "", task.source))
            continue
        source = task.source
        if source in run.bad_anchors:
            source = replaced.get(source)
            if source is None:  # copy this name; it becomes the group's first name
                result = run_batch(options, Batch(reldir, (Task(COPY, task.name, task.size, ">f+++++++++"),)))[0]
                consumer.add(result)
                if result.status in ANCHOR_OK:
                    replaced[task.source] = relpath
                continue
        consumer.add(make_hardlink(run, relpath, reldir, task, source))


def make_hardlink(run: Run, relpath: str, reldir: str, task, source: str) -> Result:
    """Give DST ``relpath`` the inode of DST ``source``, unless it already has it."""
    options = run.options
    parent, _, first = source.rpartition(os.sep)
    digest = None
    try:
        with run.dst_dirs.dir(parent) as from_fd, run.dst_dirs.dir(reldir) as to_fd:
            keep = (functools.partial(backups(options).keep, to_fd, options.dst, reldir, task.name)
                    if options.backup else None)
            if not beneath.link_unless_same(from_fd, first, to_fd, task.name, temp_name(options.token), keep):
                return Result(relpath, SKIPPED, FILE, 0, None, "", LINK_IN_PLACE)
            if options.manifest and options.hash != "none":
                from ..content import digest as digests

                digest = digests.digest_at(to_fd, task.name, digests.algo(options.hash)).digest
    except OSError as exc:
        return failure(relpath, FILE, f"hard link to {source}: {describe(exc)}")
    return Result(relpath, LINKED, FILE, 0, digest, task.why, "", source)


def delete_extraneous(run: Run) -> Optional[str]:
    """--delete, after the copies: returns a fatal message instead of deleting too much."""
    options, report, consumer = run.options, run.consumer.report, run.consumer
    if not run.deletions:
        return None
    count = sum(1 for _, kind in run.deletions if not kind.startswith("unreadable:"))
    if options.max_delete is not None and count > options.max_delete:
        return (f"{options.dst}: refusing to delete {count} entries "
                f"(more than --max-delete {options.max_delete}); nothing was deleted")
    if report.failed and not options.dry_run:
        report.warnings.append(f"{report.failed} failures: deletions skipped so nothing more is lost")
        return None
    kept: set = set()  # directories that must stay: something below them could not be deleted
    for relpath, kind in run.deletions:
        run.check()
        if kind.startswith("unreadable:"):
            consumer.add(failure(relpath, DIR, f"cannot delete: cannot read directory: {kind[11:]}"))
            keep_parents(relpath, kept, include_self=True)
            continue
        if kind == DIR and relpath in kept:
            continue
        if not options.dry_run:
            try:
                if options.backup and (kind != DIR or options.backup_dir is None):
                    run.dst_dirs.forget(relpath)
                    backups(options).move_out(options.dst, relpath)  # a directory: whole, or emptied below
                else:
                    beneath.remove_beneath(options.dst, relpath, kind == DIR, run.dst_dirs)
            except OSError as exc:
                if kind == DIR and exc.errno == errno.ENOTEMPTY and run.dst_keep is not None:
                    report.warnings.append(f"{relpath}: not deleted: it holds excluded files")
                else:
                    consumer.add(failure(relpath, kind, f"cannot delete: {describe(exc)}"), source=False)
                keep_parents(relpath, kept)
                continue
        consumer.add(Result(relpath, DELETED, kind, 0, None, DELETING))
    return None


def finish_dirs(run: Run, pool=None) -> None:
    """Give DST directories their source's mode, owner, attributes and times, after their contents
    (writing into a directory changes its mtime): by the pool's workers, depth level by depth level,
    deepest first (``dirmeta``); in this process when there are few or no pool is given."""
    options = run.options
    outcomes: list = []
    notes: list = []
    if pool is None or len(run.dirs) < dirmeta.IN_PARENT_BELOW:
        for level in dirmeta.levels(run.dirs, run.new_dirs):
            for chunk in level:
                done, said = dirmeta.apply_dirs(options, run.src_dirs, run.dst_dirs, chunk)
                outcomes += done
                notes += said
    else:
        work = functools.partial(dirmeta.run_dirs, options)
        for level in dirmeta.levels(run.dirs, run.new_dirs):
            for chunk, result, exc in pool.map_unordered(work, level, run.check):
                if exc is not None:  # the worker died or failed: the parent does this chunk itself
                    result = dirmeta.apply_dirs(options, run.src_dirs, run.dst_dirs, chunk)
                outcomes += result[0]
                notes += result[1]
    for outcome in outcomes:
        line = dirmeta.outcome_results(outcome, run.unreadable)
        if line is not None:
            run.consumer.add(line)
    for note in dict.fromkeys(notes):
        if note not in run.consumer.report.warnings:
            run.consumer.report.warnings.append(note)
