"""Strict parsing of the classifier's answer: every prefix and level, and every malformed shape is an error."""

from __future__ import annotations

import pytest

from guardrail_proxy.answers import Answer, parse_answer
from guardrail_proxy.errors import ClassifierError
from guardrail_proxy.policies import Policy

TEEN_PREFIXES = ["GV", "GS", "HBI", "DC", "DR", "ARS"]


def make_policy(fmt: str = "label", prefix: str | None = "GV", levels: int = 4) -> Policy:
    labels = {f"{prefix}{n}": f"level {n}" for n in range(levels)} if fmt == "label" else {}
    return Policy(id="p", title="P", format=fmt, label_prefix=prefix if fmt == "label" else None, labels=labels,
                  default_action="block", refusal=None, safe_text=None, text="policy", digest="d" * 64,
                  source="test")


@pytest.mark.parametrize("prefix", TEEN_PREFIXES)
@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_every_prefix_and_level(prefix, level):
    answer = parse_answer(f"{prefix}{level}", make_policy(prefix=prefix))
    assert answer == Answer(level > 0, level, f"{prefix}{level}")


@pytest.mark.parametrize("content", ["GV2", " GV2\n", "`GV2`", '"GV2"', "**GV2**", "GV2."])
def test_harmless_wrapping_is_accepted(content):
    assert parse_answer(content, make_policy()).label == "GV2"


@pytest.mark.parametrize("content", [
    None, "", "   ", "GV4", "GV", "GV-2", "GV 2", "gv2", "HBI2", "GV2 because it is gory", "Not safe.",
    "Safe", "0", "GV02", "GV2 GV0", "I think GV0", "violation", "GV2\nGV0",
])
def test_malformed_label_answers_are_errors(content):
    with pytest.raises(ClassifierError) as info:
        parse_answer(content, make_policy())
    assert info.value.kind == "unparseable"


@pytest.mark.parametrize(("content", "violation"), [("0", False), ("1", True), (" 1 ", True), ("`0`", False)])
def test_binary(content, violation):
    assert parse_answer(content, make_policy("binary", None)).violation is violation


@pytest.mark.parametrize("content", ["2", "yes", "no", "Not safe.", "safe", "1.0", "01", "-1", "true", ""])
def test_binary_malformed(content):
    with pytest.raises(ClassifierError):
        parse_answer(content, make_policy("binary", None))


@pytest.mark.parametrize(("content", "expected"), [
    ('{"violation": 0, "policy_category": null}', Answer(False, 0, "0")),
    ('{"violation": 1, "policy_category": "R2.a", "rationale": "why"}', Answer(True, 1, "R2.a", "why")),
    ('```json\n{"violation": 1}\n```', Answer(True, 1, "1")),
    ('{"violation": true}', Answer(True, 1, "1")),
])
def test_json(content, expected):
    assert parse_answer(content, make_policy("json", None)) == expected


@pytest.mark.parametrize("content", [
    "{}", '{"violation": 2}', '{"violation": "1"}', '{"violation": 0.5}', '{"violation": 1.0}', "[1]",
    '{"violation": 1', "violation: 1", "0",
])
def test_json_malformed(content):
    with pytest.raises(ClassifierError):
        parse_answer(content, make_policy("json", None))


def test_label_policy_answering_json_must_name_a_valid_code():
    policy = make_policy()
    assert parse_answer('{"violation": 1, "policy_category": "GV3"}', policy) == Answer(True, 3, "GV3")
    for bad in ['{"violation": 1, "policy_category": "GV0"}', '{"violation": 1}',
                '{"violation": 0, "policy_category": "XX0"}']:
        with pytest.raises(ClassifierError):
            parse_answer(bad, policy)
