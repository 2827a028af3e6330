"""The two charts of report.html, drawn as inline SVG text: bars of ratios (one row per group, one bar per
series) and a histogram. Pure; each function returns one `<svg>` element sized in pixels.

Hand-written rather than plotted by a library: the page must open anywhere, offline, and these two shapes
need a few rectangles and labels. Every bar is a `<rect class="bar">` with its exact value in a `<title>`
child, which a browser shows as a tooltip. Labels are escaped: group names come from datasets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from .formatting import ms, one_line, ratio

COLOURS = ("#2563eb", "#f59e0b", "#10b981")  # one per series, in order
LABEL_WIDTH = 220  # the group names, left of the bars
BAR_SPAN = 360  # the width of a bar at 1.0
VALUE_WIDTH = 120  # room right of a full bar for its value label
BAR_HEIGHT = 14
ROW_GAP = 8
LEGEND_HEIGHT = 22
PLOT_WIDTH = 600
PLOT_HEIGHT = 160
MARGIN_LEFT = 48
MARGIN_BOTTOM = 34
MARGIN_TOP = 12


def svg(width: float, height: float, label: str, parts: Sequence[str]) -> str:
    return (f'<svg width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
            f'aria-label="{escape(label)}">' + "".join(parts) + "</svg>")


def text(x: float, y: float, content: str, anchor: str = "start", tooltip: str | None = None) -> str:
    title = f"<title>{escape(tooltip)}</title>" if tooltip else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{escape(content)}{title}</text>'


def rect(x: float, y: float, width: float, height: float, colour: str, tooltip: str, kind: str = "bar") -> str:
    return (f'<rect class="{kind}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
            f'fill="{colour}"><title>{escape(tooltip)}</title></rect>')


def line(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line class="axis" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#888"/>'


def legend(series: Sequence[str]) -> list[str]:
    parts: list[str] = []
    for i, name in enumerate(series):
        x = LABEL_WIDTH + i * 110
        parts += [rect(x, 4, 12, 12, COLOURS[i % len(COLOURS)], name, "key"), text(x + 16, 14, name)]
    return parts


def bar_chart(rows: Sequence[tuple[str, Sequence[float | None]]], series: Sequence[str]) -> str:
    """One row per (name, values); values are ratios in [0, 1], one per series. None draws no bar, only n/a."""
    step = BAR_HEIGHT * len(series) + ROW_GAP
    parts = legend(series)
    for i, (name, values) in enumerate(rows):
        top = LEGEND_HEIGHT + i * step
        parts.append(text(LABEL_WIDTH - 8, top + step / 2, one_line(name, 32), "end", name))
        for j, (label, value) in enumerate(zip(series, values, strict=True)):
            y = top + j * BAR_HEIGHT
            width = 0.0 if value is None else max(0.0, min(1.0, value)) * BAR_SPAN
            if value is not None:
                parts.append(rect(LABEL_WIDTH, y, width, BAR_HEIGHT - 2, COLOURS[j % len(COLOURS)],
                                  f"{name}: {label} {ratio(value)}"))
            parts.append(text(LABEL_WIDTH + width + 4, y + BAR_HEIGHT - 3, f"{label} {ratio(value)}"))
    height = LEGEND_HEIGHT + len(rows) * step
    return svg(LABEL_WIDTH + BAR_SPAN + VALUE_WIDTH, height, "bars: " + ", ".join(series), parts)


def bin_counts(values: Sequence[float], bins: int) -> tuple[float, float, list[int]]:
    """(lowest value, bin width, count per bin); bins are equal slices of [min, max], the last one closed."""
    low, high = min(values), max(values)
    width = (high - low) / bins if high > low else 1.0 / bins  # all equal: everything lands in the first bin
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, math.floor((value - low) / width))] += 1
    return low, width, counts


def histogram(values: Sequence[float], bins: int = 20, noun: str = "items") -> str:
    """Latencies in ms -> bars of counts; every bin has a rect (an empty one is 0 high) and a tooltip."""
    low, width, counts = bin_counts(values, bins)
    most = max(counts)
    step = PLOT_WIDTH / bins
    base = MARGIN_TOP + PLOT_HEIGHT
    parts = [line(MARGIN_LEFT, base, MARGIN_LEFT + PLOT_WIDTH, base), line(MARGIN_LEFT, MARGIN_TOP, MARGIN_LEFT, base),
             text(MARGIN_LEFT - 6, base, "0", "end"), text(MARGIN_LEFT - 6, MARGIN_TOP + 10, str(most), "end")]
    for i, n in enumerate(counts):
        height = n / most * PLOT_HEIGHT
        start = low + i * width
        parts.append(rect(MARGIN_LEFT + i * step + 1, base - height, step - 2, height, COLOURS[0],
                          f"{ms(start)} to {ms(start + width)}: {n} {noun}"))
    for i in range(0, bins + 1, max(1, bins // 4)):
        x = MARGIN_LEFT + i * step
        parts += [line(x, base, x, base + 4), text(x, base + 18, ms(low + i * width), "middle")]
    return svg(MARGIN_LEFT + PLOT_WIDTH + 40, base + MARGIN_BOTTOM, f"histogram of {len(values)} latencies", parts)
