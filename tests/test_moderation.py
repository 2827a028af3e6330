"""`POST /v1/moderations` with the official SDK: the route's policies as categories, every text read,
media refused, the fail mode applied, one audit record per call."""

from __future__ import annotations

import httpx
import openai
import pytest
from conftest import free_port

from guardrail_proxy.decisions import CheckFailure, Decision, Outcome, Verdict
from guardrail_proxy.errors import RequestError
from guardrail_proxy.moderation import moderation_result, parse_moderation
from guardrail_proxy.policies import parse_policy
from guardrail_proxy.standins.safeguard import Rule

ROUTE = {"models": ["test-model", "omni-moderation-latest"], "policies": [{"id": "violence"}, {"id": "selfharm"}]}


@pytest.fixture
def proxy(make_proxy):
    proxy = make_proxy(ROUTE)
    proxy.classifier.rules.extend([Rule("fight", 2, policy="Test violence policy"),
                                   Rule("hurt myself", 1, policy="Test binary policy")])
    return proxy


def test_the_sdk_gets_the_routes_policies_as_categories(proxy):
    result = proxy.client.moderations.create(model="omni-moderation-latest", input="describe the knife fight")
    [item] = result.results
    assert item.flagged is True
    assert item.categories.to_dict() == {"violence": True, "selfharm": False}
    assert item.category_scores.to_dict() == {"violence": pytest.approx(0.6667), "selfharm": 0.0}
    assert item.model_extra["labels"] == {"violence": "TV2", "selfharm": "0"}
    [record] = proxy.audit()
    assert record["route"] == "main" and record["status"] == 200 and record["phases"][0]["phase"] == "input"


def test_a_list_of_strings_gives_one_result_each(proxy):
    result = proxy.client.moderations.create(model="test-model", input=["hello", "I want to hurt myself", ""])
    assert [r.flagged for r in result.results] == [False, True, False]
    assert result.results[1].categories.to_dict() == {"violence": False, "selfharm": True}
    assert result.results[1].category_scores.to_dict()["selfharm"] == 1.0


def test_every_string_of_a_text_part_is_read_and_media_is_refused(proxy, make_proxy):
    parts = [{"type": "text", "text": "a nice day", "note": "then a knife fight"}]
    flagged = httpx.post(f"{proxy.url}/v1/moderations", json={"model": "test-model", "input": parts}).json()
    assert flagged["results"][0]["flagged"] is True  # a field beside `text` is text too
    image = [*parts, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    refused = httpx.post(f"{proxy.url}/v1/moderations", json={"model": "test-model", "input": image})
    assert refused.status_code == 400 and "image_url" in refused.json()["error"]["message"]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"model": "test-model"}, 400, None),
    ({"model": "test-model", "input": 5}, 400, None),
    ({"model": "test-model", "input": ["a", {"type": "text", "text": "b"}]}, 400, None),
    ({"model": "nope", "input": "hi"}, 404, "model_not_found"),
    ({"model": 3, "input": "hi"}, 400, None),
])
def test_bad_requests_get_openai_errors(proxy, body, status, code):
    response = httpx.post(f"{proxy.url}/v1/moderations", json=body)
    assert response.status_code == status and response.json()["error"]["code"] == (code or "invalid_request")
    assert len(proxy.audit()) == 1  # a refused call is audited like any other


def test_a_classifier_outage_is_a_503_under_fail_closed(make_proxy):
    proxy = make_proxy(ROUTE, classifier_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(openai.InternalServerError) as info:
        proxy.client.moderations.create(model="test-model", input="hello")
    assert info.value.status_code == 503 and info.value.body["code"] == "guardrail_unavailable"


VIOLENCE = parse_policy("""---
id: violence
title: t
format: label
label_prefix: TV
labels: {TV0: a, TV1: b, TV2: c, TV3: d}
---
body
""", "v.md")


@pytest.mark.parametrize(("value", "texts", "media"), [
    ("one", ("one",), ()),
    (["a", "b"], ("a", "b"), ()),
    ([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "https://i.test/a.png"}}], ("a",),
     ("image_url",)),
    ([{"type": "image_url", "image_url": {"url": "how to make a bomb"}}], ("how to make a bomb",), ("image_url",)),
])
def test_parse_moderation(value, texts, media):
    parsed = parse_moderation({"input": value})
    assert (parsed.texts, parsed.media) == (texts, media)


@pytest.mark.parametrize("value", [None, [], 3, [1], [{"text": "no type"}]])
def test_parse_moderation_refuses_other_shapes(value):
    with pytest.raises(RequestError, match="input must be"):
        parse_moderation({"input": value})


def test_the_worst_segment_decides_and_a_failed_check_is_marked_unchecked():
    verdicts = (Verdict("violence", "d", "input", False, 0, "TV0", subject=0),
                Verdict("violence", "d", "input", True, 3, "TV3", subject=0),
                Verdict("violence", "d", "input", True, 1, "TV1", subject=1))
    failure = CheckFailure("violence", "d", "input", "timeout", "late", subject=2)
    decision = Decision("input", Outcome.BLOCK, (*verdicts, failure))
    first, second, third = (moderation_result(decision, i, [VIOLENCE]) for i in range(3))
    assert first["category_scores"] == {"violence": 1.0} and first["labels"] == {"violence": "TV3"}
    assert second["category_scores"] == {"violence": pytest.approx(0.3333)}
    assert third == {**third, "flagged": False, "unchecked": ["violence"]}
