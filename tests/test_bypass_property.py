"""A trigger at random JSON paths of the request and of the reply: neither the model nor the client ever
receives it unless a verdict covered it (hypothesis; the matrix in test_bypass_matrix.py lists known fields)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from conftest import user
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bypass_matrix import TRIGGER, reassembled

from guardrail_proxy.standins.safeguard import Rule

# Key names that can never spell a structural or media field (no vowels but none of "id", "role", "data").
KEYS = st.text(alphabet="kqvwxz", min_size=1, max_size=5)
FILLER = st.one_of(st.integers(), st.booleans(), st.none(), st.text(alphabet="mnp ", max_size=6))


def carrying(depth: int) -> st.SearchStrategy[Any]:
    """A JSON value that holds TRIGGER somewhere inside, at most `depth` levels down."""
    if depth == 0:
        return st.just(TRIGGER)
    inner = carrying(depth - 1)
    as_dict = st.tuples(KEYS, inner, st.dictionaries(KEYS, FILLER, max_size=2)).map(
        lambda t: {**t[2], t[0]: t[1]})
    as_list = st.tuples(inner, st.lists(FILLER, max_size=2), st.integers(0, 2)).map(
        lambda t: [*t[1][:t[2]], t[0], *t[1][t[2]:]])
    return st.one_of(st.just(TRIGGER), as_dict, as_list)


PAYLOAD = st.integers(0, 3).flatmap(carrying)
PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ROUTE = {"input": {"scope": "all", "speculative": False}, "output": {"window_chars": 8, "first_window_chars": 2}}


def shared(make_proxy: Any, route: dict[str, Any]) -> Any:
    """One proxy per route for all of a test's examples (starting one per example would take minutes)."""
    cache = make_proxy.__dict__.setdefault("shared", {})
    key = json.dumps(route, sort_keys=True)
    if key not in cache:
        cache[key] = make_proxy(route)
    return cache[key]


def request_with(place: str, key: str, payload: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "test-model", "messages": user("hi")}
    if place == "top":
        body[key] = payload
    elif place == "message":
        body["messages"] = [{"role": "user", "content": "hi", key: payload}]
    elif place == "part":
        body["messages"] = [{"role": "user", "content": [{"type": "text", "text": "hi", key: payload}]}]
    elif place == "tool":
        body["tools"] = [{"type": "function", "function": {"name": "f", key: payload}}]
    return body


@PROPERTY
@given(place=st.sampled_from(["top", "message", "part", "tool"]), key=KEYS, payload=PAYLOAD)
def test_no_request_path_reaches_the_model_unchecked(make_proxy, place, key, payload):
    proxy = shared(make_proxy, ROUTE)
    proxy.classifier.rules[:] = [Rule(TRIGGER, 3)]
    proxy.upstream.requests.clear()
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json=request_with(place, key, payload), timeout=20)
    assert response.status_code == 400, response.text[:300]
    assert not any(TRIGGER in json.dumps(r) for r in proxy.upstream.requests)


def completion_with(place: str, key: str, payload: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "fine"}
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
    body: dict[str, Any] = {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [choice]}
    if place == "top":
        body[key] = payload
    elif place == "choice":
        choice[key] = payload
    elif place == "message":
        message[key] = payload
    elif place == "tool":
        message["tool_calls"] = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}",
                                                                               key: payload}}]
    return body


@PROPERTY
@given(place=st.sampled_from(["top", "choice", "message", "tool"]), key=KEYS, payload=PAYLOAD,
       action=st.sampled_from(["block", "rewrite"]))
def test_no_reply_path_reaches_the_client_unchecked(make_proxy, place, key, payload, action):
    proxy = shared(make_proxy, {**ROUTE, "policies": [{"id": "violence", "action": action}]})
    proxy.classifier.rules[:] = [Rule(TRIGGER, 3)]
    proxy.upstream.raw_completion = completion_with(place, key, payload)
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("hi")},
                          timeout=20)
    assert TRIGGER not in response.text


def stream_with(place: str, key: str, payload: Any) -> list[bytes]:
    def event(delta: dict[str, Any], choice: dict[str, Any] | None = None, top: dict[str, Any] | None = None) -> bytes:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", **(top or {}),
                "choices": [{"index": 0, "delta": delta, "finish_reason": None, **(choice or {})}]}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    if place == "delta":
        carrier = event({key: payload})
    elif place == "choice":
        carrier = event({}, {key: payload})
    else:
        carrier = event({"content": "x"}, top={key: payload})
    return [event({"role": "assistant", "content": "ok"}), carrier, event({}, {"finish_reason": "stop"}),
            b"data: [DONE]\n\n"]


@PROPERTY
@given(place=st.sampled_from(["delta", "choice", "top"]), key=KEYS, payload=PAYLOAD)
def test_no_stream_path_reaches_the_client_unchecked(make_proxy, place, key, payload):
    proxy = shared(make_proxy, ROUTE)
    proxy.classifier.rules[:] = [Rule(TRIGGER, 3)]
    proxy.upstream.raw_events = stream_with(place, key, payload)
    body = {"model": "test-model", "stream": True, "messages": user("hi")}
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, timeout=20) as response:
        text = response.read().decode()
    assert not [path for path, value in reassembled(text).items() if TRIGGER in value]
