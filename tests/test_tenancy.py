"""Per-key tenancy end to end, through the official SDK: route selection in its documented order, a key
refused a route it lacks, a rate limit answered with 429 and Retry-After, and the key's name (never the
key) in the audit record and the metrics."""

from __future__ import annotations

import hashlib

import httpx
import openai
import pytest
from conftest import user
from prometheus_client.parser import text_string_to_metric_families

SECOND = {"name": "second", "models": ["other-model"], "upstream": "standin",
          "policies": [{"id": "selfharm"}]}
KEYS = {"k-main": "main-app", "k-second": "second-app", "k-all": "ops-team", "k-slow": "slow-app"}


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


CLIENTS = [
    {"name": "main-app", "key_sha256": sha("k-main"), "routes": ["main"]},
    {"name": "second-app", "key_sha256_env": "SECOND_HASH", "routes": ["second"], "default_route": "second"},
    {"name": "ops-team", "key_sha256": sha("k-all"), "routes": ["*"]},
    {"name": "slow-app", "key_sha256": sha("k-slow"), "routes": ["*"],
     "rate_limit": {"requests": 2, "per_s": 3600}},
]


@pytest.fixture
def proxy(make_proxy):
    return make_proxy(extra_routes={"second": SECOND}, proxy_extra={"clients": CLIENTS},
                      env={"SECOND_HASH": sha("k-second")})


def sdk(proxy, key: str, base: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy.url}{base}", api_key=key, max_retries=0, timeout=20)


def routed(proxy, key: str, model: str, base: str = "/v1", header: str | None = None) -> str:
    headers = {"x-guardrail-route": header} if header else None
    sdk(proxy, key, base).chat.completions.create(model=model, messages=user("hello"), extra_headers=headers)
    return proxy.audit()[-1]["route"]


@pytest.mark.parametrize(("key", "model", "base", "header", "route"), [
    ("k-all", "test-model", "/v1", None, "main"),            # the model alias
    ("k-all", "test-model", "/r/second/v1", None, "second"),  # the path beats the model
    ("k-all", "test-model", "/v1", "second", "second"),       # the header beats the model
    ("k-all", "x", "/r/main/v1", "second", "main"),           # the path beats the header
    ("k-second", "test-model", "/v1", None, "second"),        # the key's default beats the model
    ("k-second", "gpt-4o", "/v1", None, "second"),            # ... whatever the model name
])
def test_route_precedence(proxy, key, model, base, header, route):
    assert routed(proxy, key, model, base, header) == route


@pytest.mark.parametrize(("key", "model", "base", "header"), [
    ("k-main", "other-model", "/v1", None),       # by the model alias
    ("k-main", "test-model", "/r/second/v1", None),  # by the path
    ("k-main", "test-model", "/v1", "second"),    # by the header
    ("k-second", "test-model", "/r/main/v1", None),  # past its default route
])
def test_a_key_never_uses_a_route_it_was_not_given(proxy, key, model, base, header):
    headers = {"x-guardrail-route": header} if header else None
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(proxy, key, base).chat.completions.create(model=model, messages=user("hello"), extra_headers=headers)
    assert info.value.status_code == 403 and info.value.body["code"] == "route_not_allowed"
    assert proxy.upstream.requests == [] and proxy.classifier.requests == []
    record = proxy.audit()[-1]
    assert record["status"] == 403 and record["client"] == KEYS[key]


def test_the_other_endpoints_follow_the_same_rules(proxy):
    with pytest.raises(openai.PermissionDeniedError):
        sdk(proxy, "k-main", "/r/second/v1").moderations.create(input="hello")
    result = sdk(proxy, "k-second").moderations.create(input="hello")  # its default route: no model needed
    assert proxy.audit()[-1]["route"] == "second" and result.results[0].flagged is False
    check = httpx.post(f"{proxy.url}/v1/guardrail/check", json={"route": "second", "texts": ["hello"]},
                       headers={"authorization": "Bearer k-main"})
    assert check.status_code == 403 and check.json()["error"]["code"] == "route_not_allowed"
    assert [m.id for m in sdk(proxy, "k-main").models.list()] == ["test-model"]
    assert [m.id for m in sdk(proxy, "k-all", "/r/second/v1").models.list()] == ["other-model"]
    with pytest.raises(openai.PermissionDeniedError):
        sdk(proxy, "k-main", "/r/second/v1").models.list()


def test_unknown_route_in_the_path(proxy):
    with pytest.raises(openai.NotFoundError) as info:
        sdk(proxy, "k-all", "/r/ghost/v1").chat.completions.create(model="test-model", messages=user("hello"))
    assert info.value.body["code"] == "route_not_found"


def test_rate_limit_answers_429_with_retry_after(proxy):
    client = sdk(proxy, "k-slow")
    for _ in range(2):
        client.chat.completions.create(model="test-model", messages=user("hello"))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="test-model", messages=user("hello"))
    assert info.value.body["code"] == "rate_limit_exceeded" and "slow-app" in info.value.body["message"]
    assert int(info.value.response.headers["retry-after"]) >= 1700  # a token comes back every 1800 s
    assert len(proxy.upstream.requests) == 2
    sdk(proxy, "k-all").chat.completions.create(model="test-model", messages=user("hello"))  # others unaffected
    assert proxy.audit()[-2]["status"] == 429


def test_the_key_name_never_the_key_in_audit_and_metrics(proxy):
    for key in KEYS:
        if key != "k-main":
            sdk(proxy, key).chat.completions.create(model="other-model", messages=user("hello"))
    records = proxy.audit_path.read_text()
    metrics = httpx.get(f"{proxy.url}/metrics").text
    for key in KEYS:
        assert key not in records and sha(key) not in records and key not in metrics
    clients = {s.labels["client"] for f in text_string_to_metric_families(metrics) if f.name == "guardrail_requests"
               for s in f.samples if s.name == "guardrail_requests_total"}
    assert clients == {"second-app", "ops-team", "slow-app"}
