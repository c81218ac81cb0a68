"""``pcopy copy|sync SRC [user@]host:DST`` (push) and ``[user@]host:SRC DST`` (pull): check what
the run asks for, open the control session (it shakes hands before anything is read or written;
the other sessions open as the streams need them), check SRC and DST, then hand over to ``flow``.
"""

from __future__ import annotations

import os
import posixpath
import threading
from typing import Callable, NamedTuple, Optional, Union

from .. import options as _options
from ..content.manifest import ManifestWriter
from ..errors import PcopyError, UsageError
from ..fs import filters
from ..model.results import Report
from ..options import Options
from ..runtime.progress import Counters
from ..transfer import engine
from . import targets, transport
from .flow import Flow
from .receive import receiver_options
from .sides import Local, Remote

MAX_DEFAULT_STREAMS = 4  # streams (ssh sessions, control included) moving data by default: one per CPU, at most 4
NOT_YET = ("transform", "track_renames")
WATCH_NOT_YET = ("link_dest", "manifest", "partial", "backup", "files_from", "one_file_system", "prune_empty_dirs",
                 "exclude_if_present")  # what copy/sync do over SSH (``run``) and a remote watch does not yet
OPTION_NAMES = {"link_dest": "--link-dest", "manifest": "--manifest", "transform": "--transform",
                "partial": "--partial", "backup": "--backup", "files_from": "--files-from",
                "one_file_system": "-x", "prune_empty_dirs": "-m", "chmod": "--chmod", "chown": "--chown",
                "exclude_if_present": "--exclude-if-present", "sparse": "--sparse",
                "track_renames": "--track-renames"}


def not_yet(arg: str, what: str) -> UsageError:
    """The one line for what remote runs do not do yet (the same words as for no remote support at all)."""
    return UsageError(f"{arg}: remote paths (host:path) are not supported yet with {what}")


def is_remote(path) -> bool:
    return isinstance(path, str) and transport.parse(path) is not None


def run(sources: list, dst: str, fields: dict, *, counters: Optional[Counters] = None, keep_results: bool = False,
        on_result=None, stop_event: Optional[threading.Event] = None, scheduler=None, rsh: Optional[str] = None,
        remote_pcopy: Optional[str] = None, compress: bool = False) -> Report:
    """A copy or sync with one remote end (``fields``: api keyword arguments): one SRC or several, each a
    directory or a file (``targets``), over one set of ssh sessions."""
    specs = [transport.parse(s) for s in sources]
    dst_spec = transport.parse(dst)
    if dst_spec is not None and any(specs):
        raise UsageError(f"{dst}: SRC and DST are both remote (host:path); one of them must be local")
    push = dst_spec is not None
    if not push:
        stray = next((s for s, sp in zip(sources, specs, strict=True) if sp is None), None)
        if stray is not None:
            raise UsageError(f"{stray}: a local SRC beside a remote one; the SRCs must all be on one machine")
        other = next((s for s, sp in zip(sources, specs, strict=True) if sp[:2] != specs[0][:2]), None)  # type: ignore[index]
        if other is not None:
            raise UsageError(f"{other}: SRCs on different hosts; the SRCs must all be on one machine")
    spec = dst_spec or specs[0]
    assert spec is not None
    arg = dst if push else sources[0]
    if scheduler is not None:
        raise not_yet(arg, "--scheduler")
    paths = list(sources) if push else [sp.path for sp in specs]  # type: ignore[union-attr]
    dst_path = dst_spec.path if dst_spec is not None else dst
    options = _options.build(paths[0], dst_path, **fields)
    for name in NOT_YET:
        default = Options._field_defaults[name]
        if getattr(options, name) != default:
            raise not_yet(arg, OPTION_NAMES[name])
    if push and options.link_dest:  # paths on the DST host, relative to DST there (as rsync's)
        options = options._replace(link_dest=dst_roots(spec.path, fields.get("link_dest") or ()))
    if push and fields.get("backup_dir") is not None:  # the same for --backup-dir
        options = options._replace(backup_dir=dst_roots(spec.path, (fields["backup_dir"],))[0])
    if not push:  # (a trailing / says DST must be a directory)
        dst_path = os.path.abspath(dst_path) + ("/" if dst_path.endswith("/") and dst_path != "/" else "")
    streams = options.jobs or min(MAX_DEFAULT_STREAMS, os.cpu_count() or 1)
    listed = filters.read_files_from(options.files_from) if options.files_from else None  # a local list
    dst_filter: Optional[dict] = {"filters": list(options.filters)} if options.filters or listed is not None else None
    if listed is not None:  # --files-from: paths relative to SRC, the DST end protects the same paths
        dst_filter = dict(dst_filter or {}, listed=sorted(listed), recursive=options.recursive)
    src_filter = dict(dst_filter or {}, markers=list(options.exclude_if_present)) if options.exclude_if_present \
        else dst_filter
    options = options._replace(token=os.urandom(4).hex())
    # one session to start with: control, which also streams the remote walk (``pcopy serve`` walks
    # in a thread) and carries the first data stream; the other streams' sessions start when
    # batches wait for them (streams.Streams): -j N is N streams over N sessions
    sessions = _open(spec, rsh, remote_pcopy)
    control = sessions.conns[0]

    def end(root: str, remote: bool, src: bool = False) -> Union[Local, Remote]:
        """One end at ``root``; SRC's filter also leaves out directories holding a marker (on SRC)."""
        spec_of = src_filter if src else dst_filter
        if remote:
            return Remote(root, f"{spec.login}:{root}", spec_of, control, lambda: control)
        return Local(root, root, spec_of)

    manifest = None
    try:
        dst_end = end(dst_path, push)
        found = targets.resolve(paths, dst_path, end("", not push), dst_end, options.follow_symlinks,
                                options.dry_run)
        for root in options.link_dest:
            if dst_end.info_at(root)["kind"] != "dir":
                raise PcopyError(f"{dst_end.label_of(root)}: --link-dest directory does not exist")
        if options.manifest is not None:
            there = dst_end.info_at(dst_path)["kind"]
            engine.check_manifest_path(options, there is None, "" if push else os.path.realpath(dst_path))

        def attach(flow: Flow, view: str) -> None:
            """The manifest (a local file, written as locally: fs.outputs), opened once DST exists."""
            nonlocal manifest
            if options.manifest is None:
                return
            if manifest is None:
                manifest = ManifestWriter.to_path(options.manifest, options.token)
            flow.consumer.manifest = manifest.below(view) if view else manifest
            if not push:
                flow.hidden = engine.hidden_manifest(flow.options, manifest)
        backup = {"dir": options.backup_dir, "suffix": options.suffix, "token": options.token} \
            if options.backup else None
        more = {"manifest": options.manifest is not None, "partial": options.partial, "backup": backup}
        several = len(found) > 1
        total = Report(results=[] if keep_results else None, dry_run=options.dry_run)
        counters = counters or Counters()
        if several:
            counters.start()
        try:
            for target in found:
                sub = options._replace(src=target.src, dst=target.dst)
                dst_side = end(target.dst, push)
                dst_side.backup = backup
                flow = Flow(sub, end(target.src, not push, True), dst_side, push, counters,
                            on_result, keep_results, stop_event, single=target.single)
                flow.alone, flow.drain_walk = not several, several
                flow.root_meta = listed is None or "" in listed  # as locally: DST's root left as it is
                report = _run_flow(flow, sessions, control, streams, more, compress,
                                   lambda f, v=target.view: attach(f, v))
                if not several:
                    manifest = None  # the flow closed it (before directory times: it may live in DST)
                    return report
                total.merge(report)
                total.failures.extend(report.failures)
                total.seconds += report.seconds
                if total.results is not None and report.results is not None:
                    total.results.extend(report.results)
                if report.stopped_early:  # a full DST: the other SRCs are not attempted
                    break
        finally:
            if several:
                counters.close()
        if manifest is not None:
            manifest.close()
            manifest = None
        return total
    finally:
        if manifest is not None:
            manifest.discard()
        sessions.close()


