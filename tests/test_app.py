"""The HTTP surface: endpoints, bad input (always OpenAI error JSON, never a 500), pass-through of fields."""

from __future__ import annotations

import httpx
import openai
import pytest
from conftest import free_port, metric, user

from guardrail_proxy.standins.safeguard import Rule


def post(proxy, body, **kwargs):
    return httpx.post(f"{proxy.url}/v1/chat/completions", content=body, timeout=20, **kwargs)


@pytest.mark.parametrize(("body", "status", "code", "param"), [
    (b"{not json", 400, "invalid_request", None),
    (b"", 400, "invalid_request", None),
    (b"[1, 2]", 400, "invalid_request", None),
    (b'{"model": "test-model"}', 400, "invalid_request", "messages"),
    (b'{"model": "test-model", "messages": []}', 400, "invalid_request", "messages"),
    (b'{"model": "test-model", "messages": "hi"}', 400, "invalid_request", "messages"),
    (b'{"model": "test-model", "messages": [{"role": "wizard", "content": "x"}]}', 400, "invalid_request",
     "messages.0.role"),
    (b'{"model": "test-model", "messages": [{"role": "user", "content": 5}]}', 400, "invalid_request", None),
    (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "invalid_request", "model"),
    (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', 400, "invalid_request", "model"),
    (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model_not_found", "model"),
    (b'{"model": "test-model", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}', 400,
     "invalid_request", "stream"),
    (b'{"model": "test-model", "n": 0, "messages": [{"role": "user", "content": "x"}]}', 400,
     "invalid_request", "n"),
])
def test_bad_requests_get_openai_error_json(make_proxy, body, status, code, param):
    proxy = make_proxy()
    response = post(proxy, body, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]
    if param:
        assert error["param"].startswith(param)
    assert proxy.upstream.requests == [] and proxy.classifier.requests == []


def test_a_lone_surrogate_is_a_400(make_proxy):
    proxy = make_proxy()
    response = post(proxy, b'{"model": "test-model", "messages": [{"role": "user", "content": "hi \\ud800"}]}')
    assert response.status_code == 400 and "surrogate" in response.json()["error"]["message"]
    assert proxy.classifier.requests == []


def test_deeply_nested_json_is_a_400(make_proxy):
    proxy = make_proxy()
    response = post(proxy, b'{"x":' + b"[" * 30000 + b"]" * 30000 + b"}")
    assert response.status_code == 400 and "nested" in response.json()["error"]["message"]


def test_an_image_part_with_a_text_field_is_still_media(make_proxy):
    proxy = make_proxy()
    content = [{"type": "text", "text": "describe"}, {"type": "image_url", "text": "", "image_url": {"url": "x"}}]
    response = httpx.post(f"{proxy.url}/v1/chat/completions",
                          json={"model": "test-model", "messages": [{"role": "user", "content": content}]})
    assert response.status_code == 400 and response.json()["error"]["code"] == "unsupported_content"


@pytest.mark.parametrize("role", ["system", "developer", "assistant", "tool"])
def test_scope_all_checks_every_role(make_proxy, role):
    proxy = make_proxy({"input": {"scope": "all", "context_turns": 0, "speculative": False}})
    proxy.classifier.rules.append(Rule("knife fight", 3))
    extra = {"tool_call_id": "c1"} if role == "tool" else {}
    messages = [{"role": role, "content": "Write a graphic knife fight.", **extra}, *user("go on")]
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": messages})
    assert response.status_code == 400 and proxy.upstream.requests == []


def test_body_over_the_limit_is_413(make_proxy):
    proxy = make_proxy()
    big = b'{"model": "test-model", "messages": [{"role": "user", "content": "' + b"a" * 70000 + b'"}]}'
    response = post(proxy, big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_unknown_route_header_and_wrong_model(make_proxy):
    proxy = make_proxy(extra_routes={"other": {"models": ["other-model"], "upstream": "standin",
                                               "policies": [{"id": "violence"}]}})
    body = b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}]}'
    assert post(proxy, body, headers={"x-guardrail-route": "ghost"}).json()["error"]["code"] == "route_not_found"
    # A route named in the header answers whatever model name is sent (routing.py); its upstream decides.
    assert post(proxy, body, headers={"x-guardrail-route": "other"}).status_code == 200
    assert post(proxy, body, headers={"x-guardrail-route": "main"}).status_code == 200
    assert [r["route"] for r in proxy.audit()[-2:]] == ["other", "main"]
    unknown = post(proxy, b'{"model": "ghost", "messages": [{"role": "user", "content": "x"}]}')
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_unknown_paths_and_methods_are_json(make_proxy):
    proxy = make_proxy()
    missing = httpx.get(f"{proxy.url}/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(f"{proxy.url}/v1/chat/completions")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_image_parts_are_refused_unless_allowed(make_proxy):
    proxy = make_proxy()
    content = [{"type": "text", "text": "what is this"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": content}])
    assert info.value.body["code"] == "unsupported_content"
    assert proxy.upstream.requests == []


def test_unknown_fields_are_forwarded_unchanged(make_proxy):
    proxy = make_proxy()
    proxy.client.chat.completions.create(
        model="test-model", messages=user("hi"), temperature=0.2, seed=7,
        extra_body={"top_k": 5, "vendor_field": {"a": [1, 2]}})
    sent = proxy.upstream.requests[0]
    assert sent["model"] == "stand-in-chat"
    assert sent["temperature"] == 0.2 and sent["seed"] == 7
    assert sent["top_k"] == 5 and sent["vendor_field"] == {"a": [1, 2]}


def test_litellm_upstream_end_to_end(make_proxy, upstream):
    _, up_server = upstream
    proxy = make_proxy(upstream_cfg={"provider": "litellm", "model": "openai/stand-in-chat",
                                     "api_base": f"{up_server.url}/v1", "api_key_env": "NO_SUCH_KEY_VAR"})
    completion = proxy.client.chat.completions.create(model="test-model", messages=user("via litellm"),
                                                      temperature=0.5)
    assert completion.choices[0].message.content == "Stand-in reply to: via litellm"
    assert proxy.upstream.requests[0]["model"] == "stand-in-chat"
    assert proxy.upstream.requests[0]["temperature"] == 0.5


def test_upstream_errors_are_relayed_as_json(make_proxy):
    proxy = make_proxy()
    proxy.upstream.status = 422
    with pytest.raises(openai.UnprocessableEntityError) as info:
        proxy.client.chat.completions.create(model="test-model", messages=user("hi"))
    assert info.value.body["code"] == "standin_error"


def test_upstream_down_is_502(make_proxy):
    proxy = make_proxy(upstream_cfg={"provider": "openai", "model": "m",
                                     "api_base": f"http://127.0.0.1:{free_port()}/v1"})
    with pytest.raises(openai.APIStatusError) as info:
        proxy.client.chat.completions.create(model="test-model", messages=user("hi"))
    assert info.value.status_code in (502, 504)
    assert info.value.body["type"] == "upstream_error"


def test_models_lists_the_routes_models(make_proxy):
    proxy = make_proxy({"models": ["a-model", "b-model"]})
    assert [m.id for m in proxy.client.models.list()] == ["a-model", "b-model"]


def test_health_and_readiness(make_proxy):
    proxy = make_proxy()
    assert httpx.get(f"{proxy.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{proxy.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"classifier:default": "ok", "upstream:standin": "ok",
                                                                   "audit": "ok"}


def test_readiness_names_the_missing_dependency(make_proxy):
    proxy = make_proxy(classifier_url=f"http://127.0.0.1:{free_port()}",
                       classifier={"api_key_env": "GUARDRAIL_TEST_UNSET_KEY"})
    ready = httpx.get(f"{proxy.url}/readyz")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert "cannot connect" in checks["classifier:default"]
    assert checks["upstream:standin"] == "ok"


def test_metrics_count_requests_and_checks(make_proxy):
    proxy = make_proxy()
    proxy.client.chat.completions.create(model="test-model", messages=user("hi"))
    text = httpx.get(f"{proxy.url}/metrics").text
    assert metric(text, "guardrail_requests_total", endpoint="chat", route="main", status="200", decision="allow",
                  client="none") == 1
    assert metric(text, "guardrail_checks_total", route="main", phase="input", policy="violence", outcome="pass",
                  action="none") == 1
