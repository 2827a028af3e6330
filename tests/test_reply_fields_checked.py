"""End to end, through the real proxy and the official openai SDK: every string of a reply the client gets is
classified, structural fields included when they hold something other than what the wire format puts there;
and JSON the proxy cannot walk (nested too deeply) is a clear error at the parse, never a 500.

The upstream stand-in sends crafted replies (raw_completion, raw_events); the classifier stand-in flags any
text containing "unsafe", so a field that reaches the classifier blocks the reply."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from conftest import user
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from guardrail_proxy.standins.safeguard import Rule
from guardrail_proxy.standins.server import ServerThread
from guardrail_proxy.wire_json import MAX_DEPTH

ID = "chatcmpl-9f2c41e0b5d84c1f8e7a2b3c4d5e6f70"


def completion(message: dict[str, Any] | None = None, choice: dict[str, Any] | None = None,
               **top: Any) -> dict[str, Any]:
    return {"id": ID, "object": "chat.completion", "created": 1700000000, "model": "stand-in-chat",
            "system_fingerprint": "fp_44709d6fcb",
            "choices": [{"index": 0, "message": message or {"role": "assistant", "content": "hi"},
                         "finish_reason": "stop", "logprobs": None, **(choice or {})}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}, **top}


def classified(proxy: Any) -> str:
    """Everything the classifier was shown, every call's user message."""
    return "\n".join(str(r["messages"][-1]["content"]) for r in proxy.classifier.requests)


def test_a_plain_reply_costs_no_call_for_its_ids(make_proxy):
    proxy = make_proxy()
    proxy.upstream.raw_completion = completion()
    reply = proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    assert reply.choices[0].message.content == "hi" and reply.id == ID
    assert len(proxy.classifier.requests) == 2  # the input and the one choice: nothing for id, model, created


@pytest.mark.parametrize("body", [
    # The review's case: all three reached the client with a 200 while the classifier saw only "hi".
    completion({"role": "UNSAFE-ROLE-TEXT", "content": "hi"}, {"finish_reason": "UNSAFE-FINISH"},
               model="UNSAFE MODEL TEXT"),
    completion({"role": "UNSAFE-ROLE-TEXT", "content": "hi"}),
    completion(choice={"finish_reason": "UNSAFE-FINISH"}),
    completion(model="UNSAFE MODEL TEXT"),
    completion(id="UNSAFE ID TEXT"),
    completion(object="UNSAFE-OBJECT"),
    completion(created="UNSAFE CREATED"),
    completion(system_fingerprint="UNSAFE FINGERPRINT"),
    completion(service_tier="UNSAFE-TIER"),
    completion(model={"name": "UNSAFE IN AN OBJECT"}),
    completion({"role": "tool", "tool_call_id": "UNSAFE TOOL CALL ID", "content": "hi"}),
    completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "UNSAFE CALL ID", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"finish_reason": "tool_calls"}),
    completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "UNSAFE TYPE", "function": {"name": "f", "arguments": "{}"}}]}),
])
def test_text_in_a_structural_field_is_classified(make_proxy, body):
    proxy = make_proxy()
    proxy.upstream.raw_completion = body
    proxy.classifier.rules.append(Rule("unsafe", 3))
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    assert "unsafe" not in info.value.response.text.lower()
    assert "unsafe" in classified(proxy).lower()


def event(delta: dict[str, Any], finish: str | None = None, **envelope: Any) -> bytes:
    chunk = {"id": ID, "object": "chat.completion.chunk", "created": 1, "model": "stand-in-chat",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **envelope}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def streamed(proxy: Any) -> str:
    """Every chunk the SDK yields, as JSON text, up to the end or an error event."""
    seen = []
    try:
        for chunk in proxy.client.chat.completions.create(model="test-model", messages=user("hello"), stream=True):
            seen.append(chunk.model_dump_json())
    except openai.APIError as exc:
        seen.append(str(exc))
    return "\n".join(seen)


