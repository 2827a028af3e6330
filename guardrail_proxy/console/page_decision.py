"""One decision: what happened, the content (where stored), each phase's checks with the exact policy version
and the classifier's reasoning, a form per (phase, policy) to mark the verdict, every mark made, and this
request's shadow verdicts. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from ..audit_reviews import Review
from .forms import MarkForm
from .html import badge, esc, field_error, options, shell, short, url, when
from .queries import Check, Detail, Judged, PolicyText
from .shadow import ShadowCheck

Labels = Mapping[str, Sequence[tuple[str, str]]]  # policy -> (code, name) of its labels, from the loaded config


@dataclass(frozen=True)
class Posted:
    """A mark that was refused: what the reviewer typed, to show again with the error next to its field."""

    form: MarkForm
    errors: dict[str, str] = field(default_factory=dict)


def summary(detail: Detail) -> str:
    row = detail.row
    facts = [("time", when(row.ts)), ("route", row.route), ("model", row.model), ("client", row.client or "—"),
             ("status", str(row.status)), ("stream", "yes" if detail.stream else "no"),
             ("model called", "yes" if detail.upstream_called else "no"),
             ("duration", f"{detail.duration_ms:.0f} ms" if detail.duration_ms is not None else "—")]
    cells = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in facts)
    error = f'<p class="error-line">{esc(row.error)}</p>' if row.error else ""
    unchecked = (' <span class="badge d-unchecked">unchecked: a failed check let it through</span>'
                 if row.unchecked else "")
    return (f'<div class="page-head"><h1>Decision <span class="mono">{esc(row.request_id)}</span></h1>'
            f"{badge(row.decision)}{unchecked}</div><dl class=\"summary\">{cells}</dl>{error}")


def content_section(detail: Detail, stored_as: str | None) -> str:
    content = detail.content
    if content is None:
        setting = (f"route '{detail.row.route}' has audit_content: {stored_as}" if stored_as else
                   "the route's audit_content setting did not keep it")
        return ('<section class="content"><h2>Content</h2><p class="notice">The content of this request was '
                f"not stored ({esc(setting)}). The verdicts, labels and reasoning below are all there is.</p>"
                "</section>")
    turns = "".join(f'<div class="turn context"><span class="role">{esc(role)} (context)</span>'
                    f'<pre class="text">{esc(text)}</pre></div>' for role, text in content.context)
    turns += (f'<div class="turn judged"><span class="role">{esc(content.input_role)} (the input judged)</span>'
              f'<pre class="text" id="content-input">{esc(content.input)}</pre></div>')
    if content.output is not None:
        turns += ('<div class="turn reply"><span class="role">assistant (the reply)</span>'
                  f'<pre class="text" id="content-output">{esc(content.output)}</pre></div>')
    else:
        turns += '<p class="muted">No reply was kept (refused, failed, or blocked before the model answered).</p>'
    return f'<section class="content"><h2>Content</h2>{turns}</section>'


def policy_version(digest: str, texts: Mapping[str, PolicyText]) -> str:
    found = texts.get(digest)
    if found is None or found.text is None:
        return f'<div class="version"><span class="mono">{esc(short(digest))}</span> (text not stored)</div>'
    return (f'<details class="version"><summary>policy version <span class="mono">{esc(short(digest))}</span>, '
            f"{len(found.text):,} characters</summary><pre class=\"policy-text\">{esc(found.text)}</pre>"
            f'<p class="muted mono">sha256 {esc(digest)}</p></details>')


def check_row(check: Check) -> str:
    outcome = esc(check.error) if check.error else f"{esc(check.result)} <b>{esc(check.label)}</b>"
    extra = " · cached" if check.cached else ""
    latency = f"{check.latency_ms:.0f} ms" if check.latency_ms is not None else "—"
    reasoning = (f'<details class="reasoning" open><summary>reasoning</summary><pre class="text">'
                 f"{esc(check.reasoning)}</pre></details>" if check.reasoning else "")
    rationale = f'<p class="rationale">{esc(check.rationale)}</p>' if check.rationale else ""
    return (f'<tr><td>{esc(check.subject or "")}</td><td class="r-{esc(check.result)}">{outcome}</td>'
            f"<td>{esc(check.severity if check.severity is not None else '')}</td><td>{esc(check.action or '')}</td>"
            f'<td class="nowrap">{latency}{extra}</td></tr>'
            + (f'<tr class="why"><td colspan="5">{rationale}{reasoning}</td></tr>' if reasoning or rationale else ""))


def label_choice(group: Judged, labels: Labels, chosen: str, errors: dict[str, str]) -> str:
    known = labels.get(group.policy)
    if known:
        picks = [("", "choose a label"), *((code, f"{code}: {name}") for code, name in known
                                           if code != group.verdict_label)]
        control = f'<select name="label">{options(picks, chosen)}</select>'
    else:
        control = (f'<input type="text" name="label" value="{esc(chosen)}" maxlength="40" '
                   f'placeholder="the label it should have had">')
    return f'{control}{field_error(errors, "label")}'


def mark_form(detail: Detail, group: Judged, labels: Labels, posted: Posted | None, newest: Review | None) -> str:
    """The form starts from what was posted and refused, else from the newest mark, else from "correct"."""
    mine = posted is not None and (posted.form.phase, posted.form.policy) == (group.phase, group.policy)
    form = posted.form if posted is not None and mine else None
    errors = posted.errors if posted is not None and mine else {}
    verdict = group.verdict_label
    if form is not None:
        correct, chosen = form.correct, form.label
    elif newest is not None:
        correct, chosen = newest.correct, "" if newest.correct else newest.label or ""
    else:
        correct, chosen = verdict is not None, ""
    action = url(f"/decisions/{quote(detail.row.request_id, safe='')}/review")
    return (f'<form method="post" action="{action}" class="mark-form">'
            f'<input type="hidden" name="phase" value="{esc(group.phase)}">'
            f'<input type="hidden" name="policy" value="{esc(group.policy)}">'
            f'<label class="radio"><input type="radio" name="verdict" value="correct"{" checked" if correct else ""}'
            f'{" disabled" if verdict is None else ""}> verdict correct'
            + (f" ({esc(verdict)})" if verdict else " (no verdict: every check failed)") + "</label>"
            f'<label class="radio"><input type="radio" name="verdict" value="wrong"{"" if correct else " checked"}> '
            f"should have been {label_choice(group, labels, chosen, errors)}</label>"
            f'<label>Note<textarea name="note" rows="2" maxlength="2000">{esc(form.note if form else "")}</textarea>'
            f'{field_error(errors, "note")}</label>'
            f'<label>Reviewer<input type="text" name="reviewer" value="{esc(form.reviewer if form else "")}" '
            f'maxlength="80" autocomplete="name" class="reviewer" required>{field_error(errors, "reviewer")}</label>'
            + "".join(field_error(errors, k) for k in ("phase", "policy", "request_id"))
            + '<button type="submit">Save mark</button></form>')


def current_mark(review: Review | None) -> str:
    if review is None:
        return '<p class="muted">Not reviewed yet.</p>'
    verdict = "verdict correct" if review.correct else f"should have been <b>{esc(review.label)}</b>"
    note = f": “{esc(review.note)}”" if review.note else ""
    return (f'<p class="current-mark">Newest mark: {verdict} by {esc(review.reviewer)}, {esc(when(review.ts, False))}'
            f"{note}</p>")


def group_section(detail: Detail, group: Judged, labels: Labels, posted: Posted | None) -> str:
    anchor = f"mark-{group.phase}-{group.policy}"
    newest = next((m for m in detail.row.marks if (m.phase, m.policy) == (group.phase, group.policy)), None)
    actions = sorted({c.action for c in group.checks if c.action})
    head = (f"<h3>{esc(group.phase)} · {esc(group.policy)}</h3><span>verdict <b>{esc(group.verdict_label or '—')}"
            f"</b>" + (f" → {esc(', '.join(actions))}" if actions else "") + "</span>")
    versions = "".join(policy_version(d, detail.texts) for d in group.digests)
    table = ('<table class="checks"><thead><tr><th>text</th><th>result</th><th>severity</th><th>action</th>'
             "<th>latency</th></tr></thead><tbody>" + "".join(check_row(c) for c in group.checks) + "</tbody></table>")
    return (f'<section class="judged" id="{esc(anchor)}"><div class="judged-head">{head}</div>{versions}{table}'
            f'<div class="review">{current_mark(newest)}{mark_form(detail, group, labels, posted, newest)}</div>'
            "</section>")


def history_section(history: Sequence[Review]) -> str:
    """Every mark, newest first (the newest per phase and policy is the one that counts)."""
    if not history:
        return '<section><h2>Marks</h2><p class="muted">No marks yet.</p></section>'
    rows = "".join(f"<tr><td>{esc(when(r.ts, False))}</td><td>{esc(r.reviewer)}</td>"
                   f"<td>{esc(r.phase)} · {esc(r.policy)}</td><td>{esc(r.verdict_label or '—')}</td>"
                   f"<td class=\"mark-cell\">{'correct' if r.correct else 'should be ' + esc(r.label)}</td>"
                   f"<td>{esc(r.note)}</td></tr>"
                   for r in reversed(history))
    return ('<section><h2>Marks</h2><table class="history"><thead><tr><th>time</th><th>reviewer</th><th>verdict of</th>'
            "<th>verdict</th><th>mark</th><th>note</th></tr></thead><tbody>"
            f"{rows}</tbody></table></section>")


def agreement_cell(agree: bool | None) -> str:
    return {True: '<span class="mark ok">agree</span>', False: '<span class="mark wrong">differs</span>',
            None: '<span class="muted">failed</span>'}[agree]


def shadow_row(item: ShadowCheck, texts: Mapping[str, PolicyText]) -> str:
    candidate = f"<b>{esc(item.label or item.result)}</b>" + (f" ({esc(item.error_kind)})" if item.error_kind else "")
    source = f'<span class="muted">from <code>{esc(item.candidate)}</code></span>' if item.candidate else ""
    reasoning = (f'<details class="reasoning"><summary>candidate\'s reasoning</summary><pre class="text">'
                 f"{esc(item.reasoning)}</pre></details>" if item.reasoning else "")
    return (f"<tr><td>{esc(item.phase)}</td><td>{esc(item.policy)}</td>"
            f"<td>{esc(item.enforced_label or item.enforced_result)}</td><td>{candidate}</td>"
            f"<td>{agreement_cell(item.agree)}</td></tr>"
            f'<tr class="why"><td colspan="5">{policy_version(item.candidate_digest, texts)}{source}{reasoning}'
            "</td></tr>")


def shadow_section(shadows: Sequence[ShadowCheck], texts: Mapping[str, PolicyText]) -> str:
    if not shadows:
        return ""
    rows = "".join(shadow_row(s, texts) for s in shadows)
    return ('<section id="shadow"><h2>Shadow verdicts</h2><p class="muted">A candidate policy judged the same text '
            "beside the enforced one; it never changed the decision.</p><table class=\"shadow\"><thead><tr>"
            "<th>phase</th><th>policy</th><th>enforced</th><th>candidate</th><th></th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>")


def decision_page(detail: Detail, labels: Labels, stored_as: str | None, posted: Posted | None = None, *,
                  signed_in: bool = False) -> str:
    """`stored_as`: the route's audit_content setting in the loaded config (None when the route is gone)."""
    groups = "".join(group_section(detail, g, labels, posted) for g in detail.groups)
    if not groups:
        groups = '<p class="muted">No policy judged this request (it was refused before any check).</p>'
    back = f'<p class="back"><a href="{url("/decisions")}">← all decisions</a></p>'
    body = (back + summary(detail) + '<div class="detail-grid"><div>' + content_section(detail, stored_as)
            + history_section(detail.history) + shadow_section(detail.shadows, detail.texts)
            + f'</div><div><h2>Checks</h2>{groups}</div></div>')
    return shell(f"Decision {detail.row.request_id[:16]}", "decisions", body, signed_in=signed_in)
