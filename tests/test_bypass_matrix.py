"""The bypass matrix: a trigger placed in every position of a request and of a reply, streamed and not, split
across chunks and interleaved across destinations. Neither the model nor the client may ever receive a
trigger that no verdict covered.

Positions are listed by hand, and guarded: an app route, or a structural field that the extractors stop
reading, that this file does not know about fails `test_every_route_is_covered` or
`test_the_structural_allow_lists_are_the_reviewed_ones`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest
from conftest import user
from starlette.routing import Route

from guardrail_proxy.completion_text import CHOICE_STRUCTURE, COMPLETION_STRUCTURE
from guardrail_proxy.standins.safeguard import Rule
from guardrail_proxy.subjects import CALL_STRUCTURE, MESSAGE_STRUCTURE, REQUEST_STRUCTURE
from guardrail_proxy.windows import CHUNK_STRUCTURE, DELTA_STRUCTURE

TRIGGER = "bloodbath"
FIRST, SECOND = "blood", "bath"
ROUTE = {"input": {"scope": "all", "speculative": False}, "output": {"window_chars": 4, "logprobs": "check"}}

# --- request positions --------------------------------------------------------------------------------

REQUEST_POSITIONS: dict[str, dict[str, Any]] = {
    "content": {"messages": user(TRIGGER)},
    "text part": {"messages": [{"role": "user", "content": [{"type": "text", "text": TRIGGER}]}]},
    "text part extra field": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi",
                                                                         "x": TRIGGER}]}]},
    "image part extra field": {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "https://i.test/a.png"},
                                         "caption": TRIGGER}]}], "route": {"allow_unchecked_media": True}},
    "name": {"messages": [{"role": "user", "name": TRIGGER, "content": "hi"}]},
    "unknown message field": {"messages": [{"role": "user", "content": "hi", "data": TRIGGER}]},
    "system message": {"messages": [{"role": "system", "content": TRIGGER}, *user("hi")]},
    "developer message": {"messages": [{"role": "developer", "content": TRIGGER}, *user("hi")]},
    "assistant history": {"messages": [*user("hi"), {"role": "assistant", "content": TRIGGER}, *user("and?")]},
    "assistant refusal": {"messages": [*user("hi"), {"role": "assistant", "refusal": TRIGGER}, *user("and?")]},
    "tool call arguments": {"messages": [*user("hi"), {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": TRIGGER}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}]},
    "tool result": {"messages": [*user("hi"), {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": TRIGGER}]},
    "custom tool input": {"messages": [*user("hi"), {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "custom", "custom": {"name": "sh", "input": TRIGGER}}]}]},
    "legacy function call": {"messages": [*user("hi"), {"role": "assistant", "function_call": {
        "name": "f", "arguments": TRIGGER}}]},
    "tools description": {"tools": [{"type": "function", "function": {"name": "f", "description": TRIGGER}}]},
    "tool parameter name": {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {f"{TRIGGER} now": {"type": "string"}}}}}]},
    "prose in a media field": {"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": f"Explain_{TRIGGER}_steps", "format": "wav"}}]}],
        "route": {"allow_unchecked_media": True}},
    "tool parameter description": {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"q": {"type": "string", "description": TRIGGER}}}}}]},
    "legacy functions": {"functions": [{"name": "f", "description": TRIGGER}]},
    "response_format schema": {"response_format": {"type": "json_schema", "json_schema": {
        "name": "s", "schema": {"type": "object", "description": TRIGGER}}}},
    "prediction": {"prediction": {"type": "content", "content": TRIGGER}},
    "documents": {"documents": [{"text": TRIGGER}]},
    "metadata": {"metadata": {"k": TRIGGER}},
    "stop": {"stop": [TRIGGER]},
    "unknown top-level field": {"whatever": {"deep": [TRIGGER]}},
}


@pytest.mark.parametrize("position", sorted(REQUEST_POSITIONS))
@pytest.mark.parametrize("stream", [False, True])
def test_request_positions(make_proxy, position, stream):
    case = copy.deepcopy(REQUEST_POSITIONS[position])
    proxy = make_proxy({**ROUTE, **case.pop("route", {})})
    proxy.classifier.rules.append(Rule(TRIGGER, 3))
    body = {"model": "test-model", "messages": user("hi"), "stream": stream, **case}
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=20)
    assert response.status_code == 400, f"{position}: {response.status_code} {response.text[:200]}"
    assert response.json()["error"]["code"] == "content_policy_violation"
    assert proxy.upstream.requests == [], f"{position}: the model received the request"


def test_a_prompt_template_never_reaches_the_model(make_proxy):
    proxy = make_proxy(ROUTE)
    response = httpx.post(f"{proxy.url}/v1/chat/completions", timeout=20,
                          json={"model": "test-model", "messages": user("hi"), "chat_template": TRIGGER})
    assert response.status_code == 400 and proxy.upstream.requests == []


# --- reply positions ----------------------------------------------------------------------------------

def completion(message: dict[str, Any], choice_extra: dict[str, Any] | None = None,
               top_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m", **(top_extra or {}),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", **(choice_extra or {})}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


LOGPROBS = {"content": [{"token": "ok", "logprob": -1.0, "bytes": None,
                         "top_logprobs": [{"token": TRIGGER, "logprob": -2.0, "bytes": None}]}]}
REPLY_POSITIONS: dict[str, dict[str, Any]] = {
    "content": completion({"role": "assistant", "content": TRIGGER}),
    "content parts": completion({"role": "assistant", "content": [{"type": "text", "text": TRIGGER}]}),
    "refusal": completion({"role": "assistant", "content": None, "refusal": TRIGGER}),
    "reasoning": completion({"role": "assistant", "content": "ok", "reasoning": TRIGGER}),
    "reasoning_content": completion({"role": "assistant", "content": "ok", "reasoning_content": TRIGGER}),
    "reasoning_content data prefix": completion({"role": "assistant", "content": "ok",
                                                 "reasoning_content": f"data: {TRIGGER}"}),
    "audio transcript": completion({"role": "assistant", "content": None,
                                    "audio": {"id": "a", "transcript": TRIGGER, "data": "QUJD", "expires_at": 1}}),
    "tool call arguments": completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": TRIGGER}}]}),
    "custom tool input": completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "custom", "custom": {"name": "sh", "input": TRIGGER}}]}),
    "legacy function call": completion({"role": "assistant", "content": None,
                                        "function_call": {"name": "f", "arguments": TRIGGER}}),
    "annotations": completion({"role": "assistant", "content": "ok", "annotations": [
        {"type": "url_citation", "url_citation": {"title": TRIGGER, "url": "https://x.test"}}]}),
    "unknown message field": completion({"role": "assistant", "content": "ok", "type": TRIGGER}),
    "unknown choice field": completion({"role": "assistant", "content": "ok"}, {"text": TRIGGER}),
    "logprobs": completion({"role": "assistant", "content": "ok"}, {"logprobs": LOGPROBS}),
    "unknown top-level field": completion({"role": "assistant", "content": "ok"}, top_extra={"note": TRIGGER}),
    "key over a number": completion({"role": "assistant", "content": "ok", f"x_{TRIGGER}": 0}),
    "key over null": completion({"role": "assistant", "content": "ok"}, {f"x_{TRIGGER}": None}),
    "nested key over a boolean": completion({"role": "assistant", "content": "ok"},
                                            top_extra={"x_more": {f"x_{TRIGGER}": True}}),
}


@pytest.mark.parametrize("position", sorted(REPLY_POSITIONS))
@pytest.mark.parametrize("action", ["block", "rewrite"])
def test_reply_positions(make_proxy, position, action):
    proxy = make_proxy({**ROUTE, "policies": [{"id": "violence", "action": action}]})
    proxy.classifier.rules.append(Rule(TRIGGER, 3))
    proxy.upstream.raw_completion = REPLY_POSITIONS[position]
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("hi")},
                          timeout=20)
    assert TRIGGER not in response.text, f"{position}: relayed to the client"
    assert response.status_code in (200, 400)


# Streamed: each case is a list of deltas (or whole chunks) that together carry the trigger, split in two.

def chunk(delta: dict[str, Any] | None = None, *, choice: dict[str, Any] | None = None,
          top: dict[str, Any] | None = None, choices: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", **(top or {})}
    body["choices"] = choices if choices is not None else [
        {"index": 0, "delta": delta or {}, "finish_reason": None, **(choice or {})}]
    return body


def call(index: int, arguments: str, name: str | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if name:
        function["name"] = name
    return {"tool_calls": [{"index": index, **({"id": f"c{index}", "type": "function"} if name else {}),
                            "function": function}]}


STREAM_POSITIONS: dict[str, list[dict[str, Any]]] = {
    "content": [chunk({"content": FIRST}), chunk({"content": SECOND})],
    "refusal": [chunk({"refusal": FIRST}), chunk({"refusal": SECOND})],
    "reasoning_content": [chunk({"reasoning_content": FIRST}), chunk({"reasoning_content": SECOND})],
    "reasoning": [chunk({"reasoning": FIRST}), chunk({"reasoning": SECOND})],
    "audio transcript": [chunk({"audio": {"id": "a", "transcript": FIRST}}), chunk({"audio": {"transcript": SECOND}})],
    "tool call arguments": [chunk(call(0, FIRST, "f")), chunk(call(0, SECOND))],
    "interleaved tool calls": [chunk(call(0, FIRST, "f")), chunk(call(1, "calm", "g")), chunk(call(1, " words")),
                               chunk(call(0, SECOND))],
    "content interrupted by reasoning": [chunk({"content": FIRST}), chunk({"reasoning_content": "hmm"}),
                                         chunk({"content": SECOND})],
    "custom tool input": [chunk({"tool_calls": [{"index": 0, "id": "c", "type": "custom",
                                                 "custom": {"name": "sh", "input": FIRST}}]}),
                          chunk({"tool_calls": [{"index": 0, "custom": {"input": SECOND}}]})],
    "legacy function call": [chunk({"function_call": {"name": "f", "arguments": FIRST}}),
                             chunk({"function_call": {"arguments": SECOND}})],
    "legacy function call extra field": [chunk({"function_call": {"name": "f", "arguments": "", "x": FIRST}}),
                                         chunk({"function_call": {"x": SECOND}})],
    "tool call extra field": [chunk({"tool_calls": [{"index": 0, "id": "c", "type": "function",
                                                     "function": {"name": "f", "arguments": ""}, "note": FIRST}]}),
                              chunk({"tool_calls": [{"index": 0, "note": SECOND}]})],
    "tool call arguments as an object": [chunk({"tool_calls": [{"index": 0, "id": "c", "type": "function",
                                                                "function": {"name": "f", "arguments": {
                                                                    "q": TRIGGER}}}]})],
    "unknown delta field": [chunk({"x_text": FIRST}), chunk({"x_text": SECOND})],
    "unknown choice field": [chunk(choice={"text": FIRST}), chunk(choice={"text": SECOND})],
    "logprobs": [chunk({"content": "ok"}, choice={"logprobs": LOGPROBS})],
    "empty choices chunk": [chunk({"content": "ok"}), chunk(choices=[], top={"note": TRIGGER})],
    "unknown top-level field": [chunk({"content": "ok"}, top={"note": FIRST}),
                                chunk({"content": "ok"}, top={"note": SECOND})],
    "key over a number": [chunk({"content": "ok", f"x_{TRIGGER}": 0})],
    "nested key over a boolean": [chunk({"content": "ok"}, top={"x_more": {f"x_{TRIGGER}": True}})],
    "chunk id changed mid-stream": [chunk({"content": "a"}, top={"id": f"x-{FIRST}"}),
                                    chunk({"content": "b"}, top={"id": f"{SECOND}-y"})],
    "model changed mid-stream": [chunk({"content": "a"}, top={"model": f"x-{FIRST}"}),
                                 chunk({"content": "b"}, top={"model": f"{SECOND}-y"})],
    "tool call id changed mid-stream": [
        chunk({"tool_calls": [{"index": 0, "id": "c0", "type": "function",
                               "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "id": f"x-{FIRST}", "function": {"arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "id": f"{SECOND}-y", "function": {"arguments": ""}}]})],
    "second choice": [chunk(choices=[{"index": 1, "delta": {"content": FIRST}, "finish_reason": None}]),
                      chunk(choices=[{"index": 1, "delta": {"content": SECOND}, "finish_reason": None}])],
}


def reassembled(text: str) -> dict[str, str]:
    """What a client rebuilds from the stream: every string, concatenated per JSON path across events (list
    items keyed by their `index` field, as clients key choices and tool calls)."""
    found: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str):
            found[path] = found.get(path, "") + value
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for position, item in enumerate(value):
                key = item.get("index", position) if isinstance(item, dict) else position
                walk(item, f"{path}[{key}]")

    for line in text.splitlines():
        if line.startswith("data: {"):
            walk(json.loads(line[6:]), "")
    return found


@pytest.mark.parametrize("position", sorted(STREAM_POSITIONS))
@pytest.mark.parametrize("mode", ["window", "buffer"])
def test_stream_positions(make_proxy, position, mode):
    proxy = make_proxy({**ROUTE, "output": {**ROUTE["output"], "stream_mode": mode}})
    proxy.classifier.rules.append(Rule(TRIGGER, 3))
    events = [chunk({"role": "assistant", "content": ""}), *STREAM_POSITIONS[position], chunk(choice={
        "finish_reason": "stop"})]
    proxy.upstream.raw_events = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
    body = {"model": "test-model", "stream": True, "messages": user("hi"), "n": 2}
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, timeout=20) as response:
        text = response.read().decode()
    leaked = {path: value for path, value in reassembled(text).items() if TRIGGER in value}
    assert not leaked, f"{position}: {leaked}"
    # Stopped by the verdict, or (a custom tool call, which the SDK's chunk type cannot hold yet) by an
    # error event: either way before the trigger was whole.
    assert '"content_filter"' in text or '"error"' in text, f"{position}: the stream was not stopped"


# --- guards: nothing new slips in unlisted ----------------------------------------------------------

# --- moderation positions: every item that holds the trigger is flagged -------------------------------------

MODERATION_POSITIONS: dict[str, tuple[Any, int, dict[str, Any]]] = {  # input, the item holding it, route
    "string": (TRIGGER, 0, {}),
    "list item": (["hi", TRIGGER], 1, {}),
    "text part": ([{"type": "text", "text": TRIGGER}], 0, {}),
    "text part extra field": ([{"type": "text", "text": "hi", "x": TRIGGER}], 0, {}),
    "input_text part": ([{"type": "input_text", "text": TRIGGER}], 0, {}),
    "image part extra field": ([{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {
        "url": "https://i.test/a.png"}, "caption": TRIGGER}], 0, {"allow_unchecked_media": True}),
}


@pytest.mark.parametrize("position", sorted(MODERATION_POSITIONS))
@pytest.mark.parametrize("path", ["/v1/moderations", "/moderations"])
def test_moderation_positions(make_proxy, position, path):
    value, item, route = copy.deepcopy(MODERATION_POSITIONS[position])
    proxy = make_proxy({**ROUTE, **route})
    proxy.classifier.rules.append(Rule(TRIGGER, 3))
    response = httpx.post(f"{proxy.url}{path}", json={"model": "test-model", "input": value}, timeout=20)
    assert response.status_code == 200, f"{position}: {response.status_code} {response.text[:200]}"
    results = response.json()["results"]
    assert results[item]["flagged"] is True, f"{position}: the trigger was not judged"
    assert [r["flagged"] for i, r in enumerate(results) if i != item] == [False] * (len(results) - 1)


# --- check endpoint positions: the trigger anywhere in what is judged makes the decision a block ------------

CHECK_POSITIONS: dict[str, dict[str, Any]] = {
    "content": {"messages": user(TRIGGER)},
    "text part extra field": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi",
                                                                         "x": TRIGGER}]}]},
    "name": {"messages": [{"role": "user", "name": TRIGGER, "content": "hi"}]},
    "system message": {"messages": [{"role": "system", "content": TRIGGER}, *user("hi")]},
    "tool call arguments": {"messages": [*user("hi"), {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": TRIGGER}}]}]},
    "texts item": {"texts": ["hi", TRIGGER]},
    "output text": {"phase": "output", "texts": [f"well {TRIGGER}"], "messages": user("hi")},
}


@pytest.mark.parametrize("position", sorted(CHECK_POSITIONS))
def test_check_positions(make_proxy, position):
    proxy = make_proxy(ROUTE)
    proxy.classifier.rules.append(Rule(TRIGGER, 3))
    body = {"route": "main", **copy.deepcopy(CHECK_POSITIONS[position])}
    response = httpx.post(f"{proxy.url}/v1/guardrail/check", json=body, timeout=20)
    assert response.status_code == 200, f"{position}: {response.status_code} {response.text[:200]}"
    assert response.json()["decision"] == "block", f"{position}: the trigger was not judged"


# --- LiteLLM guardrail positions: the trigger anywhere LiteLLM's generic guardrail API can put it is judged --------

LITELLM_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": TRIGGER}}
LITELLM_POSITIONS: dict[str, dict[str, Any]] = {  # bodies as LiteLLM's chat handler builds them (input_type request)
    "texts item": {"texts": ["hi", TRIGGER]},
    "message content": {"texts": [TRIGGER], "structured_messages": user(TRIGGER)},
    "text part": {"texts": [TRIGGER], "structured_messages": [
        {"role": "user", "content": [{"type": "text", "text": TRIGGER}]}]},
    "text part extra field": {"texts": ["hi"], "structured_messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi", "x": TRIGGER}]}]},
    "name (forward_messages_as_sent)": {"texts": ["hi"], "structured_messages": [
        {"role": "user", "name": TRIGGER, "content": "hi"}]},
    "system message": {"texts": [TRIGGER, "hi"], "structured_messages": [
        {"role": "system", "content": TRIGGER}, *user("hi")]},
    "tool call arguments in a message": {"texts": ["hi"], "tool_calls": [LITELLM_CALL], "structured_messages": [
        *user("hi"), {"role": "assistant", "content": None, "tool_calls": [LITELLM_CALL]}]},
    "tool result": {"texts": ["hi", TRIGGER], "structured_messages": [
        *user("hi"), {"role": "tool", "tool_call_id": "c1", "content": TRIGGER}]},
    "a text in no message": {"texts": ["hi", TRIGGER], "structured_messages": user("hi")},
    "a tool call in no message": {"texts": ["hi"], "structured_messages": user("hi"), "tool_calls": [LITELLM_CALL]},
    "tool_calls without messages": {"texts": ["hi"], "tool_calls": [LITELLM_CALL]},
    "tools description": {"texts": ["hi"], "tools": [
        {"type": "function", "function": {"name": "f", "description": TRIGGER}}]},
    "tool parameter name": {"texts": ["hi"], "tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {f"{TRIGGER} now": {"type": "string"}}}}}]},
    "unknown field": {"texts": ["hi"], "whatever": {"deep": [TRIGGER]}},
    "response text": {"input_type": "response", "texts": [f"well {TRIGGER}"]},
    "response second text": {"input_type": "response", "texts": ["ok", TRIGGER]},
    "response tool call": {"input_type": "response", "texts": [], "tool_calls": [LITELLM_CALL]},
}


@pytest.mark.parametrize("position", sorted(LITELLM_POSITIONS))
@pytest.mark.parametrize("action", ["block", "rewrite"])
def test_litellm_guardrail_positions(make_proxy, position, action):
    proxy = make_proxy({**ROUTE, "policies": [{"id": "violence", "action": action}]})
    proxy.classifier.rules.append(Rule(TRIGGER, 3))
    body = {"input_type": "request", "additional_provider_specific_params": {"route": "main"},
            **copy.deepcopy(LITELLM_POSITIONS[position])}
    response = httpx.post(f"{proxy.url}/beta/litellm_basic_guardrail_api", json=body, timeout=20)
    assert response.status_code == 200, f"{position}: {response.status_code} {response.text[:200]}"
    answer = response.json()
    written_back = {k: answer[k] for k in ("texts", "structured_messages") if k in answer}
    assert answer["action"] == "BLOCKED" or (answer["action"] == "GUARDRAIL_INTERVENED" and written_back), \
        f"{position}: the trigger was not judged"
    assert TRIGGER not in json.dumps(written_back), f"{position}: written back to LiteLLM"


CONTENT_ROUTES = {"/v1/chat/completions", "/chat/completions", "/v1/moderations", "/moderations",
                  "/v1/guardrail/check", "/beta/litellm_basic_guardrail_api"}
NO_CONTENT_ROUTES = {"/v1/models", "/r/{route}/v1/models", "/healthz", "/readyz", "/metrics", "/admin/reload",
                     "/admin/config",
                     "/console"}  # the review console (a Mount under it): operators only, forwards nothing


def test_every_route_is_covered(make_proxy):
    proxy = make_proxy()
    paths = {r.path for r in proxy.server.server.config.app.routes if isinstance(r, Route)}
    # /r/<route>/v1/... runs the very endpoint /v1/... does, so the positions above cover it too.
    endpoints = {r.path: r.endpoint for r in proxy.server.server.config.app.routes if isinstance(r, Route)}
    prefixed = {p for p in paths if p.startswith("/r/{route}/")}
    for path in prefixed - NO_CONTENT_ROUTES:
        assert endpoints[path] is endpoints[path.removeprefix("/r/{route}")], path
    unknown = paths - CONTENT_ROUTES - NO_CONTENT_ROUTES - prefixed
    assert not unknown, f"routes the bypass matrix does not cover: {unknown}"


def test_the_structural_allow_lists_are_the_reviewed_ones():
    """A field added to an allow-list is a field no longer read: review it here, with a reason."""
    assert {"role", "tool_call_id"} == MESSAGE_STRUCTURE
    assert {
        "messages", "model", "stream", "n", "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed",
        "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "parallel_tool_calls",
        "reasoning_effort", "service_tier", "store", "stream_options", "modalities", "user"} == REQUEST_STRUCTURE
    assert {"role", "content", "refusal", "tool_calls", "function_call"} == DELTA_STRUCTURE  # read explicitly
    assert {"index", "message", "finish_reason", "logprobs"} == CHOICE_STRUCTURE
    assert {"index", "id", "type", "function", "custom"} == CALL_STRUCTURE
    assert {"id", "object", "created", "model", "system_fingerprint", "service_tier"} == CHUNK_STRUCTURE
    assert CHUNK_STRUCTURE | {"choices"} == COMPLETION_STRUCTURE
