"""logprobs can carry any text (an alternative token): stripped by default, classified with `check`."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import user

from guardrail_proxy.standins.safeguard import Rule

LOGPROBS = {"content": [{"token": "fine", "logprob": -0.1, "bytes": [102, 105, 110, 101],
                         "top_logprobs": [{"token": "fine", "logprob": -0.1, "bytes": None},
                                          {"token": "bloodbath", "logprob": -3.0, "bytes": None}]}],
            "refusal": None}


def completion(logprobs: dict) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop",
                         "logprobs": logprobs}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def chunk(delta: dict, finish: str | None = None, logprobs: dict | None = None) -> bytes:
    obj = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}]}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def post(proxy, **extra) -> httpx.Response:
    return httpx.post(f"{proxy.url}/v1/chat/completions",
                      json={"model": "test-model", "messages": user("hi"), "logprobs": True, "top_logprobs": 2,
                            **extra}, timeout=10)


def streamed(proxy) -> str:
    body = {"model": "test-model", "messages": user("hi"), "stream": True, "logprobs": True}
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, timeout=10) as response:
        return response.read().decode()


def test_stripped_by_default(make_proxy):
    proxy = make_proxy()
    proxy.upstream.raw_completion = completion(LOGPROBS)
    response = post(proxy)
    assert response.status_code == 200 and response.json()["choices"][0]["logprobs"] is None
    assert "bloodbath" not in response.text


def test_checked_when_the_route_says_so(make_proxy):
    proxy = make_proxy({"output": {"logprobs": "check"}})
    proxy.classifier.rules.append(Rule("bloodbath", 3))
    proxy.upstream.raw_completion = completion(LOGPROBS)
    response = post(proxy)
    assert response.status_code == 400 and "bloodbath" not in response.text
    proxy.upstream.raw_completion = completion(json.loads(json.dumps(LOGPROBS).replace("bloodbath", "good")))
    clean = post(proxy)
    assert clean.status_code == 200 and clean.json()["choices"][0]["logprobs"]["content"][0]["token"] == "fine"


def test_a_rewrite_builds_a_fresh_choice_without_the_old_logprobs(make_proxy):
    proxy = make_proxy({"policies": [{"id": "violence", "action": "rewrite"}], "output": {"logprobs": "check"}})
    proxy.classifier.rules.append(Rule("bloodbath", 3))
    proxy.upstream.raw_completion = completion(LOGPROBS)
    response = post(proxy)
    assert response.status_code == 200 and "bloodbath" not in response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["logprobs"] is None


@pytest.mark.parametrize(("route", "expect_block"), [({}, False), ({"output": {"logprobs": "check"}}, True)])
def test_streamed_logprobs(make_proxy, route, expect_block):
    proxy = make_proxy({"output": {"window_chars": 1, **route.get("output", {})}})
    proxy.classifier.rules.append(Rule("bloodbath", 3))
    proxy.upstream.raw_events = [chunk({"role": "assistant", "content": "fine"}, logprobs=LOGPROBS),
                                 chunk({}, "stop"), b"data: [DONE]\n\n"]
    text = streamed(proxy)
    assert "bloodbath" not in text
    assert ('"content_filter"' in text) is expect_block
