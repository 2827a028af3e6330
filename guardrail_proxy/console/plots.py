"""The overview's charts as inline SVG: stacked bars of counts per period, and lines of shares per period.
Pure; built from evaluation/svg.py's pieces (a page that opens offline, with exact values in tooltips).

Every bar segment and every point carries a `<title>` with its period and exact numbers, so a reviewer
hovering reads the value rather than estimating it. A period with nothing to measure has no point (a gap
in the line), never a zero that would read as "nobody agreed".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from ..evaluation.svg import line, rect, svg, text
from .html import percent

WIDTH = 410
HEIGHT = 150
LEFT = 40
RIGHT = 8
TOP = 22
BOTTOM = 22


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    values: Sequence[float | None]
    notes: Sequence[str] = ()  # per period: what the tooltip adds (counts behind a share)


def plot_width() -> float:
    return WIDTH - LEFT - RIGHT


def plot_height() -> float:
    return HEIGHT - TOP - BOTTOM


def x_axis(labels: Sequence[str]) -> list[str]:
    step = plot_width() / max(1, len(labels))
    every = max(1, round(len(labels) / 6))
    base = TOP + plot_height()
    parts = [line(LEFT, base, LEFT + plot_width(), base)]
    for i, label in enumerate(labels):
        if i % every == 0:
            parts.append(text(LEFT + (i + 0.5) * step, base + 14, label, "middle"))
    return parts


def legend(series: Sequence[Series]) -> list[str]:
    parts, x = [], float(LEFT)
    for item in series:
        parts += [rect(x, 5, 10, 10, item.colour, item.name, "key"), text(x + 14, 14, item.name)]
        x += 20 + 6.2 * len(item.name)
    return parts


def empty(title: str, message: str) -> str:
    return svg(WIDTH, HEIGHT, f"{title}: {message}",
               [text(WIDTH / 2, HEIGHT / 2, message, "middle")])


def stacked_bars(title: str, labels: Sequence[str], series: Sequence[Series], noun: str = "requests") -> str:
    """Counts per period, one stacked bar per period, one segment per series (bottom first)."""
    totals = [sum(int(s.values[i] or 0) for s in series) for i in range(len(labels))]
    most = max(totals, default=0)
    if most == 0:
        return empty(title, f"no {noun} in this window")
    step = plot_width() / len(labels)
    base = TOP + plot_height()
    parts = [*legend(series), *x_axis(labels), line(LEFT, TOP, LEFT, base),
             text(LEFT - 4, TOP + 8, str(most), "end"), text(LEFT - 4, base, "0", "end")]
    for i, label in enumerate(labels):
        y = base
        for item in series:
            value = int(item.values[i] or 0)
            if not value:
                continue
            height = value / most * plot_height()
            y -= height
            parts.append(rect(LEFT + i * step + 1, y, max(1.0, step - 2), height, item.colour,
                              f"{label}: {value} {item.name} of {totals[i]} {noun}"))
    return svg(WIDTH, HEIGHT, title, parts)


def point(x: float, y: float, colour: str, tooltip: str) -> str:
    return (f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
            f"<title>{escape(tooltip)}</title></circle>")


def polyline(points: Sequence[tuple[float, float]], colour: str) -> str:
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline class="trend" points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>'


def scale_top(series: Sequence[Series], fixed: bool) -> float:
    """1.0 for agreement; for rates the smallest of 5%, 10%, 25%, 50%, 100% above the highest value, so that a
    1% error rate is not a flat line at the bottom."""
    if fixed:
        return 1.0
    highest = max((v for s in series for v in s.values if v is not None), default=0.0)
    return next((top for top in (0.05, 0.1, 0.25, 0.5) if highest <= top), 1.0)


def share_lines(title: str, labels: Sequence[str], series: Sequence[Series], *, fixed: bool = False,
                nothing: str = "nothing to measure in this window") -> str:
    """Shares in [0, 1] per period, one line per series; None leaves a gap."""
    if all(v is None for s in series for v in s.values):
        return empty(title, nothing)
    top = scale_top(series, fixed)
    step = plot_width() / len(labels)
    base = TOP + plot_height()
    parts = [*legend(series), *x_axis(labels), line(LEFT, TOP, LEFT, base),
             text(LEFT - 4, TOP + 8, percent(top), "end"), text(LEFT - 4, base, "0%", "end"),
             text(LEFT - 4, TOP + plot_height() / 2 + 4, percent(top / 2), "end"),
             f'<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{LEFT + plot_width():.1f}" y2="{TOP}"/>',
             f'<line class="grid" x1="{LEFT}" y1="{TOP + plot_height() / 2:.1f}" x2="{LEFT + plot_width():.1f}" '
             f'y2="{TOP + plot_height() / 2:.1f}"/>']
    for item in series:
        run: list[tuple[float, float]] = []
        dots: list[str] = []
        for i, value in enumerate(item.values):
            if value is None:
                if len(run) > 1:
                    parts.append(polyline(run, item.colour))
                run = []
                continue
            x = LEFT + (i + 0.5) * step
            y = base - min(value, top) / top * plot_height()
            run.append((x, y))
            note = item.notes[i] if i < len(item.notes) else ""
            dots.append(point(x, y, item.colour, f"{labels[i]}: {item.name} {percent(value)}"
                              + (f" ({note})" if note else "")))
        if len(run) > 1:
            parts.append(polyline(run, item.colour))
        parts += dots
    return svg(WIDTH, HEIGHT, title, parts)
