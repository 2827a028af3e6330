"""Shadow policies, the pure parts: sampling once per request, mirroring the enforced calls (alone or in a bundle,
newest text first), pairing each candidate answer with the enforced verdict on the same text, agreement by
replay's rule, and the room a candidate call needs on the classifier."""

from __future__ import annotations

import textwrap

import pytest
from conftest import JSON_POLICY, SELFHARM_POLICY, VIOLENCE_POLICY

from guardrail_proxy.answers import Answer
from guardrail_proxy.bundles import Bundles
from guardrail_proxy.classifier import Classification
from guardrail_proxy.decisions import CheckFailure, Verdict
from guardrail_proxy.errors import ClassifierError
from guardrail_proxy.label_compare import BY_DECISION, BY_LABEL
from guardrail_proxy.policies import parse_policy
from guardrail_proxy.shadow import (
    Shadow,
    ShadowCall,
    agreement,
    agreement_name,
    plan,
    reserve_of,
    room_for_shadow,
    sampled,
    shadow_cap,
    shadow_row,
    verdict_label,
)
from guardrail_proxy.shadow_run import Asked, candidate_outcome

VIOLENCE = parse_policy(textwrap.dedent(VIOLENCE_POLICY), "violence.md")
CANDIDATE = parse_policy(textwrap.dedent(VIOLENCE_POLICY) + "Candidate: duels count as TV2.\n", "cand/violence.md")
SELFHARM = parse_policy(textwrap.dedent(SELFHARM_POLICY), "selfharm.md")
SPAM = parse_policy(textwrap.dedent(JSON_POLICY), "spam.md")
SHADOW = Shadow("main", "violence", CANDIDATE, 1.0, 4)


def verdict(label: str, subject: int = 0, policy=VIOLENCE, cached: bool = False) -> Verdict:
    level = int(label[-1]) if label[-1].isdigit() else 0
    return Verdict(policy.id, policy.digest, "input", level > 0, level, label, subject=subject, cached=cached)


def answered(label: str, raw: str | None = None) -> Verdict:
    """The candidate's verdict, as shadow_run.candidate_outcome reads it from the classifier's answer."""
    level = int(label[-1])
    call = ShadowCall(SHADOW, CANDIDATE, "text", ())
    outcome = candidate_outcome(call, "input", Classification(Answer(level > 0, level, label, "why"), "thinking",
                                                              raw or label, 12.5))
    assert isinstance(outcome, Verdict)
    return outcome


@pytest.mark.parametrize(("sample", "share"), [(0.0, 0.0), (1.0, 1.0)])
def test_zero_never_samples_and_one_always_does(sample, share):
    assert sum(sampled(f"r{i}", "violence", sample) for i in range(500)) == share * 500


@pytest.mark.parametrize("sample", [0.05, 0.25, 0.5, 0.9])
def test_a_rate_samples_about_that_share_and_the_same_request_always_alike(sample):
    ids = [f"{i:016x}" for i in range(4000)]
    picked = [sampled(rid, "violence", sample) for rid in ids]
    assert abs(sum(picked) / len(ids) - sample) < 0.03
    assert picked == [sampled(rid, "violence", sample) for rid in ids]  # input and output phases agree


def test_plan_mirrors_each_enforced_call_of_the_shadowed_policy_only():
    calls = [("text a", (VIOLENCE,)), ("text a", (SELFHARM,)), ("text b", (VIOLENCE,))]
    judged = [("text a", verdict("TV0")), ("text a", verdict("0", policy=SELFHARM)), ("text b", verdict("TV2", 1)),
              ("text b", verdict("TV2", 2))]
    planned = plan([SHADOW], "req", calls, judged, Bundles())
    # Newest text first: a bound spends its room on the new message, not on the history before it.
    assert [(c.policy, c.content) for c in planned] == [(CANDIDATE, "text b"), (CANDIDATE, "text a")]
    assert [c.subjects for c in planned] == ["1,2", "0"]  # one call, the subjects that carried its text
    assert [len(c.enforced) for c in planned] == [2, 1]  # the selfharm verdict on "text a" is not paired
    assert plan([Shadow("main", "violence", CANDIDATE, 0.0, 4)], "req", calls, judged, Bundles()) == []


def test_a_combined_call_is_mirrored_by_the_same_bundle_with_the_candidate_in_place():
    bundles = Bundles()
    enforced = bundles((VIOLENCE, SELFHARM))
    [call] = plan([SHADOW], "req", [("text", enforced.members)], [("text", verdict("TV0"))], bundles)
    assert call.policy.format == "bundle" and call.policy.members == (CANDIDATE, SELFHARM)
    assert call.policy.digest != enforced.digest
    raw = "violence: TV2\nselfharm: 0"
    mine = candidate_outcome(call, "input", Classification(Answer(True, 2, None), "r", raw, 9.0))
    assert isinstance(mine, Verdict) and mine.label == "TV2" and mine.raw == raw
    assert mine.policy_digest == CANDIDATE.digest  # the candidate's own verdict, not the bundle's
    odd = candidate_outcome(call, "input", Classification(Answer(True, 2, None), "r", "violence: TV2", 9.0))
    assert isinstance(odd, CheckFailure)  # an answer without the candidate's line is a failed candidate check


