"""The overview's SVG charts: exact values in tooltips, gaps rather than false zeros, a scale that shows small
rates, escaped labels."""

from __future__ import annotations

import re

import pytest

from guardrail_proxy.console.plots import Series, scale_top, share_lines, stacked_bars

LABELS = ["09:00", "10:00", "11:00"]


def titles(svg: str) -> list[str]:
    return re.findall(r"<title>([^<]*)</title>", svg)


def test_stacked_bars_carry_exact_counts() -> None:
    svg = stacked_bars("decisions", LABELS, [Series("passed", "#999", [5, 0, 2]), Series("blocked", "#d00", [1, 0, 0])])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "09:00: 5 passed of 6 requests" in titles(svg) and "09:00: 1 blocked of 6 requests" in titles(svg)
    assert not any(t.startswith("10:00") for t in titles(svg))  # nothing there: no bar
    assert svg.count('class="bar"') == 3


def test_no_data_says_so() -> None:
    assert "no requests in this window" in stacked_bars("d", LABELS, [Series("passed", "#999", [0, 0, 0])])
    assert "nothing here" in share_lines("a", LABELS, [Series("x", "#000", [None] * 3)], nothing="nothing here")


def test_lines_leave_gaps_and_say_what_a_point_is() -> None:
    svg = share_lines("agreement", LABELS, [Series("reviewers", "#00f", [0.5, None, 1.0], ["1 of 2", "", "3 of 3"])],
                      fixed=True)
    assert svg.count("<polyline") == 0  # two points separated by a gap: no segment joins them
    assert titles(svg)[-2:] == ["09:00: reviewers 50% (1 of 2)", "11:00: reviewers 100% (3 of 3)"]
    joined = share_lines("a", LABELS, [Series("r", "#00f", [0.5, 0.6, None])], fixed=True)
    assert joined.count("<polyline") == 1


@pytest.mark.parametrize(("values", "fixed", "top"), [
    ([0.01, None], False, 0.05),
    ([0.07], False, 0.1),
    ([0.2], False, 0.25),
    ([0.3], False, 0.5),
    ([0.9], False, 1.0),
    ([0.01], True, 1.0),
    ([None], False, 0.05),
])
def test_scale(values, fixed, top) -> None:
    assert scale_top([Series("s", "#000", values)], fixed) == top


def test_labels_are_escaped() -> None:
    svg = stacked_bars("d", ["<b>"], [Series("<script>", "#000", [1])])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "<b>" not in svg
