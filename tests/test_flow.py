"""The request flow: the stages in their documented order, and end hooks that run exactly once."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import user

from guardrail_proxy.flow import CHAT_COMPLETIONS
from guardrail_proxy.standins.safeguard import Rule


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