@pytest.mark.parametrize("events", [
    [event({"role": "UNSAFE-ROLE-TEXT", "content": "hi"}), event({}, "stop")],
    [event({"role": "assistant", "content": "hi"}), event({}, "UNSAFE-FINISH")],
    [event({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "UNSAFE CALL ID", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
     event({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}), event({}, "tool_calls")],
    [event({"role": "assistant", "content": "hi"}, object="UNSAFE-OBJECT"), event({}, "stop")],
    [event({"role": "assistant", "content": "hi"}, service_tier="UNSAFE-TIER"), event({}, "stop")],
    [event({"role": "assistant", "content": "hi"}, model="UNSAFE MODEL TEXT"), event({}, "stop")],
    [event({"role": "assistant", "content": "hi"}, id="UNSAFE ID TEXT"), event({}, "stop")],
    [event({"role": "assistant", "content": "hi"}, created="UNSAFE CREATED"), event({}, "stop")],
    [event({"role": "assistant", "content": "hi"}, system_fingerprint="UNSAFE FINGERPRINT"), event({}, "stop")],
])
def test_text_in_a_streamed_structural_field_is_classified(make_proxy, events):
    proxy = make_proxy({"output": {"window_chars": 1}})
    proxy.upstream.raw_events = [*events, b"data: [DONE]\n\n"]
    proxy.classifier.rules.append(Rule("unsafe", 3))
    assert "unsafe" not in streamed(proxy).lower()
    assert "unsafe" in classified(proxy).lower()


# The review's key names: no text in their values, so the old rule never read them. A client receives them all.
KEYED_COMPLETIONS = [
    completion({"role": "assistant", "content": "hi", "X_unsafe_instructions_live_here": 0}),
    completion({"role": "assistant", "content": "hi", "X_unsafe_null": None}),
    completion(X_and_more_here={"X_unsafe_nested_too": True}),
    completion(choice={"X_unsafe_in_the_choice": 1}),
    completion(usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "X_unsafe_counter": 3}),
]


@pytest.mark.parametrize("body", KEYED_COMPLETIONS)
def test_a_key_with_no_text_under_it_is_classified(make_proxy, body):
    proxy = make_proxy()
    proxy.upstream.raw_completion = body
    proxy.classifier.rules.append(Rule("unsafe", 3))
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    assert "unsafe" not in info.value.response.text.lower()
    assert "unsafe" in classified(proxy).lower()


@pytest.mark.parametrize("events", [
    # The review's stream, as it was confirmed end to end.
    [event({"role": "assistant", "content": "hi"}),
     b"data: " + json.dumps({"id": ID, "object": "chat.completion.chunk", "created": 1, "model": "stand-in-chat",
                             "choices": [{"index": 0, "delta": {"content": " there",
                                                                 "X_unsafe_instructions_live_here": 0}}],
                             "X_and_more_here": {"X_nested_too": True}}).encode() + b"\n\n",
     event({}, "stop")],
    [event({"role": "assistant", "content": "hi"}, X_and_more_here={"X_unsafe_nested_too": True}), event({}, "stop")],
    [event({"role": "assistant", "content": "hi", "X_unsafe_null": None}), event({}, "stop")],
    [event({"role": "assistant", "content": "hi"}), event({}, "stop", usage={"prompt_tokens": 1, "X_unsafe": 1})],
])
def test_a_streamed_key_with_no_text_under_it_is_classified(make_proxy, events):
    proxy = make_proxy({"output": {"window_chars": 1}})
    proxy.upstream.raw_events = [*events, b"data: [DONE]\n\n"]
    proxy.classifier.rules.append(Rule("unsafe", 3))
    assert "unsafe" not in streamed(proxy).lower()
    assert "unsafe" in classified(proxy).lower()


def call_event(call_id: str | None, arguments: str, kind: str = "function") -> bytes:
    call: dict[str, Any] = {"index": 0, "function": {"arguments": arguments}}
    if call_id is not None:
        call.update(id=call_id, type=kind)
    return event({"tool_calls": [call]})


@pytest.mark.parametrize("events", [
    # The review's case: each chunk id a token on its own, instructions together.
    [event({"role": "assistant", "content": "hi"}), event({"content": " a"}, id="Step1-mix-unsafe-and-ammonia"),
     event({"content": " b"}, id="Step2-seal-the-room-and-wait"), event({}, "stop")],
    [event({"role": "assistant", "content": "hi"}), event({"content": " a"}, model="Step1-unsafe-model"),
     event({}, "stop")],
    [event({"role": "assistant", "content": "hi"}, system_fingerprint="fp_1"),
     event({"content": " a"}, system_fingerprint="fp_unsafe"), event({}, "stop")],
    [event({"role": "assistant", "content": None}), call_event("call_1", ""),
     call_event("Step2-unsafe-seal-the-room", "{}"), event({}, "tool_calls")],
    [event({"role": "assistant", "content": None}), call_event("call_1", ""),
     call_event("call_1", "{}", kind="unsafe-type"), event({}, "tool_calls")],
])
def test_ids_and_names_that_change_mid_stream_are_classified(make_proxy, events):
    proxy = make_proxy({"output": {"window_chars": 1}})
    proxy.upstream.raw_events = [*events, b"data: [DONE]\n\n"]
    proxy.classifier.rules.append(Rule("unsafe", 3))
    assert "unsafe" not in streamed(proxy).lower()
    assert "unsafe" in classified(proxy).lower()


def test_a_plain_stream_costs_no_call_for_its_ids_nulls_and_counters(make_proxy):
    proxy = make_proxy({"output": {"stream_mode": "buffer"}})
    vllm = {"reasoning_content": None, "tool_calls": []}
    proxy.upstream.raw_events = [
        event({"role": "assistant", "content": "", **vllm}, system_fingerprint=None),
        call_free := event({"content": "hi", **vllm}, system_fingerprint=None),
        call_free,
        event({}, "stop", system_fingerprint=None, usage={
            "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "prompt_tokens_details": None}),
        b"data: [DONE]\n\n"]
    assert streamed(proxy).count('"content":"hi"') == 2
    assert len(proxy.classifier.requests) == 2  # the input and the one checked window


def nested_bytes(levels: int) -> bytes:
    return b"[" * levels + b"1" + b"]" * levels


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 300])
def test_a_request_nested_too_deeply_is_a_400_before_any_check(make_proxy, levels):
    proxy = make_proxy()
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client.chat.completions.create(model="test-model", messages=user("hi"),
                                             extra_body={"x": json.loads(nested_bytes(levels))})
    assert info.value.response.json()["error"]["message"] == \
        f"the request body is nested too deeply (more than {MAX_DEPTH} levels of arrays and objects)"
    assert proxy.classifier.requests == [] and proxy.upstream.requests == []


def test_a_request_deeper_than_any_json_library_recurses_is_a_400(make_proxy):
    # The SDK's own encoder cannot write this body (json.dumps recurses), so it is posted as bytes.
    proxy = make_proxy()
    body = b'{"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "x": ' + nested_bytes(5000) \
        + b"}"
    response = httpx.post(f"{proxy.url}/v1/chat/completions", content=body,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]["message"]
    assert proxy.classifier.requests == []


def test_a_reply_nested_too_deeply_is_a_502_after_the_input_check(make_proxy):
    proxy = make_proxy()
    proxy.upstream.raw_completion = completion({"role": "assistant", "content": "hi",
                                                "x": json.loads(nested_bytes(300))})
    with pytest.raises(openai.APIStatusError) as info:
        proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    assert info.value.status_code == 502
    assert info.value.response.json()["error"]["type"] == "upstream_error"
    assert len(proxy.classifier.requests) == 1  # the input check; the reply never reached a reader
    assert "nested too deeply" in proxy.wait_audit()[0]["error"]


def test_a_classifier_answer_nested_too_deeply_is_malformed(make_proxy):
    proxy = make_proxy(classifier={"transport": "aiohttp", "retries": 0})
    proxy.classifier.raw_body = '{"choices": [{"index": 0, "message": {"role": "assistant", "content": "0", "x": ' \
        + nested_bytes(300).decode() + "}}]}"
    with pytest.raises(openai.APIStatusError) as info:
        proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    assert info.value.status_code == 503  # the route fails closed on a classifier fault
    check = proxy.wait_audit()[0]["phases"][0]["checks"][0]
    assert (check["error_kind"], check["error"]) == ("malformed", "the classifier's response is not JSON")


def bom_upstream(body: dict[str, Any]) -> Starlette:
    async def chat(request: Request) -> Response:
        return Response(b"\xef\xbb\xbf" + json.dumps(body).encode(), media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def test_a_byte_order_mark_before_a_reply_is_accepted(make_proxy):
    with ServerThread(bom_upstream(completion())) as upstream:
        proxy = make_proxy(classifier={"transport": "aiohttp"},
                           upstream_cfg={"provider": "openai", "model": "m", "api_base": f"{upstream.url}/v1"})
        proxy.classifier.raw_body = "\ufeff" + json.dumps({
            "id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "TV0"}, "finish_reason": "stop"}]})
        reply = proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
    assert reply.choices[0].message.content == "hi"