@pytest.mark.parametrize(("label", "violation", "policy", "code"), [
    ("TV2", True, VIOLENCE, "TV2"),
    ("TV9", True, VIOLENCE, "1"),  # not a label of the policy: the verdict only
    ("1", True, SELFHARM, "1"),
    ("0", False, SELFHARM, "0"),
    ("anything the model wrote", True, SPAM, "1"),  # a JSON policy's free-text category is never compared
    (None, False, None, "0"),
])
def test_labels_are_the_ones_the_metrics_give(label, violation, policy, code):
    outcome = Verdict(policy.id if policy else "p", "d", "input", violation, int(violation), label)
    assert verdict_label(outcome, policy) == code
    assert verdict_label(CheckFailure("p", "d", "input", "timeout", "slow"), policy) is None


@pytest.mark.parametrize(("enforced", "candidate", "codes", "agree", "by"), [
    ("TV0", "TV0", VIOLENCE.labels, 1, BY_LABEL),
    ("TV0", "TV2", VIOLENCE.labels, 0, BY_LABEL),
    ("TV1", "TV2", VIOLENCE.labels, 0, BY_LABEL),  # both violations, different codes: compared by label
    ("1", "TV2", VIOLENCE.labels, 1, BY_DECISION),  # the enforced side has no codes: by decision, as replay does
    ("TV2", "1", (), 1, BY_DECISION),  # a binary candidate: by decision
    ("TV0", "1", (), 0, BY_DECISION),
    (None, "TV2", VIOLENCE.labels, None, None),
    ("TV0", None, VIOLENCE.labels, None, None),
])
def test_agreement_follows_replays_rule(enforced, candidate, codes, agree, by):
    found, basis = agreement(enforced, candidate, tuple(codes))
    assert found == agree and (basis.by if basis else None) == by
    assert agreement_name(found) == {1: "agree", 0: "disagree", None: "error"}[agree]


@pytest.mark.parametrize(("spare", "running", "max_concurrency", "room"), [
    (4, 0, 4, True),  # idle
    (1, 0, 4, True),  # 3 enforced in flight: 3 + 0 <= 4 - 1
    (0, 0, 4, False),  # every slot held, or a call waiting for one
    (2, 2, 4, False),  # 2 enforced + 2 candidate calls: no room beyond the reserve
    (4, 2, 4, True),  # idle but for 2 candidate calls: a third fits under the cap (3)
    (4, 3, 4, False),  # the cap
    (1, 0, 1, True),  # one slot, idle: a candidate call may run (it never holds the slot)
    (0, 0, 1, False), (1, 1, 1, False),
    (64, 47, 64, True), (64, 48, 64, False),  # reserve 16: the cap is 48
    (20, 0, 64, True), (16, 0, 64, True), (16, 1, 64, False),  # 48 enforced in flight: the reserve is reached
])
def test_a_candidate_call_starts_only_in_room_the_enforced_calls_leave(spare, running, max_concurrency, room):
    assert room_for_shadow(spare, running, max_concurrency) is room
    assert reserve_of(max_concurrency) >= 1 and shadow_cap(max_concurrency) >= 1


def test_a_text_is_remembered_as_asked_per_candidate_and_the_memory_is_bounded():
    asked = Asked(limit=2)
    one, two, three = (Asked.key(CANDIDATE, t) for t in ("one", "two", "three"))
    assert one != Asked.key(VIOLENCE, "one")  # another version asked the same text: not the same question
    asked.add(one)
    asked.add(two)
    assert one in asked  # and now the newest
    asked.add(three)
    assert one in asked and three in asked and two not in asked
    asked.forget(one)
    assert one not in asked


def test_a_row_pairs_the_candidate_with_the_enforced_verdict_on_the_same_text():
    call = ShadowCall(SHADOW, CANDIDATE, "a duel at dawn", (verdict("TV0", cached=True),))
    row = shadow_row(call, "req", "main", "output", VIOLENCE, answered("TV2"), 100.0, 13.0)
    assert row["kind"] == "shadow_check"
    assert {k: row[k] for k in ("request_id", "route", "phase", "policy", "subject", "enforced_digest",
                                "candidate_digest", "enforced_result", "enforced_label", "result", "label",
                                "severity", "agree", "error_kind", "latency_ms")} == {
        "request_id": "req", "route": "main", "phase": "output", "policy": "violence", "subject": "0",
        "enforced_digest": VIOLENCE.digest, "candidate_digest": CANDIDATE.digest, "enforced_result": "pass",
        "enforced_label": "TV0", "result": "violation", "label": "TV2", "severity": 2, "agree": 0,
        "error_kind": None, "latency_ms": 12.5}
    assert row["detail"] == {"candidate": "cand/violence.md", "combined": False, "enforced_cached": True,
                             "basis": {"by": "label", "reason": "both sides use the candidate's codes"},
                             "reasoning": "thinking", "rationale": "why", "answer": "TV2"}


def test_a_failed_candidate_or_enforced_check_gives_no_agreement():
    failed = ShadowCall(SHADOW, CANDIDATE, "text", (verdict("TV0"),))
    odd = candidate_outcome(failed, "input", ClassifierError("odd answer", kind="unparseable"))
    row = shadow_row(failed, "req", "main", "input", VIOLENCE, odd, 1.0, 7.0)
    assert (row["result"], row["label"], row["agree"], row["error_kind"], row["latency_ms"]) == (
        "error", None, None, "unparseable", 7.0)
    assert row["detail"]["error"] == "odd answer" and row["detail"]["basis"] is None
    enforced_failed = ShadowCall(SHADOW, CANDIDATE, "text", (
        CheckFailure("violence", VIOLENCE.digest, "input", "timeout", "slow"),))
    row = shadow_row(enforced_failed, "req", "main", "input", VIOLENCE, answered("TV0"), 1.0, 7.0)
    assert (row["enforced_result"], row["enforced_label"], row["result"], row["agree"]) == (
        "error", None, "pass", None)
