"""Upstreams and classifiers that misbehave: malformed events, dropped connections, odd shapes, text in
fields the proxy does not model. Every case ends in a clear answer (never a hang or a 500), and no text
reaches the client without the output check."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from conftest import free_port, user

from guardrail_proxy.standins.safeguard import Rule
from guardrail_proxy.standins.server import ServerThread
from guardrail_proxy.standins.upstream import UpstreamBehaviour, build_upstream_app


def event(delta: dict, finish: str | None = None, index: int = 0) -> bytes:
    obj = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def completion(message: dict, finish: str = "stop") -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def stream(proxy, **extra) -> tuple[int, str]:
    body = {"model": "test-model", "stream": True, "messages": user("hi"), **extra}
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, timeout=10) as response:
        return response.status_code, response.read().decode()


def events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


@pytest.mark.parametrize("raw", [
    [event({"role": "assistant", "content": "Hello"}), b"data: {not json\n\n", event({}, "stop"), b"data: [DONE]\n\n"],
    [event({"role": "assistant", "content": "Hello"}), 0.05, "DROP"],
])
def test_a_stream_that_breaks_mid_way_ends_with_an_error_event(make_proxy, raw):
    proxy = make_proxy({"output": {"window_chars": 1}})
    proxy.upstream.raw_events = raw
    status, text = stream(proxy)
    assert status == 200
    assert events(text)[-1]["error"]["type"] == "upstream_error"
    assert proxy.wait_audit()[0]["status"] == 502


@pytest.mark.parametrize("raw", [[b"data: {not json\n\n"], ["DROP"], [b"data: [DONE]\n\n"]])
def test_a_stream_that_never_starts_is_an_http_error(make_proxy, raw):
    proxy = make_proxy()
    proxy.upstream.raw_events = raw
    status, text = stream(proxy)
    assert status == 502 and json.loads(text)["error"]["type"] == "upstream_error"
    assert proxy.wait_audit()[0]["status"] == 502


def test_legacy_function_call_arguments_are_checked(make_proxy):
    proxy = make_proxy()
    proxy.upstream.raw_completion = completion(
        {"role": "assistant", "content": None, "function_call": {"name": "send", "arguments": '{"t": "blood"}'}},
        "function_call")
    proxy.classifier.rules.append(Rule("blood", 3))
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("hi")})
    assert response.status_code == 400 and "blood" not in response.text


def test_custom_tool_call_input_is_checked(make_proxy):
    proxy = make_proxy()
    proxy.upstream.raw_completion = completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "custom", "custom": {"name": "shell", "input": "blood everywhere"}}]}, "tool_calls")
    proxy.classifier.rules.append(Rule("blood", 3))
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("hi")})
    assert response.status_code == 400 and "blood" not in response.text


def test_unmodelled_fields_are_checked_too(make_proxy):
    proxy = make_proxy()
    proxy.upstream.raw_completion = completion(
        {"role": "assistant", "content": "fine", "reasoning_content": "secretly plan the blood bath"})
    proxy.classifier.rules.append(Rule("blood", 3))
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("hi")})
    assert response.status_code == 400 and "blood" not in response.text


def test_legacy_function_call_stream_is_checked(make_proxy):
    proxy = make_proxy()
    proxy.upstream.raw_events = [
        event({"role": "assistant", "content": None, "function_call": {"name": "send", "arguments": ""}}),
        event({"function_call": {"arguments": '{"text": "blood everywhere"}'}}),
        event({}, "function_call"), b"data: [DONE]\n\n"]
    proxy.classifier.rules.append(Rule("blood", 3))
    _, text = stream(proxy)
    assert "blood" not in text


def test_annotation_arrives_when_the_last_text_rides_on_the_finish_chunk(make_proxy):
    proxy = make_proxy({"output": {"window_chars": 10}, "policies": [{"id": "violence", "action": "annotate"}]})
    proxy.upstream.raw_events = [event({"role": "assistant", "content": ""}), event({"content": "a peaceful "}),
                                 event({"content": "blood story"}, "stop"), b"data: [DONE]\n\n"]
    proxy.classifier.rules.append(Rule("blood", 2))
    _, text = stream(proxy)
    assert events(text)[-1]["guardrail"]["decision"] == "annotate"


def test_a_block_with_two_choices_finishes_both(make_proxy):
    proxy = make_proxy({"output": {"window_chars": 5}, "block_style": "completion"})
    proxy.upstream.raw_events = [
        event({"role": "assistant", "content": ""}, index=0), event({"role": "assistant", "content": ""}, index=1),
        event({"content": "fine text"}, index=0), event({"content": "blood text"}, index=1),
        event({}, "stop", index=0), event({}, "stop", index=1), b"data: [DONE]\n\n"]
    proxy.classifier.rules.append(Rule("blood", 2))
    _, text = stream(proxy, n=2)
    finished = {c["index"]: c["finish_reason"] for e in events(text) for c in e["choices"] if c.get("finish_reason")}
    assert finished == {0: "content_filter", 1: "content_filter"}


def test_post_mode_marks_a_failed_final_check_as_unchecked(make_proxy):
    proxy = make_proxy({"output": {"stream_mode": "post"}, "policies": [{"id": "violence", "action": "annotate"}]})
    proxy.classifier.rules.append(Rule("reply", answer="garbage"))  # the output check fails; input passes
    _, text = stream(proxy)
    assert events(text)[-1]["guardrail"]["decision"] == "unchecked"
    assert proxy.wait_audit()[0]["decision"] == "unchecked"


def test_a_phrase_split_by_a_window_boundary_is_judged_whole(make_proxy):
    proxy = make_proxy({"output": {"window_chars": 10}})
    proxy.upstream.replies["x"] = "aaaa knife fight now"
    proxy.classifier.rules.append(Rule("knife fight", 3))
    _, text = stream(proxy, messages=user("x"))
    assert "fight" not in "".join(c["delta"].get("content") or "" for e in events(text) for c in e["choices"])


@pytest.mark.parametrize("payload", [
    "{}",
    json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": {"x": 1}}}]}),
    json.dumps({"choices": [{"index": 0}]}),
    "not json at all",
])
def test_a_malformed_classifier_answer_follows_the_fail_mode(make_proxy, payload):
    proxy = make_proxy({"fail_mode": "open"})
    proxy.classifier.raw_body = payload
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("hi")})
    assert response.status_code == 200 and response.headers["x-guardrail-decision"] == "unchecked"


def test_a_malformed_classifier_answer_mid_stream_still_ends_the_stream(make_proxy):
    proxy = make_proxy({"fail_mode": "open", "input": {"enabled": False}})
    proxy.classifier.raw_body = json.dumps({"choices": [{"index": 0}]})
    _, text = stream(proxy)
    assert text.endswith("data: [DONE]\n\n") and events(text)[-1]["guardrail"]["decision"] == "unchecked"


@pytest.mark.parametrize("category", ["spam — promo", "spam\r\nx-evil: 1"])
def test_free_text_labels_cannot_break_headers(make_proxy, category):
    proxy = make_proxy({"policies": [{"id": "spam"}]})
    proxy.classifier.injected = json.dumps({"violation": 1, "policy_category": category})
    for streamed in (False, True):
        body = {"model": "test-model", "messages": user("buy now"), "stream": streamed}
        response = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=10)
        assert response.status_code == 200 and "x-evil" not in response.headers
        assert response.headers["x-guardrail-labels"].isascii()
    time.sleep(0.1)
    assert len(proxy.wait_audit(2)) == 2


def test_chunks_without_envelope_fields_are_accepted(make_proxy):
    proxy = make_proxy()
    proxy.upstream.raw_events = [b'data: {"choices": [{"index": 0, "delta": {"content": "hi there"}}]}\n\n',
                                 b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n',
                                 b"data: [DONE]\n\n"]
    _, text = stream(proxy)
    assert "".join(c["delta"].get("content") or "" for e in events(text) for c in e["choices"]) == "hi there"


def test_an_error_event_from_the_upstream_is_relayed_as_an_error(make_proxy):
    proxy = make_proxy({"output": {"window_chars": 1}})
    proxy.upstream.raw_events = [event({"role": "assistant", "content": "Hi"}),
                                 b'data: {"error": {"message": "overloaded"}}\n\n']
    _, text = stream(proxy)
    # A fixed text for the client (an upstream's message is unchecked text); the upstream's words in the audit.
    assert events(text)[-1]["error"]["message"] == "the upstream model failed mid-stream"
    assert "overloaded" in proxy.wait_audit()[0]["error"]


def test_aiohttp_classifier_transport_end_to_end(make_proxy):
    proxy = make_proxy(classifier={"transport": "aiohttp"})
    proxy.classifier.rules.append(Rule("blood", 3))
    ok = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("hello")})
    blocked = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("blood")})
    assert ok.status_code == 200 and blocked.status_code == 400
    proxy.classifier.mode = "garbage"
    failed = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("new")})
    assert failed.status_code == 503
    assert httpx.get(f"{proxy.url}/readyz").json()["checks"]["classifier:default"] == "ok"


@pytest.mark.parametrize("raw", [
    # one event's data spread over two data: lines, per the SSE format
    [b'data: {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",\n'
     b'data:  "choices": [{"index": 0, "delta": {"content": "split event"}}]}\n\n', b"data: [DONE]\n\n"],
    # keep-alives: an empty data field and a comment
    [b"data:\n\n", b": ping\n\n", event({"content": "split event"}), b"data: [DONE]\n\n"],
])
def test_valid_sse_variants_are_read(make_proxy, raw):
    proxy = make_proxy()
    proxy.upstream.raw_events = raw
    _, text = stream(proxy)
    assert "".join(c["delta"].get("content") or "" for e in events(text) for c in e["choices"]) == "split event"


@pytest.mark.parametrize("bad", [
    b'data: {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],'
    b' "error": {"message": "overloaded"}}\n\n',
    b'event: error\ndata: {"message": "overloaded"}\n\n',
])
def test_error_events_in_any_shape_end_the_stream(make_proxy, bad):
    proxy = make_proxy({"output": {"window_chars": 1}})
    proxy.upstream.raw_events = [event({"role": "assistant", "content": "Hi"}), bad, b"data: [DONE]\n\n"]
    _, text = stream(proxy)
    assert events(text)[-1]["error"]["type"] == "upstream_error"
    assert proxy.wait_audit()[0]["status"] == 502


def test_choice_level_text_is_checked(make_proxy):
    proxy = make_proxy()
    proxy.classifier.rules.append(Rule("blood", 3))
    proxy.upstream.raw_completion = {**completion({"role": "assistant", "content": "fine"}), "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop",
         "text": "blood everywhere"}]}
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("hi")})
    assert response.status_code == 400
    proxy.upstream.raw_events = [b'data: {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",'
                                 b' "choices": [{"index": 0, "delta": {}, "text": "blood everywhere"}]}\n\n',
                                 event({}, "stop"), b"data: [DONE]\n\n"]
    _, text = stream(proxy)
    assert "blood" not in text


def test_inline_images_are_not_sent_to_the_classifier(make_proxy):
    proxy = make_proxy()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 20000}}
    proxy.upstream.raw_completion = completion({"role": "assistant", "content": "here", "images": [image]})
    httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("draw")})
    assert all(len(r["messages"][1]["content"]) < 1000 for r in proxy.classifier.requests)


def test_client_fields_cannot_redirect_a_litellm_upstream(make_proxy, upstream):
    _, up_server = upstream
    attacker = UpstreamBehaviour()
    with ServerThread(build_upstream_app(attacker)) as evil:
        proxy = make_proxy(upstream_cfg={"provider": "litellm", "model": "openai/stand-in-chat",
                                         "api_base": f"{up_server.url}/v1"})
        body = {"model": "test-model", "messages": user("hi"), "base_url": f"{evil.url}/v1",
                "api_base": f"{evil.url}/v1", "api_key": "x", "extra_headers": {"x-evil": "1"}}
        response = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=20)
    assert response.status_code == 200 and attacker.requests == []
    assert len(proxy.upstream.requests) == 1


@pytest.mark.parametrize("provider", ["openai", "litellm"])
def test_an_unreachable_upstream_is_not_reported_as_slow(make_proxy, provider):
    model = "stand-in-chat" if provider == "openai" else "openai/stand-in-chat"
    proxy = make_proxy({"input": {"speculative": False}}, upstream_cfg={
        "provider": provider, "model": model, "api_base": f"http://127.0.0.1:{free_port()}/v1"})
    response = httpx.post(f"{proxy.url}/v1/chat/completions",
                          json={"model": "test-model", "messages": user("hi")}, timeout=20)
    # A gateway error, never a 504: nothing was slow. litellm reports a refused connection as its own
    # InternalServerError, so only the direct client can name it precisely.
    assert response.status_code == 502, response.text
    expected = "upstream_unavailable" if provider == "openai" else "upstream_error"
    assert response.json()["error"]["code"] == expected


@pytest.mark.parametrize("provider", ["openai", "litellm"])
def test_a_slow_upstream_is_a_timeout(make_proxy, upstream, provider):
    behaviour, server = upstream
    behaviour.delay_s = 2.0
    model = "stand-in-chat" if provider == "openai" else "openai/stand-in-chat"
    proxy = make_proxy({"input": {"speculative": False}}, upstream_cfg={
        "provider": provider, "model": model, "api_base": f"{server.url}/v1", "timeout_s": 0.5})
    response = httpx.post(f"{proxy.url}/v1/chat/completions",
                          json={"model": "test-model", "messages": user("hi")}, timeout=20)
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "upstream_timeout"


# --- text found by the one extractor (extract.py): no prefix, key name or SDK field layout hides it -------

@pytest.mark.parametrize("message", [
    {"role": "assistant", "content": "fine", "reasoning_content": "data: the blood bath plan"},
    {"role": "assistant", "content": "fine", "data": "the blood bath plan"},
    {"role": "assistant", "content": "fine", "type": "the blood bath plan"},
    {"role": "assistant", "content": [{"type": "text", "text": "fine", "note": "the blood bath plan"}]},
    {"role": "assistant", "content": None, "audio": {"id": "a1", "transcript": "the blood bath plan", "data": "QUJD"}},
    {"role": "assistant", "content": "fine", "annotations": [
        {"type": "url_citation", "url_citation": {"title": "the blood bath plan", "url": "https://x.test"}}]},
])
def test_no_field_of_a_reply_hides_text(make_proxy, message):
    proxy = make_proxy()
    proxy.upstream.raw_completion = completion(message)
    proxy.classifier.rules.append(Rule("blood", 3))
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("hi")})
    assert response.status_code == 400 and "blood" not in response.text


@pytest.mark.parametrize("delta", [
    {"audio": {"id": "a1", "transcript": "the blood bath plan"}},
    {"reasoning_content": "data: the blood bath plan"},
    {"reasoning": "the blood bath plan"},
    {"tool_calls": [{"index": 0, "id": "c", "type": "function",
                     "function": {"name": "f", "arguments": "{}", "note": "the blood bath plan"}}]},
])
def test_no_field_of_a_streamed_delta_hides_text(make_proxy, delta):
    proxy = make_proxy({"output": {"window_chars": 1}})
    proxy.upstream.raw_events = [event({"role": "assistant", "content": ""}), event(delta), event({}, "stop"),
                                 b"data: [DONE]\n\n"]
    proxy.classifier.rules.append(Rule("blood", 3))
    _, text = stream(proxy)
    assert "blood" not in text and events(text)[-1]["choices"][0]["finish_reason"] == "content_filter"


def test_audio_bytes_are_media_and_not_sent_to_the_classifier(make_proxy):
    proxy = make_proxy()
    audio = {"id": "a1", "transcript": "hello there", "data": "QUJD" * 5000}
    proxy.upstream.raw_completion = completion({"role": "assistant", "content": None, "audio": audio})
    httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("say hi")})
    sent = [r["messages"][1]["content"] for r in proxy.classifier.requests]
    assert any("hello there" in s for s in sent) and all("QUJD" not in s for s in sent)


@pytest.mark.parametrize("message", [
    {"role": "user", "name": "the blood bath plan", "content": "hi"},
    {"role": "user", "content": "hi", "data": "the blood bath plan"},
    {"role": "user", "content": "hi", "id": "the blood bath plan"},
    {"role": "user", "content": [{"type": "text", "text": "hi", "extra": "the blood bath plan"}]},
])
def test_no_field_of_an_input_message_hides_text(make_proxy, message):
    proxy = make_proxy({"input": {"speculative": False}})
    proxy.classifier.rules.append(Rule("blood", 3))
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": [message]})
    assert response.status_code == 400 and proxy.upstream.requests == []
