"""The overview: per policy, at a glance and as plots, over the last 24 hours (hourly), 7 or 30 days (daily):
decisions over time, block rate, error and unchecked rate, reviewer agreement and shadow agreement. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from .glance import WINDOWS, Glance, Point
from .html import esc, percent, shell, url
from .plots import Series, share_lines, stacked_bars

PASSED, FLAGGED, BLOCKED, FAILED = "#94a3b8", "#f59e0b", "#dc2626", "#7c3aed"
UNCHECKED, REVIEWERS, SHADOW = "#0891b2", "#2563eb", "#059669"


def window_picker(current: str) -> str:
    active = ' class="active" aria-current="page"'
    links = "".join(f'<a href="{url("/", urlencode({"window": name}))}"{active if name == current else ""}>'
                    f"{esc(name)}</a>" for name in WINDOWS)
    return f'<nav class="segmented" aria-label="window">{links}</nav>'


def counted(points: Sequence[Point], part: str, whole: str) -> list[str]:
    return [f"{getattr(p, part)} of {getattr(p, whole)}" for p in points]


def charts(labels: list[str], points: Sequence[Point]) -> str:
    decisions = stacked_bars("decisions over time", labels, [
        Series("passed", PASSED, [p.passed for p in points]),
        Series("flagged", FLAGGED, [p.violations - p.blocks for p in points]),
        Series("blocked", BLOCKED, [p.blocks for p in points]),
        Series("failed", FAILED, [p.failed_only for p in points])])  # a request is in one segment only
    rates = share_lines("block, error and unchecked rate", labels, [
        Series("block rate", BLOCKED, [p.block_rate for p in points], counted(points, "blocks", "requests")),
        Series("error rate", FAILED, [p.error_rate for p in points], counted(points, "errors", "requests")),
        Series("unchecked", UNCHECKED, [p.unchecked_rate for p in points], counted(points, "unchecked", "requests"))],
        nothing="no decisions in this window")
    agreement = share_lines("reviewer and shadow agreement", labels, [
        Series("reviewers: correct", REVIEWERS, [p.reviewer_agreement for p in points],
               counted(points, "correct", "reviewed")),
        Series("shadow agrees", SHADOW, [p.shadow_agreement for p in points],
               [f"{p.shadow_agree} of {p.shadow_agree + p.shadow_disagree}" for p in points])],
        fixed=True, nothing="no reviews or shadow verdicts in this window")
    return (f'<div class="charts"><figure>{decisions}<figcaption>Decisions over time</figcaption></figure>'
            f"<figure>{rates}<figcaption>Block, error and unchecked rate</figcaption></figure>"
            f"<figure>{agreement}<figcaption>Reviewer and shadow agreement</figcaption></figure></div>")


def facts(total: Point) -> str:
    shadow_judged = total.shadow_agree + total.shadow_disagree
    items = [f"<b>{total.requests:,}</b> requests judged",
             f"<b>{percent(total.block_rate)}</b> blocked ({total.blocks:,})",
             f"<b>{percent(total.error_rate)}</b> failed checks ({total.errors:,})",
             f"<b>{percent(total.unchecked_rate)}</b> unchecked ({total.unchecked:,})",
             f"reviewers marked <b>{total.correct}</b> of <b>{total.reviewed}</b> reviewed verdicts correct"
             if total.reviewed else "no reviewed verdicts",
             f"shadow agreed on <b>{percent(total.shadow_agreement)}</b> of {shadow_judged:,}"
             + (f" ({total.shadow_failed:,} failed)" if total.shadow_failed else "")
             if shadow_judged or total.shadow_failed else "no shadow verdicts"]
    return '<ul class="facts">' + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def overview_page(glance: Glance, policies: Sequence[str], titles: Mapping[str, str], *,
                  signed_in: bool = False) -> str:
    """`policies`: the loaded config's, in order; policies found only in the store follow them."""
    labels = [p.label(glance.size) for p in glance.periods]
    ordered = list(dict.fromkeys([*policies, *glance.series]))
    since = glance.window  # the same words are a --since
    cards = []
    for policy in ordered:
        points = glance.series.get(policy)
        title = titles.get(policy)
        links = (f'<a href="{url("/decisions", urlencode({"policy": policy, "since": since}))}">decisions</a> · '
                 f'<a href="{url("/decisions", urlencode({"policy": policy, "since": since, "reviewed": "no"}))}">'
                 f'to review</a> · <a href="{url("/shadow", urlencode({"policy": policy, "window": glance.window}))}">'
                 "shadow</a>")
        head = (f'<div class="card-head"><h2>{esc(policy)}</h2>'
                + (f'<span class="muted">{esc(title)}</span>' if title else "") + f'<span class="links">{links}</span>')
        if not points:  # nothing judged, marked or shadowed in the window: one line, not three empty charts
            cards.append(f'<section class="policy-card quiet" id="policy-{esc(policy)}">{head}'
                         '<span class="muted">no decisions in this window</span></div></section>')
            continue
        cards.append(f'<section class="policy-card" id="policy-{esc(policy)}">{head}</div>'
                     f"{facts(glance.total(policy))}{charts(labels, points)}</section>")
    if not cards:
        cards.append('<p class="empty">No policies are loaded and the store holds no checks yet.</p>')
    body = (f'<div class="page-head"><h1>Overview</h1><span class="muted">{esc(WINDOWS[glance.window].title)}, '
            f"UTC</span>{window_picker(glance.window)}</div>" + "".join(cards))
    return shell("Overview", "overview", body, signed_in=signed_in)
