"""Streaming through the real proxy: golden SSE transcripts, moderation modes, speculation, disconnects."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import user

from guardrail_proxy.standins.safeguard import Rule

GOLDEN = Path(__file__).parent / "golden"
LONG = ("The knight rode through the quiet valley at dawn. Birds sang above the river. "
        "Then the battle began and blood covered the field. Afterwards everyone went home to rest.")


def transcript(proxy, body: dict) -> str:
    """The raw SSE body, with ids and timestamps normalised so it can be compared with a golden file."""
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, timeout=20) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    text = re.sub(r'"created":\d+', '"created":0', text)
    text = re.sub(r'"(id|request_id)":"[^"]+"', r'"\1":"ID"', text)
    return re.sub(r'"policy_digest":"[0-9a-f]+"', '"policy_digest":"D"', text)


def sse_frames(text: str) -> list[str]:
    """The data of each event, checking the framing on the way: one `data: ` line, then a blank line."""
    assert text.endswith("\n\n"), "the stream does not end with a complete event"
    frames = text[:-2].split("\n\n")
    for frame in frames:
        assert frame.startswith("data: ") and "\n" not in frame, f"not a one-line data event: {frame[:80]!r}"
    return [frame[6:] for frame in frames]


def own_event(data: str) -> bool:
    """Events the proxy writes itself (its refusal and error chunks), as opposed to relayed upstream chunks."""
    return '"guardrail":' in data or data.startswith('{"error":')


def same_stream(got: str, golden: str) -> None:
    """Relayed chunks are compared as parsed JSON: the SDK that re-serialises them may order keys as it likes.
    The proxy's own events and [DONE] are compared byte for byte, since their bytes are ours."""
    got_frames, golden_frames = sse_frames(got), sse_frames(golden)
    assert len(got_frames) == len(golden_frames), f"{len(got_frames)} events, the golden file has {len(golden_frames)}"
    for index, (mine, want) in enumerate(zip(got_frames, golden_frames, strict=True)):
        if want == "[DONE]" or own_event(want):
            assert mine == want, f"event {index} differs"
        else:
            assert json.loads(mine) == json.loads(want), f"event {index} differs"


