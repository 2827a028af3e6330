"""`POST /v1/guardrail/check`: the guardrail alone, for another gateway, against the stand-ins."""

from __future__ import annotations

import httpx
import pytest
from conftest import free_port, user

from guardrail_proxy.standins.safeguard import Rule

ROUTE = {"name": "teen", "policies": [{"id": "violence", "levels": {1: "annotate"}}, {"id": "selfharm"}]}


@pytest.fixture
def proxy(make_proxy):
    proxy = make_proxy(ROUTE, extra_routes={"other": {"models": ["other-model"], "upstream": "standin",
                                                      "policies": [{"id": "spam"}], "reveal_reasoning": True}})
    proxy.classifier.rules.extend([Rule("fight", 2, policy="Test violence policy"),
                                   Rule("scuffle", 1, policy="Test violence policy")])
    return proxy


def post(proxy, body, **headers):
    return httpx.post(f"{proxy.url}/v1/guardrail/check", json=body, headers=headers, timeout=20)


def test_an_input_conversation_gets_the_routes_decision(proxy):
    answer = post(proxy, {"route": "teen", "messages": user("describe the knife fight")})
    body = answer.json()
    assert answer.status_code == 200 and body["decision"] == "block" and body["flagged"] is True
    assert body["route"] == "teen" and body["phase"] == "input"
    assert {(c["policy"], c["label"], c["action"]) for c in body["checks"]} == {
        ("violence", "TV2", "block"), ("selfharm", "0", None)}
    assert "reasoning" not in body["checks"][0]  # the route does not reveal it
    assert proxy.upstream.requests == []  # the guardrail alone: no model call
    [record] = proxy.audit()
    assert record["route"] == "teen" and record["decision"] == "block"


def test_texts_are_judged_each_and_say_which_were_flagged(proxy):
    body = post(proxy, {"route": "teen", "texts": ["hello", "a scuffle at recess", "a knife fight"]}).json()
    assert body["decision"] == "block" and [t["flagged"] for t in body["texts"]] == [False, True, True]


def test_an_output_check_judges_the_replies_with_their_context(proxy, safeguard):
    body = post(proxy, {"route": "teen", "phase": "output", "texts": ["here is the fight, blow by blow"],
                        "messages": user("tell me a story")}).json()
    assert body["phase"] == "output" and body["decision"] == "block"
    sent = proxy.classifier.requests[-1]["messages"][1]["content"]
    assert "[context: user]\ntell me a story" in sent and sent.endswith("here is the fight, blow by blow")


@pytest.mark.parametrize(("how", "route"), [
    ({"body": {"route": "other"}}, "other"),
    ({"headers": {"x-guardrail-route": "other"}}, "other"),
    ({"body": {"model": "other-model"}}, "other"),
    ({"body": {"model": "test-model"}}, "teen"),
])
def test_route_selection(proxy, how, route):
    body = {"texts": ["hi"], **how.get("body", {})}
    assert post(proxy, body, **how.get("headers", {})).json()["route"] == route


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"texts": ["hi"]}, 400, "name a route"),
    ({"route": "nope", "texts": ["hi"]}, 404, "unknown route"),
    ({"route": "teen"}, 400, "needs messages or texts"),
    ({"route": "teen", "phase": "output", "messages": user("hi")}, 400, "needs texts"),
    ({"route": "teen", "phase": "later", "texts": ["x"]}, 400, "phase must be"),
    ({"route": "teen", "texts": "hi"}, 400, "non-empty list of strings"),
    ({"route": "teen", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages"),
    ({"route": "teen", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://i.test/a.png"}}]}]}, 400, "image_url"),
])
def test_bad_requests(proxy, body, status, message):
    answer = post(proxy, body)
    assert answer.status_code == status and message in answer.json()["error"]["message"]


def test_an_outage_is_an_answer_not_an_error(make_proxy):
    proxy = make_proxy(ROUTE, classifier_url=f"http://127.0.0.1:{free_port()}")
    body = post(proxy, {"route": "teen", "texts": ["hi"]}).json()
    assert body["decision"] == "unavailable" and body["flagged"] is False and body["unchecked"]
