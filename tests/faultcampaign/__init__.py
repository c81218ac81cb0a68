"""Black-box fault campaign for ``python -m pcopy`` (used by scripts/fault-campaign and
tests/test_faults_campaign.py).

Why black-box: pcopy's internals are being restructured, so nothing here imports pcopy;
every run is a subprocess, judged only by its exit code, its output and the file system.

Modules: ``trees`` (the SRC tree and what DST may hold), ``procs`` (a run under a
subreaper: hangs, orphans, signals, clean-up), ``faults`` (libfiu / shim / kill plans from
a seed), ``commands`` (argv and checks per command), ``campaign`` (the loop and the table),
``fiu_boot`` (runs pcopy with libfiu armed after start-up).
"""

TEMP_PREFIX = ".pcopy-tmp-"
