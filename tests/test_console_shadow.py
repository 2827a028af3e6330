"""Shadow verdicts as the console reads them, on both stores: agreement per policy and candidate version with
its label flips, the disagreements newest first, one request's rows (read by audit_query, typed here); and an
unreadable `detail`."""

from __future__ import annotations

import pytest
from console_seed import CANDIDATE, Seeded, shadow

from guardrail_proxy.audit_query import run_shadows
from guardrail_proxy.console.shadow import Flip, detail_of, run_disagreements, run_summary, shadow_check

T = 1_800_000_000.0


def test_summary_and_disagreements(seeded: Seeded) -> None:
    seeded.shadows(
        shadow("a", T + 1), shadow("b", T + 2), shadow("c", T + 3, enforced="TV3", label="TV1"),
        shadow("d", T + 4, agree=True, enforced="TV0"), shadow("e", T + 5, agree=None, result="error"),
        shadow("f", T + 6, policy="selfharm", agree=True, enforced="0", label="0"),
        shadow("late", T + 1000),  # outside the window
    )
    summary = run_summary(seeded.db, T, T + 100)
    assert [(c.policy, c.checks, c.agree, c.disagree, c.failed) for c in summary] == [
        ("selfharm", 1, 1, 0, 0), ("violence", 5, 1, 3, 1)]
    violence = summary[1]
    assert violence.digest == CANDIDATE and violence.source == "policies/violence-v2.md"
    assert violence.agreement == 0.25 and (violence.first_ts, violence.last_ts) == (T + 1, T + 5)
    assert violence.flips == (Flip("TV2", "TV0", 2), Flip("TV3", "TV1", 1))
    assert [c.policy for c in run_summary(seeded.db, T, T + 100, "selfharm")] == ["selfharm"]
    assert [d.request_id for d in run_disagreements(seeded.db, T, T + 100)] == ["c", "b", "a"]
    assert [d.request_id for d in run_disagreements(seeded.db, T, T + 100, limit=1)] == ["c"]
    assert run_disagreements(seeded.db, T, T + 100, "selfharm") == []
    one = [shadow_check("c", found) for found in run_shadows(seeded.db, "c")]
    assert [(s.enforced_label, s.label, s.agree, s.reasoning) for s in one] == [
        ("TV3", "TV1", False, "The edit allows fiction.")]


@pytest.mark.parametrize(("text", "reasoning"), [
    ('{"reasoning": "why"}', "why"),
    ("not json", "(unreadable detail: not json)"),
    ("[1, 2]", None),
    (None, None),
    ({"reasoning": "parsed already"}, "parsed already"),  # as audit_query.shadow_of hands it over
])
def test_detail_of(text, reasoning) -> None:
    assert detail_of(text).get("reasoning") == reasoning