def _run_flow(flow: Flow, sessions: transport.Sessions, control: transport.Connection, streams: int, more: dict,
              compress: bool, attach: Callable) -> Report:
    """One SRC's run: its DST root made when missing, the options fitted to what DST stores, the
    manifest attached, then the flow; a stop kills every session."""
    dst = flow.dst
    dst_is_new = preflight(flow.src, dst, flow.options) if flow.single is None else False
    if dst_is_new and not flow.options.dry_run:
        dst.make_root()
    options = flow.options = fit(dst, flow.options)
    token = options.token
    recv = dict(receiver_spec(options, streams), **more)
    attach(flow)
    local_options = None if flow.push else receiver_options(dst.root, token, recv)
    try:
        return flow.run(sessions, streams, token, recv, local_options, dst_is_new, compress, control)
    except BaseException:
        sessions.kill()  # at once: a session streaming the walk would not see its stdin close
        _cleanup(dst, flow.touched, token)
        raise


def dst_roots(dst_path: str, roots) -> tuple:
    """--link-dest DIRs named for a remote DST: paths there, a relative one relative to DST."""
    return tuple(posixpath.normpath(posixpath.join(dst_path, os.fspath(d))) for d in roots)


class Setting(NamedTuple):
    """What a remote run was asked for, checked before any session is opened."""

    options: Options  # with the remote end's path as its SRC or DST
    spec: transport.Spec
    push: bool  # SRC is here, DST there
    arg: str  # the host:path argument, for the one-line refusals
    streams: int  # streams: sessions in total, control included (-j)
    filter_spec: Optional[dict]


