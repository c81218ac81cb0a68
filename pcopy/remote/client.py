"""``pcopy copy|sync SRC [user@]host:DST`` (push) and ``[user@]host:SRC DST`` (pull): check what
the run asks for, open the ssh sessions (in parallel; each one shakes hands before anything is
read or written), check SRC and DST, then hand over to ``flow``.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Optional, Union

from .. import options as _options
from ..errors import PcopyError, UsageError
from ..model.results import Report
from ..options import Options
from ..runtime.progress import Counters
from . import transport
from .flow import Flow
from .receive import receiver_options
from .sides import Local, Remote

MAX_DEFAULT_STREAMS = 4  # ssh sessions moving data by default: one per CPU, at most this many (plus control, walk)
NOT_YET = ("link_dest", "manifest", "transform", "partial", "backup", "files_from", "one_file_system",
           "prune_empty_dirs", "exclude_if_present", "track_renames")
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
    """A copy or sync with one remote end (``fields``: api keyword arguments)."""
    if len(sources) != 1:
        raise not_yet(next((s for s in sources + [dst] if is_remote(s)), dst), "several SRCs")
    setting = settle(sources[0], dst, fields, scheduler)
    options, push = setting.options, setting.push
    conns = connect(setting, rsh, remote_pcopy)
    src_side, dst_side, data = ends(setting, conns)
    try:
        dst_is_new = preflight(src_side, dst_side, options)
        if dst_is_new and not options.dry_run:
            dst_side.make_root()
        options = fit(dst_side, options)
        token = options.token
        recv = receiver_spec(options, setting.streams)
        local_options = None if push else receiver_options(os.path.abspath(options.dst), token, recv)
        if local_options is not None:
            dst_side.root = local_options.dst
        flow = Flow(options, src_side, dst_side, push, counters or Counters(), on_result, keep_results, stop_event)
        try:
            return flow.run(data, token, recv, local_options, dst_is_new, compress)
        except BaseException:
            for conn in conns:  # at once: a session streaming the walk would not see its stdin close
                conn.kill()
            _cleanup(dst_side, flow.touched, token)
            raise
    finally:
        transport.close_all(conns)


class Setting(NamedTuple):
    """What a remote run was asked for, checked before any session is opened."""

    options: Options  # with the remote end's path as its SRC or DST
    spec: transport.Spec
    push: bool  # SRC is here, DST there
    arg: str  # the host:path argument, for the one-line refusals
    streams: int  # data sessions
    filter_spec: Optional[dict]


def settle(src: str, dst: str, fields: dict, scheduler=None) -> Setting:
    """The options of a run with one remote end (``fields``: api keyword arguments); refuses what
    remote runs do not do (yet) with one line."""
    src_spec, dst_spec = transport.parse(src), transport.parse(dst)
    if src_spec is not None and dst_spec is not None:
        raise UsageError(f"{dst}: SRC and DST are both remote (host:path); one of them must be local")
    spec = src_spec or dst_spec
    assert spec is not None
    arg = src if src_spec is not None else dst
    if scheduler is not None:
        raise not_yet(arg, "--scheduler")
    options = _options.build(src_spec.path if src_spec else src, dst_spec.path if dst_spec else dst, **fields)
    for name in NOT_YET:
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


def connect(setting: Setting, rsh: Optional[str], remote_pcopy: Optional[str]) -> list:
    """All sessions at once (each costs an ssh handshake and an interpreter start): control, the
    remote walk when DST is remote (a pull walks on control), then the data streams."""
    return _connect(setting.spec, rsh, remote_pcopy, setting.streams + (2 if setting.push else 1))


def ends(setting: Setting, conns: list) -> tuple:
    """(SRC end, DST end, data sessions) over the sessions ``connect`` opened."""
    push, options, spec, filter_spec = setting.push, setting.options, setting.spec, setting.filter_spec
    control, data = conns[0], conns[2:] if push else conns[1:]
    walker = conns[1] if push else control

    def open_walker() -> transport.Connection:
        return walker

    src_side: Union[Local, Remote]
    dst_side: Union[Local, Remote]
    if push:
        src_side = Local(options.src, options.src, filter_spec)
        dst_side = Remote(spec.path, str(spec), filter_spec, control, open_walker)
    else:
        src_side = Remote(spec.path, str(spec), filter_spec, control, open_walker)
        dst_side = Local(options.dst, options.dst, filter_spec)
    return src_side, dst_side, data


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


def _connect(spec: transport.Spec, rsh: Optional[str], remote_pcopy: Optional[str], count: int) -> list:
    """``count`` sessions opened at once; the first failure (its one line) is what the user sees."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(transport.connect, spec, rsh, remote_pcopy) for _ in range(count)]
    conns, error = [], None
    for future in futures:
        try:
            conns.append(future.result())
        except BaseException as exc:
            error = error or exc
    if error is not None:
        for conn in conns:
            conn.kill()
        raise error
    return conns


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

