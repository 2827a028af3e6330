"""The decisions list: a filter (route, policy, label, decision, since/until, unchecked, reviewed), then the
matching records newest first, a page at a time, each linking to its decision page. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..audit_reviews import Review
from .forms import DECISIONS, FilterForm
from .html import badge, decision_url, esc, field_error, options, shell, url, when
from .queries import DecisionPage, Row


@dataclass(frozen=True)
class Choices:
    """What the filter suggests, from the loaded config."""

    routes: Sequence[str] = ()
    policies: Sequence[str] = ()
    labels: Sequence[str] = ()


def datalist(name: str, values: Sequence[str]) -> str:
    return f'<datalist id="{esc(name)}-choices">' + "".join(f'<option value="{esc(v)}">' for v in values) + \
        "</datalist>"


def text_input(form: FilterForm, name: str, label: str, placeholder: str = "", suggest: bool = False) -> str:
    extra = f' list="{esc(name)}-choices"' if suggest else ""
    return (f'<label>{esc(label)}<input type="text" name="{esc(name)}" value="{esc(form.values.get(name, ""))}" '
            f'placeholder="{esc(placeholder)}"{extra}>{field_error(form.errors, name)}</label>')


def filter_bar(form: FilterForm, choices: Choices, action: str = "/decisions", reviewed_filter: bool = True) -> str:
    decisions = options([("", "any"), *((d, d) for d in DECISIONS)], form.values.get("decision", ""))
    reviewed = options([("", "any"), ("yes", "reviewed"), ("no", "not reviewed")], form.values.get("reviewed", ""))
    checked = " checked" if form.values.get("unchecked") == "1" else ""
    return (f'<form method="get" action="{url(action)}" class="filters" id="filters">'
            + text_input(form, "route", "Route", "any", True) + text_input(form, "policy", "Policy", "any", True)
            + text_input(form, "label", "Label", "e.g. TV2", True)
            + f'<label>Decision<select name="decision">{decisions}</select>{field_error(form.errors, "decision")}'
              "</label>"
            + text_input(form, "since", "Since", "24h, 7d, 2026-11-29T10:00")
            + text_input(form, "until", "Until", "now")
            + (f'<label>Reviewed<select name="reviewed">{reviewed}</select></label>' if reviewed_filter else "")
            + f'<label class="check"><input type="checkbox" name="unchecked" value="1"{checked}> unchecked only</label>'
            + f'<button type="submit">Filter</button><a class="button-link" href="{url(action)}">Clear</a>'
            + datalist("route", choices.routes) + datalist("policy", choices.policies)
            + datalist("label", choices.labels) + "</form>")


def mark_text(review: Review) -> str:
    if review.correct:
        return f'<span class="mark ok" title="{esc(review.reviewer)}">✓ {esc(review.phase)} {esc(review.policy)}</span>'
    return (f'<span class="mark wrong" title="{esc(review.reviewer)}">✗ {esc(review.phase)} {esc(review.policy)} '
            f"→ {esc(review.label)}</span>")


def row_html(row: Row) -> str:
    found = "<br>".join(esc(v) for v in row.violations) or '<span class="muted">none</span>'
    if row.error:
        found += f'<div class="muted clip">{esc(row.error[:160])}</div>'
    marks = " ".join(mark_text(m) for m in row.marks) or '<span class="muted">—</span>'
    return (f'<tr><td class="nowrap">{esc(when(row.ts))}</td>'
            f'<td><a class="mono" href="{decision_url(row.request_id)}">{esc(row.request_id[:16])}</a></td>'
            f"<td>{esc(row.route)}</td><td>{badge(row.decision)}"
            + (' <span class="badge d-unchecked">unchecked</span>' if row.unchecked and row.decision != "unchecked"
               else "")
            + f"</td><td>{row.status}</td><td>{found}</td><td>{marks}</td><td>{esc(row.client or '')}</td></tr>")


def pager(form: FilterForm, page: DecisionPage) -> str:
    first = (page.page - 1) * page.per_page + 1
    last = first + len(page.rows) - 1
    shown = f"{first:,}–{last:,} of {page.total:,}" if page.rows else f"0 of {page.total:,}"
    links = []
    if page.page > 1:
        links.append(f'<a rel="prev" href="{url("/decisions", form.query(page=str(page.page - 1)))}">← newer</a>')
    if page.page < page.pages:
        links.append(f'<a rel="next" href="{url("/decisions", form.query(page=str(page.page + 1)))}">older →</a>')
    return f'<div class="pager"><span>{shown}</span>{" ".join(links)}</div>'


def decisions_page(form: FilterForm, page: DecisionPage | None, choices: Choices, *, signed_in: bool = False) -> str:
    """`page` is None when the filter has errors (shown next to their fields)."""
    export = url("/export", form.query(page=""))
    head = (f'<div class="page-head"><h1>Decisions</h1><span class="muted">newest first</span>'
            f'<a class="button-link" href="{export}">Export reviewed items of this filter</a></div>')
    if page is None:
        table = '<p class="empty">Fix the filter above.</p>'
    elif not page.rows:
        table = '<p class="empty">No decisions match this filter.</p>'
    else:
        table = ('<table class="decisions"><thead><tr><th>time</th><th>request</th><th>route</th><th>decision</th>'
                 "<th>status</th><th>violations</th><th>review</th><th>client</th></tr></thead><tbody>"
                 + "".join(row_html(r) for r in page.rows) + "</tbody></table>" + pager(form, page))
    return shell("Decisions", "decisions", head + filter_bar(form, choices) + table, signed_in=signed_in)
