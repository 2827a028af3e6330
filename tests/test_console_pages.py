"""The console's pages as pure functions of typed values: everything stored is escaped (content, reasoning and
notes are attacker-controlled), nothing needs inline script or style, and each page shows what it promises."""

from __future__ import annotations

import re

import pytest
from console_seed import CANDIDATE, VIOLENCE, check, content, record, shadow

from guardrail_proxy.audit_reviews import make_review
from guardrail_proxy.console.download import file_name, jsonl
from guardrail_proxy.console.forms import MarkForm, filter_form
from guardrail_proxy.console.glance import Glance, Point, periods
from guardrail_proxy.console.html import login_page, message_page
from guardrail_proxy.console.page_decision import Posted, decision_page
from guardrail_proxy.console.page_decisions import Choices, decisions_page
from guardrail_proxy.console.page_export import export_page
from guardrail_proxy.console.page_overview import overview_page
from guardrail_proxy.console.page_shadow import shadow_page
from guardrail_proxy.console.queries import (
    DecisionPage,
    Detail,
    PolicyText,
    content_of,
    groups_of,
    row_of,
)
from guardrail_proxy.console.shadow import Candidate, Flip, shadow_check_of_row

T = 1_800_000_000.0
EVIL = "<script>alert('x')</script>"
LABELS = {"violence": [("TV0", "Allowed"), ("TV1", "Mild"), ("TV2", "Graphic"), ("TV3", "Extreme")]}


def mark(**changes: object):
    fields: dict[str, object] = {"request_id": "r1", "phase": "input", "policy": "violence", "verdict_label": "TV2",
                                 "correct": False, "label": "TV0", "note": EVIL, "reviewer": f"Ana {EVIL}",
                                 "ts": T + 50}
    fields.update(changes)
    return make_review(**fields)  # type: ignore[arg-type]


def detail(stored: bool = True, shadows: bool = True) -> Detail:
    rec = record("r1", T, decision="block", status=400, error=f"refused {EVIL}",
                 inputs=[check(result="violation", label="TV2", severity=2, action="block", reasoning=EVIL)],
                 outputs=[check("spam", label="0", reasoning="fine")],
                 content=content(f"tell me {EVIL}", f"reply {EVIL}") if stored else None)
    history = (mark(),)
    rows = [shadow("r1", T, reasoning=EVIL)] if shadows else []
    return Detail(row_of(rec, history), False, True, 12.0, content_of(rec), groups_of(rec),
                  {VIOLENCE: PolicyText(VIOLENCE, "violence", f"# Violence {EVIL}"),
                   CANDIDATE: PolicyText(CANDIDATE, "violence", "# Candidate")},
                  history, tuple(shadow_check_of_row(tuple(r.values())) for r in rows))


def no_raw_script(html: str) -> None:
    """Only the shell's own <script src=...> may appear; no inline handlers or style attributes."""
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/console/assets/console.js" defer>']
    assert "alert('x')</script>" not in html
    assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "an inline style"


def test_the_decision_page_escapes_everything_stored() -> None:
    html = decision_page(detail(), LABELS, "flagged")
    no_raw_script(html)
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    assert html.count(escaped) >= 7  # input, reply, reasoning, policy text, note, reviewer, shadow reasoning, error
    assert f'<pre class="text" id="content-input">tell me {escaped}</pre>' in html


def test_the_decision_page_shows_checks_versions_marks_and_shadows() -> None:
    html = decision_page(detail(), LABELS, "flagged")
    assert 'id="mark-input-violence"' in html and 'id="mark-output-spam"' in html
    assert VIOLENCE[:12] in html and "policy version" in html  # the exact version, its text expandable
    assert "<details" in html and "# Violence" in html
    assert "Shadow verdicts" in html and CANDIDATE[:12] in html and "policies/violence-v2.md" in html
    assert "should be TV0" in html  # the history of marks
    # the policy's own codes, without the verdict's own label; a policy not in the config: free text
    violence_form = html.split('id="mark-input-violence"')[1].split("</form>")[0]
    assert '<option value="TV1">TV1: Mild</option>' in violence_form and 'value="TV2"' not in violence_form
    # the form starts from the newest mark: "should have been TV0"
    assert '<option value="TV0" selected>TV0: Allowed</option>' in violence_form
    assert 'value="wrong" checked' in violence_form
    spam_form = html.split('id="mark-output-spam"')[1].split("</form>")[0]
    assert '<input type="text" name="label"' in spam_form


def test_content_not_stored_is_said_plainly() -> None:
    html = decision_page(detail(stored=False, shadows=False), LABELS, "none")
    assert "The content of this request was not stored" in html and "audit_content: none" in html
    assert "Shadow verdicts" not in html


def test_a_refused_mark_is_shown_again_with_its_error() -> None:
    posted = Posted(MarkForm("input", "violence", False, "", "my note", "Bo"), {"label": "a wrong verdict needs"})
    html = decision_page(detail(), LABELS, "flagged", posted)
    form = html.split('id="mark-input-violence"')[1].split("</form>")[0]
    assert '<span class="field-error" id="error-label">a wrong verdict needs</span>' in form
    assert ">my note</textarea>" in form and 'value="Bo"' in form and 'value="wrong" checked' in form
    other = html.split('id="mark-output-spam"')[1].split("</form>")[0]
    assert "field-error" not in other


