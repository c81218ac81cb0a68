"""The fault campaign's checks catch what they claim to (a campaign that counts zero must mean it).

A fake interpreter runs the real ``python -m pcopy`` and then misbehaves in one chosen way
(FC_FAKE): corrupts a DST file, deletes one and exits 0, leaves a sleeping child behind,
prints a traceback, exits 7, hangs, leaves a temp file. Each must land in its category.
"""

from __future__ import annotations

import os
import stat

import pytest
from faultcampaign import campaign

pytestmark = pytest.mark.faults

FAKE = """#!/bin/sh
# $1=-m $2=pcopy $3=command $4=SRC $5=DST
[ "$FC_FAKE" = hang ] && exec sleep 60
"{real}" "$@"
rc=$?
if [ "$3" = copy ] || [ "$3" = sync ]; then
    case "$FC_FAKE" in
        wrong) printf x >> "$5/d0/f000.dat" ;;
        drop) rm -f "$5/d0/f001.dat" ;;
        temp) : > "$5/.pcopy-tmp-fake-1-1" ;;
    esac
fi
case "$FC_FAKE" in
    orphan) sleep 30 & ;;
    traceback) echo "Traceback (most recent call last):" >&2 ;;
    badexit) rc=7 ;;
esac
exit $rc
"""


@pytest.fixture(scope="module")
def fake_camp(tmp_path_factory):
    path = tmp_path_factory.mktemp("fake") / "python"
    path.write_text(FAKE.format(real=campaign.default_python()))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    with campaign.Campaign(python=str(path), timeout=4, grace=1.0) as camp:
        yield camp


@pytest.mark.parametrize("fake, command, category", [
    ("none", "copy", None), ("wrong", "copy", "wrong"), ("drop", "copy", "drop"), ("drop", "sync", "drop"),
    ("orphan", "hash", "orphan"), ("traceback", "map", "traceback"), ("badexit", "verify", "badexit"),
    ("hang", "hash", "hang"),
])
def test_each_category_is_caught(fake_camp, monkeypatch, fake, command, category):
    monkeypatch.setenv("FC_FAKE", fake)
    result = fake_camp.run_one(command, "clean", 0)
    found = {c for c in campaign.CATEGORIES if result.counts[c]}
    expected = {category} if category else set()
    if category in ("wrong", "drop"):
        expected.add("rerun")  # a clean run's DST must also equal SRC
    assert found == expected, (result.details, result.stderr)


def test_a_rerun_that_leaves_temp_files_fails(fake_camp, monkeypatch):
    if not fake_camp.available("shim"):
        pytest.skip("needs the shim (gcc)")
    monkeypatch.setenv("FC_FAKE", "temp")
    result = fake_camp.run_one("copy", "shim", 1)
    assert result.counts["rerun"] and "temp files left" in " ".join(result.details["rerun"]), result.details


def test_no_process_or_file_of_a_run_is_left_behind(fake_camp, monkeypatch):
    monkeypatch.setenv("FC_FAKE", "orphan")
    fake_camp.run_one("copy", "clean", 0)
    runs = [d for d in os.listdir(fake_camp.data) if d.startswith("run-")]
    assert runs == []
    from faultcampaign.procs import with_token
    assert with_token(fake_camp.data + "/run-") == set()
