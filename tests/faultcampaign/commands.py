"""Per command: its argv, how a run is driven, and what its outcome must satisfy.

Why one table of small functions: each command has its own notion of "everything was
done" (DST complete, manifest complete, every map line printed, every pair confirmed),
but the categories are shared: wrong (a final-named result that is no known version, or a
false verdict), drop (an item neither done nor named on an error line), bad exit.
A check returns {category: [messages]}.
"""

from __future__ import annotations

import json
import os
import time

from . import trees

ERR = "pcopy: error: "
ALLOWED_EXITS = {"copy": {0, 1, 3}, "sync": {0, 1, 3}, "hash": {0, 1, 3}, "map": {0, 1, 3},
                 "verify": {0, 1, 3, 4}, "verify-m": {0, 1, 3, 4}, "watch": {0, 1, 3}}  # watch: SIGINT ends it normally
SIGNAL_EXITS = {"kill-parent": {-9}, "kill-group": {-9}, "sigint": {130, -2}, "sigterm": {143, -15}}


def error_paths(stderr: str, roots) -> set:
    """Relative paths named on 'pcopy: error: PATH: reason' lines (an empty PATH names nothing)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith(ERR):
            names.add(_rel(line[len(ERR):].split(": ", 1)[0], roots))
    return names - {""}


def _rel(path: str, roots) -> str:
    for root in roots:
        if path == root:
            return "."
        if path.startswith(root + "/"):
            return path[len(root) + 1:]
    return path.rstrip("/") if path not in ("", "/") else path


def is_named(rel: str, names: set) -> bool:
    while True:
        if rel in names:
            return True
        if rel in ("", "."):
            return False
        rel = os.path.dirname(rel) or "."


def json_report(stdout: str):
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and "path" not in obj:
                return obj
    return None


def _report_paths(report, key: str, roots, st) -> set:
    """Paths the JSON report names: accepted only in fiu mode, where libfiu may have failed the
    very write(2) of the error line (elsewhere an item must be named on stderr)."""
    if st.get("mode") != "fiu":
        return set()
    return {_rel(item.get("path", ""), roots) for item in (report or {}).get(key, []) if isinstance(item, dict)}


def _jobs(ctx) -> list:
    """``-j N``; none for ``--jobs 0``: pcopy's default worker count, whose threads adapt."""
    return ["-j", str(ctx.jobs)] if ctx.jobs else []


# ------------------------------------------------------------------ copy, sync, watch


def prepare_copy(ctx, rd):
    return {"src": ctx.src, "dst": os.path.join(rd, "dst"), "allowed": [ctx.src_snap], "want": ctx.src_snap}


def prepare_sync(ctx, rd):
    st = prepare_copy(ctx, rd)
    trees.copy_tree(ctx.sync_template, st["dst"])
    st["allowed"] = [ctx.src_snap, ctx.sync_prior]
    st["delete"] = True
    return st


def prepare_watch(ctx, rd):
    st = prepare_copy(ctx, rd)
    st["src"] = os.path.join(rd, "src")
    st["stage"] = os.path.join(rd, "stage")
    trees.copy_tree(ctx.src, st["src"])
    os.mkdir(st["stage"])
    st["delete"] = True
    return st


def args_copy(ctx, st):
    return ["copy", st["src"], st["dst"], "--no-progress", *_jobs(ctx), "--json"]


def args_sync(ctx, st):
    return ["sync", st["src"], st["dst"], "--delete", "--no-progress", *_jobs(ctx), "--json"]


def args_watch(ctx, st):
    return ["watch", st["src"], st["dst"], "--delete", "--no-progress", *_jobs(ctx), "--debounce", "0.05"]


def check_tree(ctx, st, code, out, err, finished=True):
    found = {}
    dst_snap = trees.snapshot(st["dst"]) if os.path.isdir(st["dst"]) else {}
    found["wrong"] = trees.content_problems(dst_snap, st["allowed"])
    if code in (0, 3) and finished:
        roots = [st["src"], st["dst"]]
        report = json_report(out)
        names = error_paths(err, roots) | _report_paths(report, "failures", roots, st)
        wrong = set(trees.unknown_versions(dst_snap, st["allowed"]))  # counted once, as wrong
        todo = [rel for rel in trees.missing(st["want"], dst_snap) if rel not in wrong]
        if st.get("delete") and code == 0:  # after failures pcopy skips deletions on purpose (and warns)
            todo += [f"{rel} (not deleted)" for rel in trees.extras(st["want"], dst_snap)]
        unnamed = todo if code == 0 else [r for r in todo if not is_named(r.split(" (")[0], names)]
        found["drop"] = [f"exit {code} but {r} is missing or stale in DST and no error names it" for r in unnamed]
        if code == 0 and report and report.get("failed"):
            found["badexit"] = [f"exit 0 with failed={report['failed']}"]
    return found


