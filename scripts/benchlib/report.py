"""Markdown tables (one per row as it finishes, a summary at the end) and the --json dump."""

from __future__ import annotations

import json
import sys

from .common import Row

SHORT = {  # the summary's workload column
    "small": "tmpfs, 50k files of 0.5-8 KiB",
    "real": "tmpfs, real tree (sys.base_prefix)",
    "cold": "ext4, cold cache + sync, 20k files",
    "sshfs": "sshfs, 1 ms each way, 1k files",
    "bigfile": "tmpfs, one big file",
    "large": "tmpfs, 4 x 512 MiB",
    "noop": "no-op sync --delete, 50k files",
    "verify": "verify --no-cache, 50k files",
    "verify-warm": "verify, warm cache, 50k files",
    "cpu": "CPU time (user+sys), 50k files",
    "scheduler": "--scheduler vs local backend, 50k files",
    "rss": "peak RSS, 1M empty files",
}


def ratio(value: float, base: float) -> float:
    return value / base if base > 0 else float("nan")


def print_row(row: Row) -> None:
    print(f"\n### {row.title}")
    if row.skipped:
        print(f"\nskipped: {row.skipped}")
    elif row.key == "scaling":
        print_scaling(row)
    elif row.key == "rss":
        e = row.extra
        print("\n| measure | value |\n| --- | ---: |")
        print(f"| peak RSS, largest single process (ru_maxrss) | {e['peak_single_mb']:.0f} MB |")
        print(f"| peak RSS, pcopy + workers summed (sampled every 50 ms) | {e['peak_tree_mb']:.0f} MB |")
        print(f"| wall time | {e['wall_s']:.1f} s |")
    elif row.metric == "cpu":
        ref = row.median(row.reference) if row.reference else 0.0
        print(f"\n| tool | median CPU, user+sys (s) | user (s) | sys (s) | median wall (s) | vs {row.reference} |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, runs in row.times.items():
            med = row.median(name)
            user = sorted(r.user for r in runs)[len(runs) // 2]
            system = sorted(r.system for r in runs)[len(runs) // 2]
            wall = sorted(r.wall for r in runs)[len(runs) // 2]
            print(f"| {name} | {med:.3f} | {user:.3f} | {system:.3f} | {wall:.3f} | {ratio(med, ref):.2f} |")
    else:
        ref = row.median(row.reference) if row.reference else 0.0
        print(f"\n| tool | median wall (s) | min (s) | median CPU (s) | vs {row.reference} |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, runs in row.times.items():
            med = row.median(name)
            cpu = sorted(r.cpu for r in runs)[len(runs) // 2]
            print(f"| {name} | {med:.3f} | {min(r.wall for r in runs):.3f} | {cpu:.2f} | {ratio(med, ref):.2f} |")
    for note in row.notes:
        print(f"\n{note}")
    load = row.extra.get("loadavg")
    print(f"\n(row took {row.seconds:.0f} s" + (f"; load average {load[0]:.2f} {load[1]:.2f})" if load else ")"))
    sys.stdout.flush()


def print_scaling(row: Row) -> None:
    points = row.extra.get("points", [])
    tools = [name for name in points[0] if name not in ("files", "build_s", "seconds")] if points else []
    ref = row.reference or "cp -a"
    print("\n| files | " + " | ".join(f"{name} µs/file" for name in tools)
          + " | " + " | ".join(f"{name} vs {ref}" for name in tools if name != ref) + " | tree built in | size took |")
    print("| ---: | " + " | ".join("---:" for _ in range(2 * len(tools) - 1)) + " | ---: | ---: |")
    for p in points:
        cells = [f"{p[name]:.1f}" for name in tools]
        cells += [f"{ratio(p[name], p[ref]):.2f}" for name in tools if name != ref]
        print(f"| {p['files']:,} | " + " | ".join(cells) + f" | {p['build_s']:.0f} s | {p['seconds']:.0f} s |")


def summary(rows: list[Row]) -> list[dict]:
    """One line per workload: reference and pcopy medians, their ratio (and the baseline's)."""
    lines = []
    for row in rows:
        line: dict = {"key": row.key, "workload": SHORT.get(row.key, row.title), "seconds": row.seconds,
                      "reference": row.reference, "note": ""}
        if row.skipped:
            lines.append(dict(line, note=f"skipped: {row.skipped}"))
            continue
        if row.key == "rss":
            e = row.extra
            lines.append(dict(line, reference=None, note=f"{e['peak_single_mb']:.0f} MB largest process, "
                                                           f"{e['peak_tree_mb']:.0f} MB all processes"))
            continue
        if row.key == "scaling":
            for p in row.extra["points"]:
                ref, head = p[row.reference], p[row.headline]
                base = p.get("baseline " + str(row.headline))
                lines.append(dict(line, key=f"scaling-{p['files']}", workload=f"scaling, {p['files']:,} empty files",
                                  unit="µs/file", ref=ref, pcopy=head, ratio=ratio(head, ref),
                                  baseline=ratio(base, ref) if base else None, seconds=p["seconds"]))
            continue
        assert row.headline and row.reference
        ref, head = row.median(row.reference), row.median(row.headline)
        base_name = "baseline " + row.headline
        line.update(unit="s", ref=ref, pcopy=head, ratio=ratio(head, ref),
                    baseline=ratio(row.median(base_name), ref) if base_name in row.times else None)
        if row.key == "bigfile":
            line["workload"] = row.title.replace("tmpfs: one file of", "tmpfs, one file of")
        if row.key == "scheduler":
            line["note"] = f"{row.extra['overhead_us_per_file']:+.1f} µs per file"
        lines.append(line)
    return lines


def print_summary(lines: list[dict], baseline: bool) -> None:
    print("\n## Summary (medians; ratio below 1 = pcopy faster than the reference)\n")
    head = "| workload | reference | reference | pcopy | pcopy / reference |"
    rule = "| --- | --- | ---: | ---: | ---: |"
    if baseline:
        head, rule = head + " baseline / reference |", rule + " ---: |"
    print(head + " note | row took |")
    print(rule + " --- | ---: |")
    for line in lines:
        if "ratio" in line:
            unit = line["unit"]
            fmt = ".1f" if unit == "µs/file" else ".3f"
            cells = [line["workload"], f"`{line['reference']}`", f"{line['ref']:{fmt}} {unit}",
                     f"{line['pcopy']:{fmt}} {unit}", f"**{line['ratio']:.2f}**"]
            if baseline:
                cells.append(f"{line['baseline']:.2f}" if line.get("baseline") else "—")
        else:
            cells = [line["workload"], "—", "—", "—", "—"] + (["—"] if baseline else [])
        cells += [line["note"], f"{line['seconds']:.0f} s"]
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


def write_json(path: str, meta: dict, rows: list[Row], lines: list[dict]) -> None:
    with open(path, "w") as fh:
        json.dump({"meta": meta, "rows": {row.key: row.as_json() for row in rows}, "summary": lines}, fh, indent=1)
        fh.write("\n")
