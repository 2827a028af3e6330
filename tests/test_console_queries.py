"""The console's decisions on both stores (SQLite and a real PostgreSQL): a filtered page with the newest marks,
reviewed or not, newest first, paginated; one decision with its checks grouped, policy texts, every mark and
its shadow verdicts."""

from __future__ import annotations

import pytest
from console_seed import CANDIDATE, VIOLENCE, VIOLENCE_TEXT, Seeded, check, content, record, shadow

from guardrail_proxy.audit_query import Filters, run_show
from guardrail_proxy.console.queries import Judged, detail_of_shown, groups_of, list_where, run_detail, run_page
from guardrail_proxy.review_export import phase_verdict

T = 1_800_000_000.0


def traffic(data: Seeded) -> None:
    data.records(
        record("allowed", T, inputs=[check()], outputs=[check()]),
        record("blocked", T + 10, decision="block", status=400,
               inputs=[check(result="violation", label="TV2", severity=2, action="block")],
               content=content("describe the duel <script>alert(1)</script>")),
        record("flagged", T + 20, route="teen", decision="annotate",
               inputs=[check(result="violation", label="TV1", severity=1, action="annotate"),
                       check("selfharm", label="0", policy_digest="s1")]),
        record("failed", T + 30, decision="unchecked", unchecked=True, inputs=[check(result="error")]),
    )


def ids(page) -> list[str]:
    return [row.request_id for row in page.rows]


def test_filters_and_newest_first(seeded: Seeded) -> None:
    traffic(seeded)
    assert ids(run_page(seeded.db, Filters(), None, 1, 50)) == ["failed", "flagged", "blocked", "allowed"]
    assert ids(run_page(seeded.db, Filters(decision="block"), None, 1, 50)) == ["blocked"]
    assert ids(run_page(seeded.db, Filters(label="TV1"), None, 1, 50)) == ["flagged"]
    assert ids(run_page(seeded.db, Filters(policy="selfharm"), None, 1, 50)) == ["flagged"]
    assert ids(run_page(seeded.db, Filters(route="teen"), None, 1, 50)) == ["flagged"]
    assert ids(run_page(seeded.db, Filters(unchecked=True), None, 1, 50)) == ["failed"]
    assert ids(run_page(seeded.db, Filters(since=T + 5, until=T + 25), None, 1, 50)) == ["flagged", "blocked"]


def test_pages(seeded: Seeded) -> None:
    traffic(seeded)
    first, second = run_page(seeded.db, Filters(), None, 1, 3), run_page(seeded.db, Filters(), None, 2, 3)
    assert (ids(first), ids(second), first.total, first.pages) == (["failed", "flagged", "blocked"], ["allowed"], 4, 2)


def test_reviewed_or_not_and_the_newest_mark(seeded: Seeded) -> None:
    traffic(seeded)
    seeded.mark("blocked", T + 100, note="fiction")
    seeded.mark("blocked", T + 200, correct=True, reviewer="Bo")  # changed their mind: this one counts
    seeded.mark("flagged", T + 100, policy="selfharm", verdict="0", correct=True, label=None)
    assert ids(run_page(seeded.db, Filters(), True, 1, 50)) == ["flagged", "blocked"]
    assert ids(run_page(seeded.db, Filters(), False, 1, 50)) == ["failed", "allowed"]
    assert ids(run_page(seeded.db, Filters(policy="violence"), True, 1, 50)) == ["blocked"]  # a mark of that policy
    assert ids(run_page(seeded.db, Filters(policy="violence"), False, 1, 50)) == ["failed", "flagged", "allowed"]
    blocked = run_page(seeded.db, Filters(decision="block"), None, 1, 50).rows[0]
    assert [(m.reviewer, m.correct) for m in blocked.marks] == [("Bo", True)]


def test_one_decision(seeded: Seeded) -> None:
    traffic(seeded)
    seeded.mark("blocked", T + 100, note="a story")
    seeded.shadows(shadow("blocked", T + 10), shadow("blocked", T + 10, phase="output", agree=True, enforced="TV0"))
    detail = run_detail(seeded.db, "blocked")
    assert detail is not None
    assert (detail.row.decision, detail.row.status, detail.row.violations) == ("block", 400,
                                                                               ("input: violence TV2 (block)",))
    assert detail.content is not None and "<script>" in detail.content.input
    assert detail.content.context == (("assistant", "How can I help?"),)
    assert [(g.phase, g.policy, g.verdict_label) for g in detail.groups] == [("input", "violence", "TV2")]
    assert detail.texts[VIOLENCE].text == VIOLENCE_TEXT
    assert detail.texts[CANDIDATE].text is not None  # the candidate's version, for its shadow verdicts
    assert [(r.note, r.label) for r in detail.history] == [("a story", "TV0")]
    assert [(s.phase, s.agree, s.candidate) for s in detail.shadows] == [
        ("input", False, "policies/violence-v2.md"), ("output", True, "policies/violence-v2.md")]
    assert run_detail(seeded.db, "nope") is None


def test_a_decision_without_stored_content_or_policy_text(seeded: Seeded) -> None:
    traffic(seeded)
    detail = run_detail(seeded.db, "flagged")
    assert detail is not None and detail.content is None
    assert detail.texts["s1"].text is None  # a digest the store has no text for


@pytest.mark.parametrize(("results", "label"), [
    ([("pass", "TV0", 0), ("violation", "TV2", 2), ("violation", "TV1", 1)], "TV2"),  # the most severe violation
    ([("pass", "TV0", 0), ("error", None, None)], "TV0"),
    ([("error", None, None)], None),  # nothing to mark correct
    ([("violation", "TV2", 2), ("violation", "TV3", 2)], "TV2"),  # equal severity: the first, as export and replay
    ([("violation", "TV1", 0), ("pass", "TV0", 0)], "TV1"),
])
def test_the_verdict_a_mark_names(results, label) -> None:
    checks = [check(result=r, label=lab, severity=sev or 0) for r, lab, sev in results]
    groups = groups_of(record("x", T, outputs=checks))
    assert len(groups) == 1 and isinstance(groups[0], Judged) and groups[0].verdict_label == label
    assert groups[0].verdict_label == phase_verdict(checks).label  # the one rule, not a copy of it


def test_the_detail_is_what_audit_show_reads(seeded: Seeded) -> None:
    traffic(seeded)
    seeded.mark("blocked", T + 100, note="a story")
    seeded.shadows(shadow("blocked", T + 10))
    shown = run_show(seeded.db, "blocked")
    assert shown is not None and detail_of_shown(shown) == run_detail(seeded.db, "blocked")


def test_list_where_asks_policy_and_label_once_and_adds_the_reviewed_test() -> None:
    assert list_where(Filters(), None) == ("", [])
    clause, values = list_where(Filters(policy="p", label="L", route="x"), False)
    assert clause == (" WHERE r.route = ? AND r.request_id IN (SELECT c.request_id FROM checks c WHERE c.policy = ? "
                      "AND c.label = ?) AND NOT EXISTS (SELECT 1 FROM reviews v WHERE v.request_id = r.request_id "
                      "AND v.policy = ?)")
    assert values == ["x", "p", "L", "p"]
    assert list_where(Filters(label="L"), None) == (
        " WHERE r.request_id IN (SELECT c.request_id FROM checks c WHERE c.label = ?)", ["L"])