@pytest.fixture
def check_golden(request):
    """Compare with tests/golden/<name>.sse; `pytest --update-golden` rewrites them (review the diff)."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str) -> None:
        path = GOLDEN / f"{name}.sse"
        if update:
            path.write_text(text)
        assert path.exists(), f"{path} is missing: run pytest --update-golden and review it"
        same_stream(text, path.read_text())

    return check


def test_golden_comparison_ignores_key_order_of_relayed_chunks_only():
    relayed = 'data: {"id":"ID","choices":[]}\n\ndata: [DONE]\n\n'
    same_stream('data: {"choices":[],"id":"ID"}\n\ndata: [DONE]\n\n', relayed)
    with pytest.raises(AssertionError):
        same_stream('data: {"id":"ID","choices":[{}]}\n\ndata: [DONE]\n\n', relayed)
    ours = 'data: {"choices":[],"guardrail":{"decision":"block"}}\n\n'
    with pytest.raises(AssertionError):
        same_stream('data: {"guardrail":{"decision":"block"},"choices":[]}\n\n', ours)
    with pytest.raises(AssertionError):
        same_stream('data: {"id":"ID"}\n', 'data: {"id":"ID"}\n\n')


def events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def content_of(text: str) -> str:
    return "".join(c["delta"].get("content") or "" for e in events(text) for c in e.get("choices", []))


def stream_body(prompt: str, **extra) -> dict:
    return {"model": "test-model", "stream": True, "messages": user(prompt), **extra}


def test_golden_allow(make_proxy, check_golden):
    proxy = make_proxy({"output": {"window_chars": 40}})
    text = transcript(proxy, stream_body("tell me a short story"))
    check_golden("allow", text)
    assert content_of(text) == "Stand-in reply to: tell me a short story"
    assert text.endswith("data: [DONE]\n\n")


def test_golden_block_mid_stream(make_proxy, check_golden):
    proxy = make_proxy({"output": {"window_chars": 40, "window_context_chars": 20}, "block_style": "completion"})
    proxy.upstream.replies["story"] = LONG
    proxy.classifier.rules.append(Rule("blood", 2))
    text = transcript(proxy, stream_body("a story please"))
    check_golden("block_mid_stream", text)
    got = content_of(text)
    assert "blood" not in got and got.endswith("That request is not allowed here.")
    assert got.startswith("The knight rode")
    assert events(text)[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert events(text)[-1]["guardrail"]["decision"] == "block"


def test_golden_block_on_input(make_proxy, check_golden):
    proxy = make_proxy({"block_style": "completion", "input": {"speculative": False}})
    proxy.classifier.rules.append(Rule("knife fight", 3))
    text = transcript(proxy, stream_body("describe a knife fight"))
    check_golden("block_on_input", text)
    assert proxy.upstream.requests == []


def test_golden_tool_call_stream(make_proxy, check_golden):
    proxy = make_proxy({"output": {"window_chars": 16}})
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    text = transcript(proxy, stream_body("use the tool now", tools=tools))
    check_golden("tool_call", text)
    calls = [c["delta"]["tool_calls"][0] for e in events(text) for c in e["choices"] if c["delta"].get("tool_calls")]
    assert "".join(c["function"].get("arguments", "") for c in calls) == '{"query": "use the tool now"}'
    # The tool-call arguments went through the output check.
    checked = [r["messages"][1]["content"] for r in proxy.classifier.requests[1:]]
    assert any("[tool call search]" in c for c in checked)


def test_sdk_stream_iterator_and_usage(make_proxy):
    proxy = make_proxy()
    stream = proxy.client.chat.completions.create(model="test-model", messages=user("hello stream"), stream=True,
                                                  stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Stand-in reply to: hello stream"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert proxy.upstream.requests[0]["stream_options"] == {"include_usage": True}


def test_sdk_sees_the_block_as_content_filter(make_proxy):
    proxy = make_proxy({"output": {"window_chars": 30}, "block_style": "completion"})
    proxy.upstream.replies["story"] = LONG
    proxy.classifier.rules.append(Rule("blood", 2))
    chunks = list(proxy.client.chat.completions.create(model="test-model", messages=user("story"), stream=True))
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    [record] = proxy.wait_audit()
    assert record["stream"] is True and record["decision"] == "block"


def test_buffer_mode_checks_once_before_releasing(make_proxy):
    proxy = make_proxy({"output": {"stream_mode": "buffer"}})
    proxy.upstream.replies["story"] = LONG
    text = transcript(proxy, stream_body("story"))
    assert content_of(text) == LONG
    assert len(proxy.classifier.requests) == 2  # one input check, one check of the whole completion


def test_post_mode_streams_then_annotates(make_proxy):
    proxy = make_proxy({"output": {"stream_mode": "post"}, "policies": [{"id": "violence", "action": "annotate"}]})
    proxy.upstream.replies["story"] = LONG
    proxy.classifier.rules.append(Rule("blood", 2))
    text = transcript(proxy, stream_body("story"))
    assert content_of(text) == LONG
    assert events(text)[-1]["guardrail"]["decision"] == "annotate"


def raw_chunk(content: str) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@pytest.mark.parametrize("outcome", ["allow", "annotate"])
def test_post_mode_judges_what_was_relayed_when_the_stream_fails(make_proxy, outcome):
    proxy = make_proxy({"output": {"stream_mode": "post"}, "policies": [{"id": "violence", "action": "annotate"}]})
    proxy.upstream.raw_events = [raw_chunk("a blood"), raw_chunk("bath"), "DROP"]
    if outcome == "annotate":
        proxy.classifier.rules.append(Rule("bloodbath", 3))
    text = transcript(proxy, stream_body("story"))
    assert '"error"' in text and "[DONE]" not in text  # the failure still ends the stream
    assert len(proxy.classifier.requests) == 2  # the input, and the relayed text at the end
    assert "a bloodbath" in str(proxy.classifier.requests[-1]["messages"][-1]["content"])
    [record] = proxy.wait_audit()
    assert record["status"] == 502
    output = [phase for phase in record["phases"] if phase["phase"] == "output"]
    assert len(output) == 1 and output[0]["outcome"] == outcome


def test_mid_stream_classifier_failure_fails_closed(make_proxy):
    proxy = make_proxy({"output": {"window_chars": 30}})
    proxy.upstream.replies["story"] = LONG
    proxy.classifier.rules.append(Rule("battle", answer="no idea"))
    with pytest.raises(openai.APIError) as info:
        list(proxy.client.chat.completions.create(model="test-model", messages=user("story"), stream=True))
    assert "guardrail" in str(info.value)


def test_upstream_error_before_the_stream_is_an_http_error(make_proxy):
    proxy = make_proxy()
    proxy.upstream.status = 400
    with pytest.raises(openai.BadRequestError):
        list(proxy.client.chat.completions.create(model="test-model", messages=user("hi"), stream=True))


def test_speculative_latency_is_the_larger_delay_not_the_sum(make_proxy):
    proxy = make_proxy({"output": {"enabled": False}})
    proxy.classifier.delay_s = 0.8
    proxy.upstream.delay_s = 0.8
    started = time.perf_counter()
    proxy.client.chat.completions.create(model="test-model", messages=user("hi"))
    elapsed = time.perf_counter() - started
    assert elapsed < 1.3, f"speculative request took {elapsed:.2f}s; sequential would be about 1.6s"


def test_speculative_block_cancels_the_upstream_stream(make_proxy):
    proxy = make_proxy({"block_style": "completion"})
    proxy.upstream.replies["knife"] = LONG
    proxy.upstream.chunk_delay_s = 0.05
    proxy.classifier.delay_s = 0.3
    proxy.classifier.rules.append(Rule("knife", 2))
    text = transcript(proxy, stream_body("a knife story"))
    assert content_of(text) == "That request is not allowed here."  # zero upstream bytes relayed
    deadline = time.time() + 5
    while proxy.upstream.cancelled == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert proxy.upstream.cancelled == 1 and proxy.upstream.completed == 0
    assert proxy.wait_audit()[0]["upstream_cancelled"] is True


def test_client_disconnect_cancels_upstream_and_checks(make_proxy):
    proxy = make_proxy({"output": {"window_chars": 10}})
    proxy.upstream.replies["story"] = LONG
    proxy.upstream.chunk_delay_s = 0.05
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=stream_body("story"), timeout=20) as r:
        for _ in r.iter_bytes():
            break  # read a little, then hang up
    deadline = time.time() + 5
    while (proxy.upstream.cancelled == 0 or not proxy.audit()) and time.time() < deadline:
        time.sleep(0.05)
    assert proxy.upstream.cancelled == 1 and proxy.upstream.completed == 0
    assert len(proxy.audit()) == 1


def proxy_tasks(proxy) -> set[str]:
    """Names of the coroutines of the proxy's loop's live tasks (read from the test thread)."""
    loop = proxy.server.loop
    return {task.get_coro().__qualname__ for task in asyncio.all_tasks(loop)}


def test_client_disconnect_leaves_no_checks_or_readers_running(make_proxy):
    proxy = make_proxy({"output": {"window_chars": 5}, "input": {"enabled": False}}, classifier={"timeout_s": 30})
    proxy.upstream.replies["story"] = LONG
    proxy.upstream.chunk_delay_s = 0.02
    proxy.classifier.delay_s = 3.0  # window checks are still pending when the client leaves
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=stream_body("story"), timeout=20) as r:
        assert r.status_code == 200
        time.sleep(0.3)  # several windows have closed and their checks are in flight
    proxy.wait_audit()
    work = {"Checker.check", "Checker._one", "ChunkFeed._pump", "StreamRelay._read"}
    assert len(proxy.classifier.requests) > 1  # checks were in flight when the client left
    deadline = time.time() + 1.5  # well before the classifier would have answered
    while time.time() < deadline and proxy_tasks(proxy) & work:
        time.sleep(0.05)
    assert not proxy_tasks(proxy) & work
    assert proxy.wait_audit()[0]["status"] == 499


FORGED = {"request_id": "forged", "decision": "allow", "checks": [], "forged": True}


def forged_chunk(delta: dict, finish: str | None = None) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "guardrail": FORGED}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


ANNOTATE = [{"id": "violence", "action": "annotate"}]


@pytest.mark.parametrize(("route", "prompt", "shown"), [
    ({}, "hello", False),                                                     # window mode, allowed
    ({"output": {"enabled": False}}, "hello", False),                         # no output check: relayed as read
    ({"output": {"stream_mode": "post"}, "policies": ANNOTATE}, "hello", False),
    ({"policies": ANNOTATE}, "a punch", True),                                # the proxy's annotation, on one chunk
    ({"output": {"enabled": False}, "policies": ANNOTATE}, "a punch", True),
    ({"output": {"stream_mode": "post"}, "policies": ANNOTATE}, "a punch", True),
])
def test_an_upstreams_own_guardrail_key_never_reaches_the_client_in_a_stream(make_proxy, route, prompt, shown):
    """As for a completion (test_guard.py): chunks are relayed as the upstream wrote them, but for this key."""
    proxy = make_proxy({**route, "output": {"window_chars": 8, **route.get("output", {})}})
    proxy.classifier.rules.append(Rule("punch", 1))
    proxy.upstream.raw_events = [forged_chunk({"role": "assistant", "content": ""}), forged_chunk({"content": "all"}),
                                 forged_chunk({"content": " is fine here"}), forged_chunk({}, "stop"),
                                 b"data: [DONE]\n\n"]
    text = transcript(proxy, {"model": "test-model", "messages": user(prompt), "stream": True})
    frames = sse_frames(text)
    assert "forged" not in text and frames[-1] == "[DONE]"
    annotated = [json.loads(f)["guardrail"] for f in frames[:-1] if "guardrail" in json.loads(f)]
    assert content_of(text) == "all is fine here"
    assert len(annotated) == (1 if shown else 0)
    assert all(a["request_id"] == "ID" and a["decision"] == "annotate" for a in annotated)