def rerun_tree(ctx, st):
    """A clean sync (copy for copy) must exit 0, leave no temp file and make DST equal SRC."""
    verb = ["sync", "--delete"] if st.get("delete") else ["copy"]
    proc = ctx.clean_pcopy([verb[0], st["src"], st["dst"], *verb[1:], "--no-progress", *_jobs(ctx)])
    problems = []
    if proc.returncode != 0 or "Traceback" in proc.stderr:
        problems.append(f"clean {verb[0]} exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
    left = trees.temps(trees.snapshot(st["dst"])) if os.path.isdir(st["dst"]) else []
    if left:
        problems.append(f"temp files left after the clean {verb[0]}: {left[:5]}")
    diff = trees.tree_diff(st["src"], st["dst"]) if os.path.isdir(st["dst"]) else "DST missing"
    if diff.strip():
        problems.append(f"DST differs from SRC after the clean {verb[0]}: {diff.strip()[:400]}")
    return problems


def _settled(want: dict, st: dict, run) -> bool:
    """DST mirrors `want`, or every file still missing is named on an error line already."""
    snap = trees.snapshot(st["dst"]) if os.path.isdir(st["dst"]) else {}
    todo = trees.missing(want, snap)
    if not todo and not trees.extras(want, snap):
        return True
    names = error_paths(run.texts()[1], [st["src"], st["dst"]])
    return bool(names) and all(is_named(rel, names) for rel in todo)


def _change_src(st) -> None:
    """New files, two changed files and one deletion; each change lands by an atomic rename."""
    src, stage = st["src"], st["stage"]
    changes = {f"d2/new{i}.dat": b"new file %d\n" % i * (i + 1) for i in range(3)}
    changes["d4/f005.dat"] = b"changed while watched\n" * 7
    with open(os.path.join(src, "big0.bin"), "rb") as f:
        changes["big0.bin"] = b"CHANGED" + f.read()[7:]
    for n, (rel, data) in enumerate(sorted(changes.items())):
        tmp = os.path.join(stage, f"c{n}")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(src, rel))
    os.unlink(os.path.join(src, "d5", "f010.dat"))


def drive_watch(ctx, run, st, timeout, kill):
    """Initial sync, then changes, then SIGINT (the brief's scenario); a kill plan cuts it short."""
    t0 = time.monotonic()
    state = {"sent": False}

    def wait_for(cond, limit) -> bool:
        deadline = min(t0 + timeout, time.monotonic() + limit)
        while time.monotonic() < deadline:
            if run.poll() is not None or run.done:
                return False
            if kill and not state["sent"] and time.monotonic() - t0 >= kill[1]:
                run.send(kill[0])
                state["sent"] = True
                return False
            if cond():
                return True
            time.sleep(0.1)
        return False

    st["want"] = ctx.src_snap
    wait_for(lambda: _settled(ctx.src_snap, st, run), ctx.watch_wait)
    if not state["sent"] and run.exit_code is None:
        _change_src(st)
        st["want"] = trees.snapshot(st["src"])
        st["allowed"] = [ctx.src_snap, st["want"]]
        wait_for(lambda: _settled(st["want"], st, run), ctx.watch_wait)
    st["scenario_done"] = not state["sent"]
    if not state["sent"] and run.exit_code is None:
        st["stopped_at"] = time.monotonic()
        run.send(kill[0] if kill else "sigint")
    run.wait(max(1.0, timeout - (time.monotonic() - t0)))
    return True


def check_watch(ctx, st, code, out, err):
    """After the SIGINT every SRC change must be mirrored or named on an error line (as for exit 3)."""
    st.setdefault("want", ctx.src_snap)
    judged = 3 if code in (0, 3, 130, -2) else code
    return check_tree(ctx, st, judged, out, err, finished=st.get("scenario_done", False))


# ------------------------------------------------------------------ hash, verify, map


def prepare_out(ctx, rd):
    return {"rd": rd, "out": os.path.join(rd, "hash.out"), "cache": os.path.join(rd, "cache.sqlite3")}


def args_hash(ctx, st):
    return ["hash", ctx.src, "-o", st["out"], "--no-progress", "--cache", st["cache"], *_jobs(ctx), "--json"]


def args_verify(ctx, st):
    return ["verify", ctx.src, ctx.ref, "--no-progress", "--cache", st["cache"], *_jobs(ctx), "--json"]


