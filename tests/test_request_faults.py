"""How a request ends when something goes wrong: every request gets one audit record, the client gets a
fixed text (never a peer's raw payload), a stream always ends, and the audit says what was cancelled."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import user

from guardrail_proxy.audit import AuditRecord
from guardrail_proxy.config import OutputCheck, PolicyRule, RouteConfig
from guardrail_proxy.pipeline import Checker
from guardrail_proxy.policies import parse_policy
from guardrail_proxy.protocol import ChatRequest
from guardrail_proxy.standins.safeguard import Rule
from guardrail_proxy.streaming import ChunkFeed, StreamRelay

LONG = " ".join(["calm words"] * 40) + " then the blood bath began " + " ".join(["more words"] * 40)


@pytest.mark.parametrize(("send", "status"), [
    ({"content": b"{not json"}, 400),
    ({"json": {"model": "no-such-model", "messages": user("hi")}}, 404),
    ({"json": {"model": "test-model", "messages": []}}, 400),
    ({"content": b"x" * 70_000}, 413),
    ({"json": {"model": "test-model", "messages": user("hi")}, "headers": {"authorization": "Bearer wrong"}}, 401),
])
def test_a_request_refused_before_routing_is_audited(make_proxy, send, status):
    proxy = make_proxy(server_cfg={"client_keys_env": "KEYS"}, env={"KEYS": "right"})
    headers = {"authorization": "Bearer right", **send.pop("headers", {})}
    response = httpx.post(f"{proxy.url}/v1/chat/completions", headers=headers, timeout=10, **send)
    assert response.status_code == status
    [record] = proxy.wait_audit()
    assert record["status"] == status and record["error"]
    assert record["request_id"] == response.headers["x-guardrail-request-id"]


def stream_text(proxy) -> str:
    body = {"model": "test-model", "stream": True, "messages": user("hi")}
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, timeout=10) as response:
        return response.read().decode()


def test_a_malformed_upstream_event_reaches_the_client_as_a_fixed_text(make_proxy):
    proxy = make_proxy({"output": {"window_chars": 1}})
    secret = "unchecked words from a broken upstream"
    proxy.upstream.raw_events = [b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
                                 b'"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}\n\n',
                                 f"data: {{{secret}\n\n".encode(), b"data: [DONE]\n\n"]
    text = stream_text(proxy)
    assert secret not in text and '"upstream_error"' in text
    [record] = proxy.wait_audit()
    assert secret in record["error"]


def test_an_error_event_from_the_upstream_is_not_relayed_verbatim(make_proxy):
    proxy = make_proxy({"output": {"window_chars": 1}})
    proxy.upstream.raw_events = [b'data: {"error": {"message": "the blood bath plan"}}\n\n']
    body = {"model": "test-model", "stream": True, "messages": user("hi")}
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=10)
    assert "blood" not in response.text and response.status_code == 502


def test_a_mid_stream_block_records_the_cancelled_upstream(make_proxy):
    proxy = make_proxy({"output": {"window_chars": 20}, "block_style": "completion"})
    proxy.upstream.replies["story"] = LONG
    proxy.upstream.chunk_delay_s = 0.02
    proxy.classifier.rules.append(Rule("blood", 3))
    body = {"model": "test-model", "stream": True, "messages": user("a story")}
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, timeout=20) as response:
        text = response.read().decode()
    assert '"content_filter"' in text
    [record] = proxy.wait_audit()
    assert record["decision"] == "block" and record["upstream_cancelled"] is True


def test_a_client_hang_up_records_the_cancelled_upstream(make_proxy):
    proxy = make_proxy({"output": {"window_chars": 10}})
    proxy.upstream.replies["story"] = LONG
    proxy.upstream.chunk_delay_s = 0.05
    body = {"model": "test-model", "stream": True, "messages": user("a story")}
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, timeout=20) as response:
        for _ in response.iter_bytes():
            break
    [record] = proxy.wait_audit()
    assert record["status"] == 499 and record["upstream_cancelled"] is True


def test_an_input_rewrite_keeps_the_tool_call_id(make_proxy):
    proxy = make_proxy({"policies": [{"id": "violence", "action": "rewrite"}], "input": {
        "scope": "all", "speculative": False}})
    proxy.classifier.rules.append(Rule("blood", 3))
    messages = [{"role": "user", "content": "look it up"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "the blood bath plan"}]
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": messages},
                          timeout=10)
    assert response.status_code == 200
    forwarded = proxy.upstream.requests[0]["messages"][2]
    assert forwarded["tool_call_id"] == "call_1" and "blood" not in forwarded["content"]


# --- a crash inside the relay ends the stream with an error event, never a hang ------------------------

POLICY = parse_policy("---\nid: p\ntitle: P\nformat: binary\n---\n# P\nAnswer 1 or 0.\n", "p.md")


async def broken_source() -> AsyncIterator[object]:
    yield "not a chunk at all"  # the reader cannot window this: a bug-shaped fault


class CrashingClassifier:
    def knows(self, policy: object, content: str) -> bool:
        raise RuntimeError("a bug in the classifier wrapper")

    async def classify(self, policy: object, content: str) -> object:
        raise AssertionError("never reached")

    async def ping(self) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


async def run_relay(source: AsyncIterator[object], classifier: object) -> list[bytes]:
    route = RouteConfig(name="r", models=("m",), upstream="u", policies=(PolicyRule(id="p"),),
                        output=OutputCheck(window_chars=1))
    chat = ChatRequest.model_validate({"model": "m", "stream": True, "messages": [{"role": "user", "content": "q"}]})
    relay = StreamRelay(ChunkFeed(source), Checker({"default": classifier}, {"p": POLICY}),  # type: ignore[dict-item]
                        route, chat, AuditRecord("rid", "r", "m", stream=True), lambda: None)
    return [event async for event in relay.events()]


async def good_source() -> AsyncIterator[object]:
    yield {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
           "choices": [{"index": 0, "delta": {"content": "hi"}}]}


@pytest.mark.parametrize(("source", "classifier"), [(broken_source, CrashingClassifier()),
                                                    (good_source, CrashingClassifier())])
async def test_a_crash_in_the_relay_ends_the_stream_with_an_error_event(source, classifier):
    started = time.monotonic()
    events = await asyncio.wait_for(run_relay(source(), classifier), timeout=5)
    assert time.monotonic() - started < 5
    last = json.loads(events[-1][6:])
    assert last["error"]["code"] == "internal_error" and "bug" not in last["error"]["message"]


def test_a_client_gone_before_the_first_byte_is_audited_and_the_model_stopped(make_proxy):
    """The client leaves during a slow input check: the stream's body never starts, yet the model is stopped
    and the request audited once."""
    proxy = make_proxy({"output": {"window_chars": 10}})
    proxy.upstream.replies["story"] = LONG
    proxy.upstream.chunk_delay_s = 0.05
    proxy.classifier.delay_s = 0.8
    body = {"model": "test-model", "stream": True, "messages": user("a story")}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=0.3)
    deadline = time.monotonic() + 5
    while not proxy.audit() and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = proxy.audit()
    assert record["status"] == 499 and record["upstream_cancelled"] is True
    time.sleep(0.3)
    assert proxy.upstream.completed == 0
