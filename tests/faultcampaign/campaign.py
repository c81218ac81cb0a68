"""The campaign loop: trees built once, a clean calibration run per command, then one
classified run per (command, mode, seed), and the table.

Why calibrate: a clean run proves the checks themselves pass on today's pcopy (row
"clean"), gives the kill modes a realistic time window, gives verify its baseline count,
and (under fiu-run, nothing armed) records which modules pcopy imports so the libfiu mode
can import them before arming its failure points.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional

from faultshim import ShimUnavailable, compile_shim, read_log, shim_env

from . import faults, trees
from .commands import ALLOWED_EXITS, COMMANDS, SIGNAL_EXITS, json_report
from .procs import Run

CATEGORIES = ("hang", "orphan", "wrong", "drop", "traceback", "badexit", "rerun")
TRACEBACK_MARKS = ("Traceback (most recent call last)", "Exception ignored", "Fatal Python error")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DROP_ENV = ("PCOPY_START_METHOD", "PCOPY_SCHEDULER", "PCOPY_CACHE", "LD_PRELOAD", "PCOPY_FAULTS",
            "PCOPY_FAULTS_ROOT_PID", "PCOPY_FAULTS_LOG", "FIU_ENABLE", "FIU_CTRL_FIFO", "FIU_PRNG_SEED")


@dataclasses.dataclass
class Result:
    command: str
    mode: str
    seed: int
    exit: Optional[int]
    seconds: float
    counts: dict
    details: dict
    stderr: str = ""
    faults_injected: Optional[int] = None
    repro: str = ""

    @property
    def failed(self) -> bool:
        return any(self.counts.values())


def default_python() -> str:
    venv = os.path.join(REPO, ".venv", "bin", "python")
    return venv if os.path.exists(venv) else sys.executable


def excerpt(stderr: str, limit: int = 1500) -> str:
    """The stderr tail, plus the start of the first traceback when the tail does not hold it."""
    at = stderr.find("Traceback")
    if len(stderr) <= limit or at < 0 or at >= len(stderr) - limit // 2:
        return stderr[-limit:]
    return stderr[at:at + limit // 2] + "\n[...]\n" + stderr[-limit // 2:]


class Campaign:
    def __init__(self, python: Optional[str] = None, probability: float = 0.01, timeout: float = 60.0,
                 jobs: int = 2, workdir: str = "/dev/shm", keep: bool = False, grace: float = 3.0,
                 watch_wait: float = 10.0, fiu_points=faults.FIU_POINTS, log=None) -> None:
        self.python = python or default_python()
        self.probability, self.timeout, self.jobs, self.grace = probability, timeout, jobs, grace
        self.workdir, self.keep, self.watch_wait, self.fiu_points = workdir, keep, watch_wait, fiu_points
        self.log = log or (lambda msg: None)
        self.notes: list = []
        self.calib: dict = {}
        self.baseline: dict = {}
        self.n = 0

    # -------------------------------------------------------------- set-up and tear-down

    def __enter__(self) -> "Campaign":
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def setup(self) -> None:
        self.root = tempfile.mkdtemp(prefix="pcopy-fc-", dir=self.workdir)
        self.data, self.logs, self.aux = (os.path.join(self.root, d) for d in ("data", "logs", "aux"))
        for d in (self.data, self.logs, self.aux):
            os.mkdir(d)
        self.src, self.ref = os.path.join(self.data, "src"), os.path.join(self.data, "ref")
        trees.build_src(self.src)
        trees.copy_tree(self.src, self.ref)
        self.sync_template = os.path.join(self.data, "sync-template")
        trees.plant_sync_dst(self.src, self.sync_template)
        self.src_snap, self.sync_prior = trees.snapshot(self.src), trees.snapshot(self.sync_template)
        self.manifest_map = {rel: v[1] for rel, v in self.src_snap.items() if v[0] == "file"}
        self.manifest = os.path.join(self.data, "manifest.txt")
        with open(self.manifest, "w") as f:
            f.writelines(f"{self.manifest_map[rel]}  {rel}\n" for rel in sorted(self.manifest_map))
        self.map_function = trees.write_map_helper(self.aux)
        self.map_expected = {os.path.join(self.src, rel): os.path.getsize(os.path.join(self.src, rel))
                             for rel in self.manifest_map}
        try:
            self.shim: Optional[str] = compile_shim(os.path.join(self.root, "shim"))
        except ShimUnavailable as exc:
            self.shim = None
            self.notes.append(f"shim mode skipped: {exc}")
        self.startup = self.measure_startup()
        if faults.FIU_RUN is None:
            self.notes.append("fiu mode skipped: fiu-run is not installed (apt-get install fiu-utils)")

    def close(self) -> None:
        if not self.keep and getattr(self, "root", None):
            shutil.rmtree(self.root, ignore_errors=True)

    def available(self, mode: str) -> bool:
        return not ((mode == "fiu" and faults.FIU_RUN is None) or (mode == "shim" and self.shim is None))

    # -------------------------------------------------------------- environment and clean runs

    def base_env(self, command: str) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in DROP_ENV and not k.startswith("FC_FIU_")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if command == "map":
            env["PYTHONPATH"] = self.aux + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def clean_pcopy(self, args: list, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.Popen([self.python, "-m", "pcopy", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=self.base_env(args[0]), cwd="/", text=True,
                                errors="replace", start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            err += f"\n(clean run timed out after {timeout} s)"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def measure_startup(self) -> float:
        """Median wall time of `python -m pcopy --version` (interpreter plus pcopy's imports)."""
        times = []
        for _ in range(3):
            t0 = time.monotonic()
            self.clean_pcopy(["--version"], timeout=60)
            times.append(time.monotonic() - t0)
        return sorted(times)[1]

    def calibrate(self, command: str, modes) -> list:
        """The 'clean' row (and 'slow' when killing): timings, the verify baseline, fiu's imports."""
        result = self.run_one(command, "clean", 0)
        if command in ("verify", "verify-m"):
            report = json_report(result.details["_stdout"][0])
            self.baseline[command] = report.get("identical") if report else None
        self.calib[command] = {"seconds": result.seconds, "imports": None}
        results = [result]
        if "fiu" in modes and faults.FIU_RUN is not None:
            self.calib[command]["imports"] = os.path.join(self.logs, f"imports-{command}.txt")
            self.run_one(command, "discover", 0, record=self.calib[command]["imports"])
        if any(m in faults.KILL_MODES for m in modes) and self.shim:
            results.append(self.run_one(command, "slow", 0))
            self.calib[command]["seconds"] = results[-1].seconds
        for r in results:
            r.details.pop("_stdout", None)
        return results

    # -------------------------------------------------------------- one run

    def run_one(self, command: str, mode: str, seed: int, record: Optional[str] = None) -> Result:
        spec = COMMANDS[command]
        self.n += 1
        rd = os.path.join(self.data, f"run-{self.n:04d}")
        logbase = os.path.join(self.logs, f"run-{self.n:04d}")
        os.mkdir(rd)
        st = spec.prepare(self, rd)
        st["mode"] = mode
        args = spec.args(self, st)
        env, argv, kill = self.base_env(command), [self.python, "-m", "pcopy", *args], None
        if mode == "fiu" or record:
            argv = faults.fiu_argv(self.python, args)
            if record:
                env["FC_FIU_RECORD"] = record
            else:
                env = faults.fiu_env(env, seed, self.probability, self.calib[command]["imports"], self.fiu_points)
        elif mode == "shim":
            rules = faults.shim_rules(seed, command, self.data + "/", self.probability)
            env = shim_env(rules, self.shim, env, log=logbase + ".faults")
        if mode in faults.KILL_MODES + ("slow",) and self.shim:
            env = shim_env(faults.slow_rules(self.data + "/"), self.shim, env)
        if mode in faults.KILL_MODES:
            kill = (mode, faults.kill_delay(seed, command, mode, self.calib[command]["seconds"], self.startup))
        run = Run(argv, env, "/", logbase, token=rd)
        try:
            if spec.drive:
                spec.drive(self, run, st, self.timeout, kill)
            else:
                if kill and run.wait(kill[1]) is None and not run.done:
                    run.send(kill[0])
                run.wait(max(1.0, self.timeout - (time.monotonic() - run.started)))
            hang = run.exit_time is None and not run.done
            if hang and os.environ.get("FC_DUMP_HANGS"):  # debugging aid: where is it stuck?
                import subprocess as _sp
                for pid in [run.pid, *[p for p, _ in getattr(run, "seen", ())]]:
                    _sp.run([os.environ["FC_DUMP_HANGS"], "dump", "--pid", str(pid)], timeout=30)
            orphans = [] if hang else run.orphans(self.grace)
        finally:
            run.kill_all()
        end = run.exit_time or time.monotonic()
        seconds = (st.get("stopped_at") or end) - run.started
        out, err = run.texts()
        code = None if hang else run.exit_code
        details = {c: [] for c in CATEGORIES}
        if hang:
            details["hang"].append(f"no exit within {self.timeout:.0f} s")
        details["orphan"] = [f"alive {self.grace:.0f} s after pcopy exited: {p}" for p in orphans]
        for key, messages in spec.check(self, st, code, out, err).items():
            details[key].extend(messages)
        if any(mark in err for mark in TRACEBACK_MARKS):
            details["traceback"].append(next(m for m in TRACEBACK_MARKS if m in err))
        allowed = ALLOWED_EXITS[command] | SIGNAL_EXITS.get(mode, set())
        if code is not None and code not in allowed:
            details["badexit"].append(f"exit {code} is not in {sorted(allowed)}")
        if spec.rerun and mode not in ("clean", "slow", "discover"):
            details["rerun"] = spec.rerun(self, st)
        elif spec.rerun:
            details["rerun"] = [f"{mode} run: {p}" for p in trees.tree_diff(st["src"], st["dst"]).splitlines()[:5]]
        shutil.rmtree(rd, ignore_errors=True)
        counts = {c: int(bool(details[c])) for c in CATEGORIES}
        if mode in ("clean", "slow"):
            details["_stdout"] = [out]
        injected = len(read_log(logbase + ".faults")) if mode == "shim" else None
        repro = (f"scripts/fault-campaign --commands {command} --modes {mode} --seeds {seed} "
                 f"--probability {self.probability}")
        return Result(command, mode, seed, code, round(seconds, 3), counts, details, excerpt(err), injected, repro)
