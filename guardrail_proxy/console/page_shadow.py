"""The shadow page: per policy and candidate version, how often the candidate agreed with the enforced policy
on live traffic, which labels flipped, and every disagreement, each linking to its decision. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from ..audit_reviews import Review
from ..evaluation.svg import rect, svg, text
from .glance import WINDOWS
from .html import decision_link, esc, options, percent, shell, short, url, when
from .shadow import Candidate, ShadowCheck

AGREE, DIFFER, FAILED = "#059669", "#dc2626", "#94a3b8"
METER_WIDTH = 360


def meter(candidate: Candidate) -> str:
    """One bar split into agree / differ / failed, each part with its count as a tooltip."""
    parts, x = [], 0.0
    for name, count, colour in (("agree", candidate.agree, AGREE), ("differ", candidate.disagree, DIFFER),
                                ("failed", candidate.failed, FAILED)):
        if count:
            width = count / candidate.checks * METER_WIDTH
            parts.append(rect(x, 0, width, 16, colour, f"{name}: {count} of {candidate.checks}"))
            x += width
    parts.append(text(METER_WIDTH + 8, 13, f"{percent(candidate.agreement)} agree"))
    return svg(METER_WIDTH + 90, 18, f"agreement of {candidate.policy}", parts)


def candidate_card(candidate: Candidate, titles: Mapping[str, str], window: str) -> str:
    flips = "".join(f"<tr><td>{esc(f.enforced)}</td><td>→</td><td>{esc(f.candidate)}</td><td>{f.count:,}</td></tr>"
                    for f in candidate.flips)
    flip_table = (f'<table class="flips"><thead><tr><th>enforced</th><th></th><th>candidate</th><th>count</th></tr>'
                  f"</thead><tbody>{flips}</tbody></table>" if flips else '<p class="muted">No label flipped.</p>')
    title = titles.get(candidate.policy)
    differ = url("/shadow", urlencode({"policy": candidate.policy, "window": window}))
    return (f'<section class="policy-card shadow-card"><div class="card-head"><h2>{esc(candidate.policy)}</h2>'
            + (f'<span class="muted">{esc(title)}</span>' if title else "")
            + f'<span class="links"><a href="{differ}#disagreements">its disagreements</a></span></div>'
            f'<p>candidate <span class="mono">{esc(short(candidate.digest))}</span>'
            + (f" from <code>{esc(candidate.source)}</code>" if candidate.source else "")
            + f", {candidate.checks:,} shadow checks between {esc(when(candidate.first_ts, False))} and "
            f"{esc(when(candidate.last_ts, False))}: <b>{candidate.agree:,}</b> agree, <b>{candidate.disagree:,}"
            f"</b> differ, {candidate.failed:,} failed.</p>{meter(candidate)}{flip_table}</section>")


def reviewer_side(item: ShadowCheck, review: Review | None) -> str:
    """Whose label the reviewer's newest mark on the enforced verdict matches: the candidate's or the policy's."""
    if review is None:
        return '<span class="muted">not reviewed</span>'
    side = ("candidate" if review.label == item.label else "enforced" if review.label == item.enforced_label
            else "neither")
    return f"<b>{esc(review.label or '—')}</b> <span class=\"side-{side}\">({side})</span>"


def mark_of(item: ShadowCheck, marks: Mapping[str, Sequence[Review]]) -> Review | None:
    return next((m for m in marks.get(item.request_id, ()) if (m.phase, m.policy) == (item.phase, item.policy)), None)


def sides(differences: Sequence[ShadowCheck], marks: Mapping[str, Sequence[Review]]) -> str:
    reviewed = [(d, m) for d in differences if (m := mark_of(d, marks)) is not None]
    if not reviewed:
        return "none of them reviewed yet"
    candidate = sum(m.label == d.label for d, m in reviewed)
    enforced = sum(m.label == d.enforced_label for d, m in reviewed)
    return (f"{len(reviewed)} reviewed: reviewers sided with the candidate in <b>{candidate}</b>, with the enforced "
            f"policy in <b>{enforced}</b>")


def disagreement_row(item: ShadowCheck, review: Review | None) -> str:
    reasoning = (f'<details class="reasoning"><summary>candidate\'s reasoning</summary><pre class="text">'
                 f"{esc(item.reasoning)}</pre></details>" if item.reasoning else "")
    rationale = f'<div class="rationale">{esc(item.rationale)}</div>' if item.rationale else ""
    return (f'<tr><td class="nowrap">{esc(when(item.ts))}</td><td>{decision_link(item.request_id, "shadow")}</td>'
            f"<td>{esc(item.route)}</td><td>{esc(item.phase)}</td><td>{esc(item.policy)}</td>"
            f"<td>{esc(item.enforced_label or item.enforced_result)}</td>"
            f"<td><b>{esc(item.label or item.result)}</b></td>"
            f"<td>{reviewer_side(item, review)}</td><td>{rationale}{reasoning}</td></tr>")


def shadow_page(window: str, policy: str, candidates: Sequence[Candidate], differences: Sequence[ShadowCheck],
                marks: Mapping[str, Sequence[Review]], policies: Sequence[str], titles: Mapping[str, str], *,
                signed_in: bool = False) -> str:
    """`marks`: request_id -> the newest marks on it, to say whose side a reviewer took on a disagreement."""
    picks = options([("", "all policies"), *((p, p) for p in dict.fromkeys([*policies, *(c.policy for c in
                                                                                          candidates)]))], policy)
    windows = options([(w, w) for w in WINDOWS], window)
    head = ('<div class="page-head"><h1>Shadow policies</h1><span class="muted">candidate versions judged beside '
            "the enforced ones on live traffic; they never change a decision</span></div>"
            f'<form method="get" action="{url("/shadow")}" class="filters"><label>Policy<select name="policy">{picks}'
            f'</select></label><label>Window<select name="window">{windows}</select></label>'
            '<button type="submit">Show</button></form>')
    if not candidates:
        return shell("Shadow", "shadow", head + '<p class="empty">No shadow verdicts in this window. A route runs a '
                     "candidate beside a policy when its config names one.</p>", signed_in=signed_in)
    cards = "".join(candidate_card(c, titles, window) for c in candidates)
    rows = "".join(disagreement_row(d, mark_of(d, marks)) for d in differences)
    table = ('<section id="disagreements"><h2>Disagreements</h2><p class="muted">newest first, at most 200; '
             f"{sides(differences, marks)}. Open one to review the enforced verdict.</p>"
             "<table class=\"disagreements\"><thead><tr><th>time</th><th>request</th><th>route</th><th>phase</th>"
             "<th>policy</th><th>enforced</th><th>candidate</th><th>reviewer</th><th>why</th>"
             f"</tr></thead><tbody>{rows}</tbody></table></section>" if rows else
             '<p class="empty">The candidates agreed with every enforced verdict they could judge.</p>')
    return shell("Shadow", "shadow", head + f'<div class="cards">{cards}</div>' + table, signed_in=signed_in)
