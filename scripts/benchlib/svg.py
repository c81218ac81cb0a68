"""--plot FILE.svg: the ratios per workload as bars and µs per file against file count as lines.

Plain SVG text, no plotting library: a horizontal bar per summary line (pcopy / reference, a
dashed line at 1.0, the baseline's ratio as a thinner bar under it) and, when the scaling row
ran, a log-x line chart of µs per file for each tool.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

WIDTH = 860
LABEL = 300  # left column for workload names
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def text(x: float, y: float, s: str, *, size: int = 12, anchor: str = "start", weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}">{escape(s)}</text>')


def bars(lines: list[dict], top: float) -> tuple[list[str], float]:
    rated = [line for line in lines if line.get("ratio") is not None and math.isfinite(line["ratio"])]
    if not rated:
        return [], top
    out = [text(10, top + 16, "pcopy / reference (median; below 1 = pcopy faster)", size=14, weight="bold")]
    top += 32
    biggest = max([1.2] + [line["ratio"] for line in rated] + [line["baseline"] or 0 for line in rated])
    step = next(s for s in (0.25, 0.5, 1, 2, 5, 10, 100) if biggest / s <= 10)
    scale_max = math.ceil(biggest / step) * step
    plot_w = WIDTH - LABEL - 70
    x = lambda v: LABEL + v / scale_max * plot_w  # noqa: E731
    pitch = 26
    height = pitch * len(rated)
    for tick in [i * step for i in range(round(scale_max / step) + 1)]:
        out.append(f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{top + height}" '
                   f'stroke="#ddd"/>')
        out.append(text(x(tick), top + height + 14, f"{tick:g}", size=10, anchor="middle"))
    for i, line in enumerate(rated):
        y = top + i * pitch
        colour = "#2ca02c" if line["ratio"] <= 1 else "#ff7f0e"
        out.append(text(LABEL - 8, y + 15, line["workload"], anchor="end"))
        out.append(f'<rect x="{LABEL}" y="{y + 4}" width="{x(line["ratio"]) - LABEL:.1f}" height="14" '
                   f'fill="{colour}"/>')
        out.append(text(x(line["ratio"]) + 4, y + 15, f"{line['ratio']:.2f}", size=11))
        if line.get("baseline"):
            out.append(f'<rect x="{LABEL}" y="{y + 19}" width="{x(line["baseline"]) - LABEL:.1f}" height="4" '
                       f'fill="#888"><title>baseline {line["baseline"]:.2f}</title></rect>')
    out.append(f'<line x1="{x(1):.1f}" y1="{top - 4}" x2="{x(1):.1f}" y2="{top + height + 2}" stroke="#000" '
               'stroke-dasharray="4 3"/>')
    return out, top + height + 30


def lines_chart(points: list[dict], top: float) -> tuple[list[str], float]:
    tools = [name for name in points[0] if name not in ("files", "build_s", "seconds")]
    out = [text(10, top + 16, "µs per file vs number of files (empty files, tmpfs)", size=14, weight="bold")]
    top += 30
    left, right, height = 80, WIDTH - 200, 260
    lo, hi = math.log10(min(p["files"] for p in points)), math.log10(max(p["files"] for p in points))
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    ymax = max(p[name] for p in points for name in tools) * 1.15 or 1.0
    x = lambda n: left + (math.log10(n) - lo) / (hi - lo) * (right - left)  # noqa: E731
    y = lambda v: top + height - v / ymax * height  # noqa: E731
    out.append(f'<line x1="{left}" y1="{top + height}" x2="{right}" y2="{top + height}" stroke="#000"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + height}" stroke="#000"/>')
    for p in points:
        out.append(text(x(p["files"]), top + height + 16, f"{p['files']:,}", size=10, anchor="middle"))
    for i in range(6):
        v = ymax * i / 5
        out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{right}" y2="{y(v):.1f}" stroke="#eee"/>')
        out.append(text(left - 6, y(v) + 4, f"{v:.0f}", size=10, anchor="end"))
    out.append(text(20, top + height / 2, "µs/file", size=11, anchor="middle"))
    for k, name in enumerate(tools):
        colour = COLOURS[k % len(COLOURS)]
        coords = " ".join(f"{x(p['files']):.1f},{y(p[name]):.1f}" for p in points)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in points:
            out.append(f'<circle cx="{x(p["files"]):.1f}" cy="{y(p[name]):.1f}" r="3" fill="{colour}">'
                       f'<title>{escape(name)}: {p[name]:.1f} µs/file at {p["files"]:,}</title></circle>')
        out.append(f'<rect x="{right + 15}" y="{top + 10 + k * 20}" width="12" height="3" fill="{colour}"/>')
        out.append(text(right + 32, top + 15 + k * 20, name, size=11))
    return out, top + height + 40


def write_svg(path: str, title: str, lines: list[dict], points: list[dict] | None) -> None:
    body = [text(10, 22, title, size=15, weight="bold")]
    chart, top = bars(lines, 36)
    body += chart
    if points:
        chart, top = lines_chart(points, top)
        body += chart
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{top:.0f}" '
           f'viewBox="0 0 {WIDTH} {top:.0f}" font-family="sans-serif">\n'
           f'<rect width="100%" height="100%" fill="#fff"/>\n' + "\n".join(body) + "\n</svg>\n")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(svg)
