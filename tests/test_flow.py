"""The request flow: the stages in their documented order, end hooks that run exactly once, and what of a stream
waits for its audit record."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import user
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from guardrail_proxy.flow import CHAT_COMPLETIONS, last_event_at
from guardrail_proxy.standins.safeguard import Rule
from guardrail_proxy.standins.server import ServerThread


def test_the_chat_stages_in_order():
    # README's "How a request flows" lists these; change both together.
    assert [stage.__name__ for stage in CHAT_COMPLETIONS] == [
        "audit_room", "authenticate", "read_body", "parse", "pick_route", "admit", "exchange"]


@pytest.mark.parametrize(("route", "prompt", "stream"), [
    ({}, "hello", False),
    ({}, "hello", True),
    ({"block_style": "completion", "input": {"speculative": False}}, "blood", True),
    ({"input": {"speculative": False}}, "blood", False),
    ({"allow_unchecked_media": False}, None, False),
])
def test_one_audit_record_and_one_count_per_request(make_proxy, route, prompt, stream):
    proxy = make_proxy(route)
    proxy.classifier.rules.append(Rule("blood", 3))
    messages = user(prompt) if prompt else [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://i.test/x.png"}}]}]
    body = {"model": "test-model", "messages": messages, "stream": stream}
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, timeout=10) as response:
        response.read()
    time.sleep(0.2)  # a stream's record is written as its generator closes
    assert len(proxy.audit()) == 1
    counted = [line for line in httpx.get(f"{proxy.url}/metrics").text.splitlines()
               if line.startswith("guardrail_requests_total{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) == 1


@pytest.mark.parametrize(("write", "expected"), [
    (b"data: [DONE]\n\n", 0),
    (b"data: {}\n\n", 0),
    (b"data: {\"a\":1}\n\ndata: [DONE]\n\n", 15),
    (b"data: 1\n\ndata: 2\n\ndata: 3\n\n", 18),
    (b"", 0),
])
def test_last_event_at(write, expected):
    assert last_event_at(write) == expected
    assert write[expected:].count(b"\n\n") == (1 if write else 0)


def chunk(delta: dict, finish: str | None = None) -> bytes:
    data = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def gated_upstream(gate: threading.Event, opened: list[bool], first: list[dict]) -> Starlette:
    """Streams the chunks `first`, then waits until the test opens `gate` (at most 10 s; `opened` says whether
    it was opened), then the rest of the reply."""
    async def events() -> AsyncIterator[bytes]:
        for delta in first:
            yield chunk(delta)
        opened.append(await asyncio.to_thread(gate.wait, 10))
        yield chunk({"content": " friend"})
        yield chunk({}, "stop")
        yield b"data: [DONE]\n\n"

    async def chat(request: Request) -> Response:
        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def stream_until_gate(proxy, gate: threading.Event, opens_gate) -> list[str]:
    """The client's view: each event's data; it opens the gate once `opens_gate(data)` holds."""
    seen = []
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", timeout=20,
                      json={"model": "test-model", "messages": user("hi"), "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append(line[6:])
                if opens_gate(seen[-1]):
                    gate.set()
    return seen


def text_of(seen: list[str]) -> str:
    return "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in seen if d.startswith("{"))


@pytest.mark.parametrize("route", [{"output": {"window_chars": 8}}, {"output": {"enabled": False}}])
def test_without_sync_durability_nothing_of_a_stream_is_held_back(make_proxy, tmp_path, route):
    """Only under sync durability does a stream's last event wait (for its record's commit). Otherwise the text
    the proxy released reaches the client at once: here the upstream waits for the client to have seen it."""
    gate, opened = threading.Event(), []
    with ServerThread(gated_upstream(gate, opened, [{"role": "assistant", "content": "Hello there"}])) as gated:
        proxy = make_proxy(route, upstream_cfg={"provider": "openai", "model": "m", "api_base": f"{gated.url}/v1"},
                           audit={"store": "jsonl", "path": str(tmp_path / "audit.jsonl"), "durability": "batch"})
        seen = stream_until_gate(proxy, gate, lambda data: "Hello" in data)
    assert opened == [True], "the client saw no text before the upstream went on"
    assert text_of(seen) == "Hello there friend"


def test_under_sync_durability_a_window_waits_only_for_its_last_event(make_proxy):
    """A window leaves in one write; under sync the response holds back the last event of each write until the
    next one comes (the stream's very last until the commit), never the whole window."""
    gate, opened = threading.Event(), []
    first = [{"role": "assistant", "content": ""}, {"content": "Hello there"}]  # one window of two events
    with ServerThread(gated_upstream(gate, opened, first)) as gated:
        proxy = make_proxy({"output": {"window_chars": 8}},
                           upstream_cfg={"provider": "openai", "model": "m", "api_base": f"{gated.url}/v1"})
        seen = stream_until_gate(proxy, gate, lambda data: True)
        [record] = proxy.wait_audit()
    assert opened == [True], "the window's first event did not leave before its last"
    assert text_of(seen) == "Hello there friend" and seen[-1] == "[DONE]" and record["status"] == 200
