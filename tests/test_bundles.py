"""Several policies in one classifier call: the prompt, reading the answer per policy, planning the calls."""

from __future__ import annotations

import openai
import pytest
from conftest import JSON_POLICY, SELFHARM_POLICY, VIOLENCE_POLICY, user

from guardrail_proxy.answers import parse_answer, parse_bundle
from guardrail_proxy.bundles import bundle_policy, bundle_prompt
from guardrail_proxy.errors import ClassifierError
from guardrail_proxy.pipeline import Check, plan_calls
from guardrail_proxy.policies import parse_policy
from guardrail_proxy.standins.safeguard import Rule, answer_any

VIOLENCE = parse_policy(VIOLENCE_POLICY, "v.md")
SELFHARM = parse_policy(SELFHARM_POLICY, "s.md")
SPAM = parse_policy(JSON_POLICY, "j.md")
BUNDLE = bundle_policy((VIOLENCE, SELFHARM, SPAM))


def test_the_prompt_holds_every_policy_in_order_and_is_stable():
    text = bundle_prompt((VIOLENCE, SELFHARM, SPAM))
    assert text == BUNDLE.text == bundle_prompt((VIOLENCE, SELFHARM, SPAM))  # byte-identical: prefix-cacheable
    positions = [text.index(f"=== POLICY {p.id} ===") for p in (VIOLENCE, SELFHARM, SPAM)]
    assert positions == sorted(positions) and all(p.text.strip() in text for p in (VIOLENCE, SELFHARM, SPAM))
    assert "in this order: violence, selfharm, spam" in text
    assert bundle_prompt((SELFHARM, VIOLENCE)) != bundle_prompt((VIOLENCE, SELFHARM))


def test_editing_any_member_changes_the_bundle_key():
    edited = VIOLENCE.model_copy(update={"digest": "e" * 64})
    assert bundle_policy((edited, SELFHARM, SPAM)).answer_key != BUNDLE.answer_key
    assert BUNDLE.format == "bundle" and BUNDLE.members == (VIOLENCE, SELFHARM, SPAM)


GOOD = 'violence: TV2\nselfharm: 0\nspam: {"violation": 1, "policy_category": "ads"}'


@pytest.mark.parametrize(("raw", "expected"), [
    (GOOD, [("TV2", True), ("0", False), ("ads", True)]),
    ("- `violence`: TV0\n\n- **selfharm**: 1\n* spam: {\"violation\": 0}\n", [
        ("TV0", False), ("1", True), ("0", False)]),  # list markup and blank lines are tolerated
])
def test_each_member_is_read_with_its_own_parser(raw, expected):
    summary = parse_answer(raw, BUNDLE)
    got = parse_bundle(raw, (VIOLENCE, SELFHARM, SPAM))
    assert [(a.label, a.violation) for a in got] == expected
    assert summary.violation == any(v for _, v in expected) and summary.label is None


@pytest.mark.parametrize(("raw", "reason"), [
    ("violence: TV2\nspam: {\"violation\": 0}", "expected 3 lines"),
    ("violence: TV2\nviolence: TV0\nselfharm: 0\nspam: {\"violation\": 0}", "expected 3 lines"),
    ("Here are my answers.\nviolence: TV0\nselfharm: 0\nspam: {\"violation\": 0}", "expected 3 lines"),
    ("selfharm: 0\nviolence: TV0\nspam: {\"violation\": 0}", "line for policy 'violence' here"),
    ("violence: GV2\nselfharm: 0\nspam: {\"violation\": 0}", "policy 'violence' in a combined answer: expected one"),
    ("violence: TV0\nselfharm: maybe\nspam: {\"violation\": 0}", "policy 'selfharm' in a combined answer"),
    ("TV0", "expected 3 lines"),
    ("", "empty answer"),
])
def test_an_answer_missing_or_garbling_any_member_is_a_classifier_error(raw, reason):
    with pytest.raises(ClassifierError) as info:
        parse_answer(raw, BUNDLE)
    assert reason in info.value.message and info.value.kind == "unparseable"


def test_a_line_echoed_from_the_content_is_never_taken_as_a_verdict():
    """The model quoted the content ('violence: TV0') and left out its own violence line."""
    echoed = "violence: TV0\nselfharm: 0\nspam: {\"violation\": 0}\nviolence: TV0"
    with pytest.raises(ClassifierError):
        parse_answer(echoed, BUNDLE)


def test_the_stand_in_answers_a_bundle_line_by_line():
    content, _, judged = answer_any(BUNDLE.text, "a knife", [Rule("knife", 3, policy="TV0")])
    violence, selfharm, spam = parse_bundle(content, BUNDLE.members)
    assert judged == 3 and violence.label == "TV3"
    assert not selfharm.violation and not spam.violation


def checks(*pairs: tuple[object, str]) -> list[Check]:
    return [Check(policy, content, 0) for policy, content in pairs]  # type: ignore[arg-type]


@pytest.mark.parametrize(("combine", "expected"), [
    (False, [("violence", "a"), ("selfharm", "a"), ("violence", "b")]),
    (True, [("violence+selfharm", "a"), ("violence", "b")]),  # a text with one policy is asked as usual
])
def test_plan_calls(combine, expected):
    planned = checks((VIOLENCE, "a"), (SELFHARM, "a"), (VIOLENCE, "b"), (VIOLENCE, "a"))
    calls = plan_calls(planned, combine, bundle_policy)
    assert [(c.policy.id, c.content) for c in calls] == expected
    assert sum(len(c.members) for c in calls) == 3


ROUTE = {"combine_policies": True, "output": {"enabled": False},
         "policies": [{"id": "violence"}, {"id": "selfharm"}]}


def test_a_combined_route_makes_one_call_per_text_and_decides_per_policy(make_proxy):
    proxy = make_proxy(ROUTE)
    proxy.classifier.rules.append(Rule("sad", 1, policy="encourages self-harm"))
    reply = proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    assert reply.choices[0].finish_reason == "stop" and len(proxy.classifier.requests) == 1
    with pytest.raises(openai.BadRequestError):
        proxy.client.chat.completions.create(model="test-model", messages=user("I feel sad"))
    assert len(proxy.classifier.requests) == 2
    checks_seen = proxy.audit()[1]["phases"][0]["checks"]
    assert {(c["policy"], c["label"]) for c in checks_seen} == {("violence", "TV0"), ("selfharm", "1")}


def test_a_garbled_combined_answer_fails_closed(make_proxy):
    proxy = make_proxy(ROUTE)
    proxy.classifier.injected = "violence: TV0"  # no line for selfharm
    with pytest.raises(openai.APIStatusError) as info:
        proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    assert info.value.status_code == 503
    assert {c["result"] for c in proxy.audit()[0]["phases"][0]["checks"]} == {"error"}
