"""Combining verdicts into one decision: action strength, severity levels, fail modes."""

from __future__ import annotations

import pytest

from guardrail_proxy.config import Action, PolicyRule, RouteConfig
from guardrail_proxy.decisions import OUTSIDE, CheckFailure, Decision, Outcome, Triggered, Verdict, combine
from guardrail_proxy.policies import Policy


def policy(pid: str, default: Action = Action.BLOCK, refusal: str | None = None) -> Policy:
    return Policy(id=pid, title=pid, format="label", label_prefix="X", labels={f"X{n}": "" for n in range(4)},
                  default_action=default, refusal=refusal, safe_text=None, text="t", digest=pid * 8,
                  source="test")


POLICIES = {"a": policy("a"), "b": policy("b", Action.ANNOTATE, refusal="policy b says no")}


def route(*rules: PolicyRule, fail_mode: str = "closed") -> RouteConfig:
    return RouteConfig(name="r", models=("m",), upstream="u", policies=rules, fail_mode=fail_mode)


def verdict(pid: str, severity: int) -> Verdict:
    return Verdict(pid, pid * 8, "input", severity > 0, severity, f"X{severity}")


def failure(pid: str) -> CheckFailure:
    return CheckFailure(pid, pid * 8, "input", "timeout", "slow")


RULES = (PolicyRule(id="a", levels={1: Action.LOG, 2: Action.ANNOTATE, 3: Action.BLOCK}), PolicyRule(id="b"))


@pytest.mark.parametrize(("outcomes", "fail_mode", "expected"), [
    ([verdict("a", 0), verdict("b", 0)], "closed", Outcome.ALLOW),
    ([verdict("a", 1), verdict("b", 0)], "closed", Outcome.LOG),
    ([verdict("a", 2), verdict("b", 0)], "closed", Outcome.ANNOTATE),
    ([verdict("a", 3), verdict("b", 0)], "closed", Outcome.BLOCK),
    ([verdict("a", 1), verdict("b", 2)], "closed", Outcome.ANNOTATE),
    ([verdict("a", 0), failure("b")], "closed", Outcome.UNAVAILABLE),
    ([verdict("a", 0), failure("b")], "open", Outcome.ALLOW),
    ([verdict("a", 2), failure("b")], "open", Outcome.ANNOTATE),
    ([verdict("a", 3), failure("b")], "closed", Outcome.BLOCK),
    ([verdict("a", 2), failure("b")], "closed", Outcome.UNAVAILABLE),
    ([], "closed", Outcome.ALLOW),
])
def test_combine(outcomes, fail_mode, expected):
    decision = combine("input", outcomes, route(*RULES, fail_mode=fail_mode), POLICIES)
    assert decision.outcome is expected
    assert decision.unchecked is (bool(decision.failures) and expected is not Outcome.UNAVAILABLE)


def test_rewrite_beats_annotate_and_block_beats_rewrite():
    rules = (PolicyRule(id="a", action=Action.REWRITE), PolicyRule(id="b", action=Action.ANNOTATE))
    assert combine("input", [verdict("a", 1), verdict("b", 1)], route(*rules), POLICIES).outcome is Outcome.REWRITE
    rules = (PolicyRule(id="a", action=Action.REWRITE), PolicyRule(id="b", action=Action.BLOCK))
    assert combine("input", [verdict("a", 3), verdict("b", 1)], route(*rules), POLICIES).outcome is Outcome.BLOCK


def test_refusal_text_precedence_rule_then_policy_then_route():
    rules = (PolicyRule(id="a", refusal="rule says no"), PolicyRule(id="b", action=Action.BLOCK))
    decision = combine("input", [verdict("a", 1), verdict("b", 1)], route(*rules), POLICIES)
    texts = {t.verdict.policy_id: t.refusal for t in decision.triggered}
    assert texts == {"a": "rule says no", "b": "policy b says no"}
    plain = combine("input", [verdict("a", 1)], route(PolicyRule(id="a")), POLICIES)
    assert plain.triggered[0].refusal == "Sorry, I can't help with that."


def test_strongest_prefers_action_then_severity():
    rules = (PolicyRule(id="a", action=Action.BLOCK), PolicyRule(id="b", action=Action.BLOCK))
    decision = combine("input", [verdict("a", 1), verdict("b", 3)], route(*rules), POLICIES)
    assert decision.strongest is not None and decision.strongest.verdict.policy_id == "b"


@pytest.mark.parametrize(("outcome", "subject", "blocks"), [
    (Outcome.BLOCK, 0, True),
    (Outcome.REWRITE, 0, False),
    (Outcome.REWRITE, OUTSIDE, True),   # text outside any message or choice cannot be rewritten in place
    (Outcome.ANNOTATE, OUTSIDE, False),
])
def test_a_decision_blocks(outcome, subject, blocks):
    verdict = Verdict("p", "d", "input", True, 2, "TV2", subject=subject)
    decision = Decision("input", outcome, (verdict,), (Triggered(verdict, Action.REWRITE, "no", "safe"),))
    assert decision.blocks is blocks