def settle(src: str, dst: str, fields: dict, scheduler=None) -> Setting:
    """The options of a watch with one remote end (``fields``: api keyword arguments); refuses what
    remote watches do not do (yet) with one line (WATCH_NOT_YET: copy/sync's ``run`` does more)."""
    src_spec, dst_spec = transport.parse(src), transport.parse(dst)
    if src_spec is not None and dst_spec is not None:
        raise UsageError(f"{dst}: SRC and DST are both remote (host:path); one of them must be local")
    spec = src_spec or dst_spec
    assert spec is not None
    arg = src if src_spec is not None else dst
    if scheduler is not None:
        raise not_yet(arg, "--scheduler")
    options = _options.build(src_spec.path if src_spec else src, dst_spec.path if dst_spec else dst, **fields)
    for name in NOT_YET + WATCH_NOT_YET:
        default = Options._field_defaults[name]
        if getattr(options, name) != default:
            raise not_yet(arg, OPTION_NAMES[name])
    streams = options.jobs or min(MAX_DEFAULT_STREAMS, os.cpu_count() or 1)
    filter_spec = {"filters": list(options.filters)} if options.filters else None
    options = options._replace(token=os.urandom(4).hex())
    return Setting(options, spec, dst_spec is not None, arg, streams, filter_spec)


def receiver_spec(options: Options, streams: int) -> dict:
    """What each receiver is told about writing (``receive.receiver_options``): plain values only."""
    return {"owner": options.owner, "fsync": options.fsync, "bwlimit": options.bwlimit, "streams": streams,
            "xattrs": options.xattrs, "acls": options.acls, "sparse": options.sparse,
            "chmod": [list(rule) for rule in options.chmod], "chown": list(options.chown),
            "modes": options.dst_modes, "unstored": sorted(options.dst_unstored)}


def connect(setting: Setting, rsh: Optional[str], remote_pcopy: Optional[str]) -> transport.Sessions:
    """The run's sessions with the control session open (the others open as the streams need them)."""
    return _open(setting.spec, rsh, remote_pcopy)


def _open(spec: transport.Spec, rsh: Optional[str], remote_pcopy: Optional[str]) -> transport.Sessions:
    sessions = transport.Sessions(spec, rsh, remote_pcopy)
    try:
        sessions.open()  # the control session: its one-line error is what the user sees
    except BaseException:
        sessions.kill()
        raise
    return sessions


def ends(setting: Setting, sessions: transport.Sessions) -> tuple:
    """(SRC end, DST end, control session) over the sessions ``connect`` opened; the remote end walks
    on the control session too."""
    push, options, spec, filter_spec = setting.push, setting.options, setting.spec, setting.filter_spec
    control = sessions.conns[0]

    def open_walker() -> transport.Connection:
        return control

    src_side: Union[Local, Remote]
    dst_side: Union[Local, Remote]
    if push:
        src_side = Local(options.src, options.src, filter_spec)
        dst_side = Remote(spec.path, str(spec), filter_spec, control, open_walker)
    else:
        src_side = Remote(spec.path, str(spec), filter_spec, control, open_walker)
        dst_side = Local(options.dst, options.dst, filter_spec)
    return src_side, dst_side, control


def fit_fields(path: str, token: str, window_ns: int, owner: bool, dry_run: bool) -> dict:
    """What DST's file system stores (``transfer.engine.fit_to_destination``'s probe), run on the
    machine that holds DST: 2-second times, no modes, no xattrs on FAT."""
    from ..transfer.engine import fit_to_destination

    fitted = fit_to_destination(Options(src="", dst=path, token=token, modify_window_ns=window_ns, owner=owner,
                                         dry_run=dry_run))
    return {"window": fitted.modify_window_ns, "modes": fitted.dst_modes, "owner": fitted.owner,
            "unstored": sorted(fitted.dst_unstored)}


def fit(dst, options: Options) -> Options:
    """The run's options fitted to what the DST end stores (as a local run's, see ``fit_fields``)."""
    if isinstance(dst, Local):
        fields = fit_fields(dst.root, options.token, options.modify_window_ns, options.owner, options.dry_run)
    else:
        fields = dst.control.call({"op": "fit", "path": dst.root, "token": options.token,
                                   "window": options.modify_window_ns, "owner": options.owner,
                                   "dry": options.dry_run})
    return options._replace(modify_window_ns=max(int(fields["window"]), 0), dst_modes=bool(fields["modes"]),
                            owner=options.owner and bool(fields["owner"]),
                            dst_unstored=frozenset(fields["unstored"]))


def preflight(src, dst, options: Options) -> bool:
    """SRC must be a directory, DST a directory or missing (nothing is written before this); True when
    DST does not exist yet."""
    info = src.info()
    if info["kind"] is None:
        raise PcopyError(f"{src.label}: cannot read source: No such file or directory")
    if info["kind"] == "error":
        raise PcopyError(f"{src.label}: cannot read source: {info['error']}")
    if info["kind"] != "dir":
        raise not_yet(src.label, "a SRC that is not a directory")
    there = dst.info()
    if there["kind"] == "error":
        raise PcopyError(f"{dst.label}: cannot read destination: {there['error']}")
    if there["kind"] not in (None, "dir"):
        raise PcopyError(f"{dst.label}: destination exists and is not a directory")
    return there["kind"] is None


def _cleanup(dst, reldirs: set, token: str) -> None:
    """A stopped pull removes its own temp files from the local DST. (A remote receiver removes the
    temp file it was writing when its session ends; what a killed one leaves, the next run removes.)"""
    if reldirs and isinstance(dst, Local):
        try:
            dst.cleanup(sorted(reldirs), token)
        except OSError:
            pass