def test_the_decisions_list() -> None:
    rows = tuple(row_of(record(f"id-{i}", T - i, decision="block" if i % 2 else "allow",
                               inputs=[check(result="violation", label="TV2", action="block")]),
                        (mark(request_id=f"id-{i}"),) if i == 1 else ()) for i in range(3))
    form = filter_form({"policy": "violence", "since": "7d"}, T)
    html = decisions_page(form, DecisionPage(rows, 120, 2, 3), Choices(["main"], ["violence"], ["TV0", "TV2"]))
    no_raw_script(html)
    assert html.count('href="/console/decisions/id-') == 3
    assert "4–6 of 120" in html
    assert 'href="/console/decisions?policy=violence&amp;since=7d&amp;page=1"' in html  # newer
    assert 'href="/console/decisions?policy=violence&amp;since=7d&amp;page=3"' in html  # older
    assert "✗ input violence → TV0" in html
    assert 'href="/console/export?policy=violence&amp;since=7d"' in html


def test_a_bad_filter_is_shown_at_its_field() -> None:
    html = decisions_page(filter_form({"since": "yesterday"}, T), None, Choices())
    assert 'id="error-since"' in html and "Fix the filter above" in html


def glance() -> Glance:
    spans, size = periods("24h", T)
    busy = [Point()] * 23 + [Point(requests=10, violations=3, blocks=2, errors=1, reviewed=2, correct=1,
                                   shadow_agree=4, shadow_disagree=1)]
    return Glance("24h", spans, size, {"violence": tuple(busy)})


def test_the_overview_plots_each_policy() -> None:
    html = overview_page(glance(), ["violence", "selfharm"], {"violence": "Violence <v2>"})
    no_raw_script(html)
    assert html.count('class="policy-card') == 2  # a loaded policy without traffic gets its (one-line) card too
    violence = html.split('id="policy-violence"')[1].split("</section>")[0]
    assert violence.count("<svg") == 3
    assert "20%</b> blocked" in violence and "reviewers marked <b>1</b> of <b>2</b>" in violence
    assert "Violence &lt;v2&gt;" in violence
    selfharm = html.split('id="policy-selfharm"')[1]
    assert "no decisions in this window" in selfharm and "<svg" not in selfharm


def test_the_shadow_page() -> None:
    candidate = Candidate("violence", CANDIDATE, 10, 6, 3, T, T + 60, "policies/<v2>.md", (Flip("TV2", "TV0", 3),))
    differences = [shadow_check_of_row(tuple(shadow("r<1>", T, reasoning=EVIL).values()))]
    html = shadow_page("7d", "", [candidate], differences, {"r<1>": (mark(request_id="r<1>"),)}, ["violence"], {})
    no_raw_script(html)
    assert "67% agree" in html and "<b>6</b> agree" in html and "policies/&lt;v2&gt;.md" in html
    assert 'href="/console/decisions/r%3C1%3E#shadow"' in html
    assert "1 reviewed: reviewers sided with the candidate in <b>1</b>" in html
    assert '<b>TV0</b> <span class="side-candidate">(candidate)</span>' in html
    assert "No shadow verdicts" in shadow_page("24h", "", [], [], {}, [], {})


def test_the_export_page_and_file() -> None:
    rows = [{"id": "r1", "text": EVIL, "label": "TV0", "role": "user", "context": [], "policy": "violence",
             "verdict_label": "TV2", "correct": False, "reviewer": "Ana", "note": "fiction"}]
    form = filter_form({"policy": "violence", "reviewed": "yes"}, T)
    html = export_page(form, rows, 1000, Choices())
    no_raw_script(html)
    assert 'href="/console/export.jsonl?policy=violence"' in html and "<b>1</b> rows</span>" in html
    assert "No reviewed items" in export_page(form, [], 1000, Choices())
    assert "No policy chosen" in export_page(filter_form({}, T), [], 1000, Choices())
    assert jsonl(rows).decode().count("\n") == 1
    assert file_name("vio/lence", T) == "reviewed-vio-lence-20270115-0800.jsonl"
    assert file_name("violence", T, truncated=True) == "reviewed-violence-20270115-0800-first-20000.jsonl"
    assert file_name("gewalt-ä", T) == "reviewed-gewalt---20270115-0800.jsonl"  # ASCII only in a header
    assert "export-cap" not in html


def test_the_export_page_says_when_a_download_may_be_cut() -> None:
    rows = [{"id": f"r{i}", "text": "t", "label": "TV0", "role": "user", "context": [], "policy": "violence",
             "verdict_label": "TV2", "correct": False, "reviewer": "Ana", "note": ""} for i in range(5)]
    html = export_page(filter_form({"policy": "violence", "since": "7 d"}, T), rows, 5, Choices())
    note = html.split('id="export-cap"')[1]
    assert "<b>5+</b> rows" in html and "newest 20,000 rows at most" in note and "-first-20000" in note
    assert "guardrail-proxy audit export --reviewed --policy violence --since &#x27;7 d&#x27;" in note


@pytest.mark.parametrize("html", [message_page(f"t {EVIL}", EVIL), login_page("/console/", EVIL)])
def test_small_pages_escape(html: str) -> None:
    no_raw_script(html)
