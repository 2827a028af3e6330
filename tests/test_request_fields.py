"""Request fields beyond `messages` are input the model reads: they are classified, and a client-supplied
prompt template is refused unless the route allows it."""

from __future__ import annotations

import httpx
import pytest
from conftest import user

from guardrail_proxy.standins.safeguard import Rule

NOT_SPECULATIVE = {"input": {"speculative": False}}
TRIGGER = "the blood bath plan"


@pytest.mark.parametrize("extra", [
    {"tools": [{"type": "function", "function": {"name": "f", "description": TRIGGER}}]},
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"q": {"type": "string", "description": TRIGGER}}}}}]},
    {"functions": [{"name": "f", "description": TRIGGER}]},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": TRIGGER}}}},
    {"prediction": {"type": "content", "content": TRIGGER}},
    {"documents": [{"title": "notes", "text": TRIGGER}]},
    {"metadata": {"note": TRIGGER}},
    {"stop": [TRIGGER]},
])
def test_text_outside_messages_is_classified(make_proxy, extra):
    proxy = make_proxy(NOT_SPECULATIVE)
    proxy.classifier.rules.append(Rule("blood", 3))
    response = httpx.post(f"{proxy.url}/v1/chat/completions",
                          json={"model": "test-model", "messages": user("hi"), **extra}, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "content_policy_violation"
    assert proxy.upstream.requests == []


def test_clean_request_fields_pass_and_are_forwarded(make_proxy):
    proxy = make_proxy(NOT_SPECULATIVE)
    tools = [{"type": "function", "function": {"name": "search", "description": "look things up"}}]
    response = httpx.post(f"{proxy.url}/v1/chat/completions",
                          json={"model": "test-model", "messages": user("hi"), "tools": tools}, timeout=10)
    assert response.status_code == 200
    assert proxy.upstream.requests[0]["tools"] == tools
    assert any("look things up" in r["messages"][1]["content"] for r in proxy.classifier.requests)


def test_a_violation_in_a_tool_definition_blocks_even_on_a_rewrite_route(make_proxy):
    proxy = make_proxy({"policies": [{"id": "violence", "action": "rewrite"}], **NOT_SPECULATIVE})
    proxy.classifier.rules.append(Rule("blood", 3))
    tools = [{"type": "function", "function": {"name": "f", "description": TRIGGER}}]
    response = httpx.post(f"{proxy.url}/v1/chat/completions",
                          json={"model": "test-model", "messages": user("hi"), "tools": tools}, timeout=10)
    assert response.status_code == 400 and proxy.upstream.requests == []


@pytest.mark.parametrize("field", [{"chat_template": "{{ messages }}"}, {"chat_template_kwargs": {"x": 1}}])
def test_a_prompt_template_is_refused_unless_the_route_allows_it(make_proxy, field):
    proxy = make_proxy()
    body = {"model": "test-model", "messages": user("hi"), **field}
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 400 and response.json()["error"]["code"] == "unsupported_content"
    assert response.json()["error"]["param"] == next(iter(field))
    assert proxy.upstream.requests == [] and proxy.classifier.requests == []
    [record] = proxy.wait_audit()
    assert record["status"] == 400

    allowed = make_proxy({"allow_prompt_template": True})
    assert httpx.post(f"{allowed.url}/v1/chat/completions", json=body, timeout=10).status_code == 200
