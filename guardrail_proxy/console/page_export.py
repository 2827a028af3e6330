"""The export page: the reviewed items of a filter, previewed, and downloadable as a policy-lab dataset
(JSONL, the rows review_export.run_reviewed builds, download.py), ready for `guardrail-proxy eval --dataset`.
Pure.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from .download import EXPORT_LIMIT
from .forms import FilterForm
from .html import decision_link, esc, shell, url
from .page_decisions import Choices, filter_bar

PREVIEW = 20


def preview_row(row: dict[str, Any]) -> str:
    request_id = str(row.get("id", "")).removesuffix(f"-{row.get('policy')}").removesuffix("-reply")
    mark = "correct" if row.get("correct") else f"was {row.get('verdict_label') or '—'}"
    return (f"<tr><td>{decision_link(request_id)}</td><td>{esc(row.get('role'))}</td><td>{esc(row.get('policy'))}"
            f"</td><td><b>{esc(row.get('label'))}</b> <span class=\"muted\">({esc(mark)})</span></td>"
            f"<td>{esc(row.get('reviewer'))}</td><td class=\"clip\">{esc(str(row.get('text', ''))[:200])}</td>"
            f"<td>{esc(row.get('note'))}</td></tr>")


def cap_note(form: FilterForm) -> str:
    """Said when the filter may hold more rows than a browser download carries."""
    flags = [f"--{name} {shlex.quote(form.values[name])}" for name in ("since", "until", "route", "label", "decision")
             if form.values.get(name)] + (["--unchecked"] if form.filters.unchecked else [])
    command = " ".join(["guardrail-proxy audit export --reviewed",
                        f"--policy {shlex.quote(form.filters.policy or 'POLICY')}", *flags, "--out reviewed.jsonl"])
    return (f'<p class="notice" id="export-cap">A download carries the newest {EXPORT_LIMIT:,} rows at most; when '
            f"this filter holds more, the file's name ends in <code>-first-{EXPORT_LIMIT}</code>. Narrow the filter "
            f'(a shorter time range), or export everything from the command line:</p><pre class="command">'
            f"{esc(command)}</pre>")


def export_page(form: FilterForm, rows: Sequence[dict[str, Any]] | None, counted_up_to: int, choices: Choices, *,
                signed_in: bool = False) -> str:
    """`rows`: the export of this filter, at most `counted_up_to` of them (None when the filter has errors)."""
    policy = form.filters.policy
    head = ('<div class="page-head"><h1>Export reviewed items</h1><span class="muted">each reviewer\'s newest mark '
            "with the text it judged, as a dataset for <code>guardrail-proxy eval --dataset</code></span></div>")
    hint = ("" if policy else '<p class="notice">No policy chosen: rows of every policy are exported, each naming '
            "its policy. `eval` checks labels against the one policy it runs, so pick a policy for a file to feed "
            "it directly.</p>")
    if rows is None:
        result = '<p class="empty">Fix the filter above.</p>'
    elif not rows:
        result = ('<p class="empty">No reviewed items with stored content match this filter. Items are exported '
                  "only when their route stored the content (audit_content) and a reviewer marked them.</p>")
    else:
        many = f"{len(rows):,}+" if len(rows) >= counted_up_to else f"{len(rows):,}"
        link = url("/export.jsonl", form.query(page="", reviewed=""))
        result = (f'<p class="export-count"><span><b>{many}</b> rows</span>'
                  f'<a class="button-link primary" id="download" href="{link}" download>Download JSONL</a></p>'
                  f'<pre class="command">guardrail-proxy eval --policy {esc(policy or "POLICY.md")} '
                  "--dataset reviewed.jsonl\nguardrail-proxy eval --compare old.md new.md --dataset reviewed.jsonl"
                  "</pre><table class=\"preview\"><thead><tr><th>request</th><th>role</th><th>policy</th><th>label</th>"
                  "<th>reviewer</th><th>text</th><th>note</th></tr></thead><tbody>"
                  + "".join(preview_row(r) for r in rows[:PREVIEW]) + "</tbody></table>"
                  + (f'<p class="muted">The first {PREVIEW} rows are shown.</p>' if len(rows) > PREVIEW else "")
                  + (cap_note(form) if len(rows) >= counted_up_to else ""))
    bar = filter_bar(form, choices, "/export", reviewed_filter=False)  # only reviewed items are exported anyway
    return shell("Export", "export", head + bar + hint + result, signed_in=signed_in)
