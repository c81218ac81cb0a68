"""A CI-sized fault campaign: every command under libfiu, the shim and four kinds of kill.

The same machinery as scripts/fault-campaign (tests/faultcampaign), with fixed seeds and a
shorter hang timeout. Each test is one (command, mode) over a few seeds and must count
zero hangs, orphans, wrong contents, silent drops, tracebacks, bad exits and failed clean
re-runs; a failure names the seed, the categories, the first findings and the stderr tail,
and the command line that repeats the run. The "clean" tests check the checks: today's
pcopy passes them when nothing is injected.
"""

from __future__ import annotations

import pytest
from faultcampaign import campaign, faults
from faultcampaign.commands import COMMANDS

pytestmark = pytest.mark.faults

SEEDS = {"fiu": (1, 2), "shim": (1, 2, 3), "kill-parent": (1, 2), "kill-group": (1,), "sigint": (1, 2),
         "sigterm": (1, 2)}
TIMEOUT = 15.0  # a clean run takes well under 2 s; watch's scenario waits at most 2 x WATCH_WAIT
WATCH_WAIT = 5.0


@pytest.fixture(scope="module")
def camp():
    with campaign.Campaign(timeout=TIMEOUT, watch_wait=WATCH_WAIT) as c:
        c.calibrated = {}
        yield c


def calibrated(camp, command: str) -> list:
    """The clean (and slow) calibration runs of a command, once per module."""
    if command not in camp.calibrated:
        camp.calibrated[command] = camp.calibrate(command, faults.MODES)
    return camp.calibrated[command]


def explain(results: list) -> str:
    lines = []
    for r in results:
        if not r.failed:
            continue
        found = [c for c in campaign.CATEGORIES if r.counts[c]]
        lines.append(f"{r.command} {r.mode} seed={r.seed}: exit {r.exit}, {', '.join(found)}")
        for c in found:
            lines.extend(f"    {c}: {m[:300]}" for m in r.details[c][:3])
        lines.extend("    | " + x for x in r.stderr.strip().splitlines()[-15:])
        lines.append(f"    repeat: {r.repro}")
    return "\n".join(lines)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_clean_and_slow_runs_pass_the_checks(camp, command):
    results = calibrated(camp, command)
    assert not any(r.failed for r in results), explain(results)


CASES = [(command, mode) for command in COMMANDS for mode in faults.MODES]


@pytest.mark.parametrize("command, mode", CASES, ids=[f"{c}-{m}" for c, m in CASES])
def test_command_survives_faults(camp, command, mode):
    if not camp.available(mode):
        pytest.skip(next((n for n in camp.notes if n.startswith(mode)), f"{mode} is not available"))
    calibrated(camp, command)
    results = [camp.run_one(command, mode, seed) for seed in SEEDS[mode]]
    assert not any(r.failed for r in results), "\n" + explain(results)