def args_verify_m(ctx, st):
    return ["verify", "-m", ctx.manifest, ctx.src, "--no-progress", "--cache", st["cache"], *_jobs(ctx),
            "--json"]


def args_map(ctx, st):
    return ["map", ctx.src, ctx.map_function, "--no-progress", *_jobs(ctx), "--exclude", st["rd"]]


def check_hash(ctx, st, code, out, err):
    found = {"wrong": [], "drop": []}
    listed = {}
    if os.path.exists(st["out"]):
        with open(st["out"], encoding="utf-8", errors="surrogateescape") as f:
            for line in f.read().splitlines():
                digest, _, rel = line.partition("  ")
                listed[rel] = digest
                if ctx.manifest_map.get(rel) != digest:
                    found["wrong"].append(f"manifest line {line[:120]!r} is wrong (or half written)")
    if code in (0, 3):
        names = error_paths(err, [ctx.src]) | _report_paths(json_report(out), "differences", [ctx.src], st)
        for rel in sorted(set(ctx.manifest_map) - set(listed)):
            if code == 0 or not is_named(rel, names):
                found["drop"].append(f"exit {code} but {rel} is not in the manifest and no error names it")
    return found


def check_verify(ctx, st, code, out, err, baseline_key):
    found = {"wrong": [], "drop": []}
    report = json_report(out)
    for item in (report or {}).get("differences", []):
        if item.get("kind") != "error":
            found["wrong"].append(f"identical trees reported as different: {item}")
    if code == 4 and not found["wrong"]:
        found["wrong"].append("exit 4 (differences) for identical trees")
    baseline = ctx.baseline.get(baseline_key)
    if code == 0:
        if report is None:
            found["drop"].append("exit 0 but no JSON report on stdout")
        elif report.get("errors") or (baseline is not None and report.get("identical") != baseline):
            found["drop"].append(f"exit 0 but identical={report.get('identical')} of {baseline}, "
                                 f"errors={report.get('errors')}")
    elif code == 3:
        named = error_paths(err, [ctx.src, ctx.ref]) | _report_paths(report, "differences", [ctx.src, ctx.ref], st)
        universe = ctx.manifest_map if baseline_key == "verify-m" else \
            [rel for rel, v in ctx.src_snap.items() if v[0] in ("file", "link")]
        covered = sum(1 for rel in universe if is_named(rel, named))
        if report is not None and baseline is not None and report.get("identical", 0) + covered < baseline:
            found["drop"].append(f"exit 3: {report.get('identical')} identical + {covered} covered by error "
                                 f"lines < {baseline} files")
        elif report is None and not named:
            found["drop"].append("exit 3 but nothing is named")
    return found


def check_map(ctx, st, code, out, err):
    found = {"wrong": [], "drop": [], "badexit": []}
    listed, failed = set(), 0
    lines = out.splitlines()
    if out and not out.endswith("\n"):
        lines.pop()  # cut short by a kill: not a result line
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or "path" not in obj:
            found["wrong"].append(f"not a result line on stdout: {line[:120]!r}")
            continue
        path = obj["path"]
        listed.add(path)
        if "error" in obj:
            failed += 1
        elif ctx.map_expected.get(path) != obj.get("result"):
            found["wrong"].append(f"wrong map result {line[:160]!r}")
    if code in (0, 3):
        names = error_paths(err, [ctx.src])
        for path in sorted(set(ctx.map_expected) - listed):
            if code == 0 or not is_named(os.path.relpath(path, ctx.src), names):
                found["drop"].append(f"exit {code} but {path} is in neither output nor error lines")
        if code == 0 and failed:
            found["badexit"].append(f"exit 0 with {failed} error lines")
    return found


class Command:
    def __init__(self, prepare, args, check, rerun=None, drive=None) -> None:
        self.prepare, self.args, self.check, self.rerun, self.drive = prepare, args, check, rerun, drive


COMMANDS = {
    "copy": Command(prepare_copy, args_copy, check_tree, rerun_tree),
    "sync": Command(prepare_sync, args_sync, check_tree, rerun_tree),
    "watch": Command(prepare_watch, args_watch, check_watch, rerun_tree, drive_watch),
    "hash": Command(prepare_out, args_hash, check_hash),
    "verify": Command(prepare_out, args_verify, lambda c, s, e, o, r: check_verify(c, s, e, o, r, "verify")),
    "verify-m": Command(prepare_out, args_verify_m, lambda c, s, e, o, r: check_verify(c, s, e, o, r, "verify-m")),
    "map": Command(prepare_out, args_map, check_map),
}
