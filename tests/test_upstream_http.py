"""The raw OpenAI-compatible upstream client (upstream_http.py): its pure error and shape rules, then the client
against real HTTP servers on 127.0.0.1 (the stand-in upstream, and a small recorder for headers)."""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from conftest import free_port, user, write_config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from guardrail_proxy.config import UpstreamConfig
from guardrail_proxy.errors import ConfigError, UpstreamError
from guardrail_proxy.standins.server import ServerThread
from guardrail_proxy.upstream_http import (
    CREDENTIALS_REJECTED,
    MAX_REPLY_BYTES,
    OpenAIUpstream,
    chat_completion,
    error_name,
    http_error,
    rejection,
    transport_error,
)

CHOICE = {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}


@pytest.mark.parametrize(("status", "body", "expected"), [
    (400, b'{"error": {"message": "bad temperature", "type": "invalid_request_error", "code": "bad_param"}}',
     (400, "upstream model: bad temperature", "invalid_request_error", "bad_param")),
    (404, b'{"error": {"message": "no such model", "type": "not_found_error", "code": null}}',
     (404, "upstream model: no such model", "not_found_error", "upstream_rejected")),
    (400, b'{"object": "error", "message": "too long", "type": "BadRequestError", "code": 400}',  # vLLM's shape
     (400, "upstream model: too long", "BadRequestError", "400")),
    (422, b"plain text complaint", (422, "upstream model: plain text complaint", "invalid_request_error",
                                    "upstream_rejected")),
    (429, b'{"error": "slow down"}', (429, "upstream model: slow down", "invalid_request_error", "upstream_rejected")),
    (400, b"", (400, "upstream model: HTTP 400", "invalid_request_error", "upstream_rejected")),
    (500, b'{"error": {"message": "boom"}}', (502, "the upstream model failed", "upstream_error", "upstream_error")),
    (503, b"<html>down</html>", (502, "the upstream model failed", "upstream_error", "upstream_error")),
])
def test_http_error(status, body, expected):
    error = http_error(status, body)
    assert (error.status_code, error.message, error.error_type, error.code) == expected


OPENAI_401 = (b'{"error": {"message": "Incorrect API key provided: sk-proj-****abcd. You can find your API key at '
              b'https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": null, '
              b'"code": "invalid_api_key"}}')


@pytest.mark.parametrize(("status", "body"), [
    (401, OPENAI_401),
    (403, b'{"error": {"message": "Project does not have access to model", "code": "model_not_found"}}'),
    (407, b"<html>Proxy Authentication Required</html>"),  # from an outbound HTTP proxy, not the model
])
def test_the_upstreams_verdict_on_the_proxys_credentials_is_a_502(status, body):
    """The client's own key is not in question: never its status, never the proxy's code invalid_api_key."""
    error = http_error(status, body)
    assert (error.status_code, error.message, error.error_type, error.code) == (
        502, CREDENTIALS_REJECTED, "upstream_error", "upstream_auth_failed")
    assert "sk-proj" not in json.dumps(error.to_body())
    assert error.detail is not None and error.detail.startswith(f"HTTP {status}: ")  # the log and audit keep it
    assert body.decode().split('"message": "')[-1][:20] in error.detail


LONG = "x" * 100_000


@pytest.mark.parametrize(("body", "expected"), [
    # A type or code the client sees must look like one: short, [A-Za-z0-9_.-]; else the defaults.
    (json.dumps({"error": {"message": "m", "type": LONG, "code": "ok_code"}}),
     ("invalid_request_error", "ok_code")),
    (json.dumps({"error": {"message": "m", "type": "a.b-c_1", "code": str({"nested": "dict"})}}),
     ("a.b-c_1", "upstream_rejected")),
    (json.dumps({"error": {"message": "m", "type": ["list"], "code": {"a": 1}}}),
     ("invalid_request_error", "upstream_rejected")),
    (json.dumps({"error": {"message": "m", "type": "has space", "code": True}}),
     ("invalid_request_error", "upstream_rejected")),
])
def test_an_upstreams_error_type_and_code_must_be_identifiers(body, expected):
    error = http_error(400, body.encode())
    assert (error.status_code, error.message, error.error_type, error.code) == (400, "upstream model: m", *expected)


@pytest.mark.parametrize("body", [
    json.dumps({"error": {"message": LONG}}),
    json.dumps({"error": LONG}),                       # a bare string error was passed on whole
    json.dumps({"object": "error", "message": LONG}),  # vLLM's shape
    LONG,
])
def test_an_upstreams_error_message_is_cut(body):
    error = http_error(400, body.encode())
    assert error.message == "upstream model: " + "x" * 300


@pytest.mark.parametrize(("value", "expected"), [
    ("invalid_request_error", "invalid_request_error"), ("model.not-found_2", "model.not-found_2"), (400, "400"),
    ("", "d"), (None, "d"), (True, "d"), (1.5, "d"), ("x" * 65, "d"), ("a/b", "d"), ("é", "d"), ("a\n", "d"),
    (10**70, "d"),
])
def test_error_name(value, expected):
    assert error_name(value, "d") == expected


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_upstream_failure(status):
    error = http_error(status, b"")
    assert (error.status_code, error.code) == (502, "upstream_error")
    assert error.detail == f"HTTP {status} (a redirect, which the proxy does not follow): HTTP {status}"


def test_rejection_is_the_rule_for_both_transports():
    assert rejection(400, "m" * 400, "t", "c").message == "upstream model: " + "m" * 300
    assert rejection(401, "key sk-****x").to_body()["error"]["message"] == CREDENTIALS_REJECTED


@pytest.mark.parametrize(("exc", "elapsed", "started", "expected"), [
    (TimeoutError(), 20.0, False, (504, "upstream_timeout")),
    (TimeoutError(), 25.0, True, (504, "upstream_timeout")),    # a stream that stalled for the whole budget
    (TimeoutError(), 0.01, False, (502, "upstream_unavailable")),  # "timed out" at once: nothing answered
    (aiohttp.ClientConnectionError("refused"), 0.01, False, (502, "upstream_unavailable")),
    (aiohttp.ServerDisconnectedError(), 0.5, True, (502, "upstream_error")),  # the reply had begun
    (aiohttp.ClientPayloadError("cut"), 0.5, False, (502, "upstream_error")),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), 0.5, True, (502, "upstream_error")),
])
def test_transport_error(exc, elapsed, started, expected):
    error = transport_error(exc, elapsed, 20.0, started=started)
    assert (error.status_code, error.code) == expected


@pytest.mark.parametrize("data", [
    {"choices": []},
    {"id": "x", "choices": [CHOICE], "usage": {"prompt_tokens": 1}},
    {"choices": [{"message": None}, {"index": 1}]},
    {"choices": [{**CHOICE, "message": {"role": "model", "content": {"odd": 1}}}]},  # odd inside: the check's job
])
def test_a_chat_completion_shape_is_accepted(data):
    assert chat_completion(data) is data


@pytest.mark.parametrize("data", [
    [], "text", None, {}, {"choices": None}, {"choices": {"0": CHOICE}}, {"choices": ["x"]},
    {"choices": [{**CHOICE, "index": "0"}]}, {"choices": [{**CHOICE, "index": True}]},
    {"choices": [{**CHOICE, "message": "hi"}]}, {"error": {"message": "quota"}},
    # Falsy values that are not objects, and a negative index (-1 is the proxy's mark for text outside choices).
    {"choices": [{**CHOICE, "message": ""}]}, {"choices": [{**CHOICE, "message": 0}]},
    {"choices": [{**CHOICE, "message": []}]}, {"choices": [{**CHOICE, "message": False}]},
    {"choices": [{**CHOICE, "index": -1}]}, {"choices": [CHOICE, {**CHOICE, "index": -2}]},
])
def test_anything_else_is_an_upstream_error(data):
    with pytest.raises(UpstreamError) as info:
        chat_completion(data)
    assert info.value.status_code == 502
    assert info.value.message == "the upstream answered something that is not a chat completion"


def cfg(url: str, **extra: Any) -> UpstreamConfig:
    return UpstreamConfig.model_validate({"provider": "openai", "model": "stand-in-chat", "api_base": f"{url}/v1",
                                          **extra})


async def test_the_body_is_forwarded_exactly_with_the_route_model(upstream):
    behaviour, server = upstream
    client = OpenAIUpstream(cfg(server.url), None)
    body = {"model": "client-name", "messages": user("hi"), "temperature": 0.25, "seed": 2**64 - 1,
            "vendor_field": {"nested": ["é", None, 1.5]}, "logit_bias": {"50256": -100}}
    try:
        reply = await client.complete(body)
    finally:
        await client.aclose()
    assert behaviour.requests == [{**body, "model": "stand-in-chat", "stream": False}]
    assert reply["choices"][0]["message"]["content"] == "Stand-in reply to: hi"
    assert isinstance(reply, dict) and reply["object"] == "chat.completion"


async def test_the_reply_is_the_upstreams_json_as_sent(upstream):
    behaviour, server = upstream
    behaviour.raw_completion = {"id": "c", "choices": [{**CHOICE, "provider_extra": {"x": None}}], "extra_top": 1}
    client = OpenAIUpstream(cfg(server.url), None)
    try:
        assert await client.complete({"model": "m", "messages": user("hi")}) == behaviour.raw_completion
    finally:
        await client.aclose()


@pytest.mark.parametrize(("key", "header"), [("sk-test-123", "Bearer sk-test-123"), (None, "Bearer unused")])
async def test_the_api_key_header(key, header):
    seen: list[dict[str, str]] = []

    async def chat(request: Request) -> Response:
        seen.append(dict(request.headers))
        return JSONResponse({"id": "c", "object": "chat.completion", "choices": [CHOICE]})

    async def models(request: Request) -> Response:
        seen.append(dict(request.headers))
        return JSONResponse({"object": "list", "data": []})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)])
    with ServerThread(app) as server:
        client = OpenAIUpstream(cfg(server.url), key)
        try:
            await client.complete({"model": "m", "messages": user("hi")})
            assert await client.ping() is None
        finally:
            await client.aclose()
    assert [h["authorization"] for h in seen] == [header, header]
    assert seen[0]["content-type"] == "application/json"


NOT_A_COMPLETION = "the upstream answered something that is not a chat completion"
NOT_JSON = "the upstream answered something that is not JSON"


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"choices": "none"}', NOT_A_COMPLETION),
    (b'{"choices": [], "x": NaN}', NOT_JSON),   # the stdlib (the SDK) read NaN; the relayed body could not hold it
    (b"<html>hello</html>", NOT_JSON),
])
async def test_a_reply_that_is_not_a_chat_completion(raw, message):
    async def chat(request: Request) -> Response:
        return Response(raw, media_type="application/json")

    with ServerThread(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])) as server:
        client = OpenAIUpstream(cfg(server.url), None)
        try:
            with pytest.raises(UpstreamError) as info:
                await client.complete({"model": "m", "messages": user("hi")})
        finally:
            await client.aclose()
    assert (info.value.status_code, info.value.code, info.value.message) == (502, "upstream_error", message)


async def test_an_upstream_4xx_is_passed_on(upstream):
    behaviour, server = upstream
    behaviour.status = 400
    client = OpenAIUpstream(cfg(server.url), None)
    try:
        for call in (client.complete({"model": "m", "messages": user("hi")}),
                     anext(client.stream({"model": "m", "messages": user("hi")}))):
            with pytest.raises(UpstreamError) as info:
                await call
            assert (info.value.status_code, info.value.code, info.value.error_type) == (
                400, "standin_error", "invalid_request_error")
    finally:
        await client.aclose()


async def test_a_stream_is_read_into_chunks_with_the_stream_flag(upstream):
    behaviour, server = upstream
    client = OpenAIUpstream(cfg(server.url), None)
    try:
        chunks = [c async for c in client.stream({"model": "m", "messages": user("one two three"), "stream": True,
                                                  "stream_options": {"include_usage": True}})]
    finally:
        await client.aclose()
    assert behaviour.requests[0]["stream"] is True and behaviour.requests[0]["model"] == "stand-in-chat"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Stand-in reply to: one two three"
    assert chunks[-1]["usage"] is not None and behaviour.completed == 1


async def test_closing_a_stream_early_closes_the_upstream_response(upstream):
    behaviour, server = upstream
    behaviour.chunk_delay_s = 0.05
    client = OpenAIUpstream(cfg(server.url), None)
    try:
        stream = client.stream({"model": "m", "messages": user("a b c d e f g h i j k l")})
        await anext(stream)
        await stream.aclose()
        for _ in range(100):  # the stand-in notices the closed connection on its next write
            if behaviour.cancelled:
                break
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    assert behaviour.cancelled == 1 and behaviour.completed == 0


async def test_a_refused_connection_is_unavailable_not_slow():
    client = OpenAIUpstream(cfg(f"http://127.0.0.1:{free_port()}", timeout_s=5), None)
    try:
        with pytest.raises(UpstreamError) as info:
            await client.complete({"model": "m", "messages": user("hi")})
        with pytest.raises(UpstreamError) as streamed:
            await anext(client.stream({"model": "m", "messages": user("hi")}))
        assert (await client.ping() or "").startswith("cannot reach")
    finally:
        await client.aclose()
    assert (info.value.status_code, info.value.code) == (502, "upstream_unavailable")
    assert (streamed.value.status_code, streamed.value.code) == (502, "upstream_unavailable")


def unclosed_sessions(build: Callable[[], object]) -> tuple[str, list[str]]:
    """Build a client that must fail with ConfigError: (the variable it names, the ResourceWarnings of sessions
    left open, as aiohttp reports them when one is collected without being closed)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            build()
        except ConfigError as exc:
            field = exc.field
        else:
            raise AssertionError("no ConfigError")
        gc.collect()
    return field, [str(w.message) for w in caught if str(w.message).startswith("Unclosed client session")]


PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                   "ALL_PROXY", "REQUEST_METHOD")


async def test_a_bad_proxy_variable_fails_before_a_session_is_opened(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "socks5://proxy.test:1080")
    field, unclosed = unclosed_sessions(lambda: OpenAIUpstream(cfg("http://model.test"), None))
    assert field == "HTTP_PROXY" and unclosed == []


def redirecting_app(followed: list[str]) -> Starlette:
    """Every endpoint redirects; the target answers a valid completion (and a model list) to any method."""
    async def moved(request: Request) -> Response:
        followed.append(request.method)
        return JSONResponse({"id": "c", "object": "chat.completion", "choices": [CHOICE], "data": []})

    async def redirect(request: Request) -> Response:
        return RedirectResponse("/v1/moved", status_code=302 if request.method == "POST" else 301)

    return Starlette(routes=[Route("/v1/chat/completions", redirect, methods=["POST"]),
                             Route("/v1/models", redirect), Route("/v1/moved", moved, methods=["GET", "POST"])])


async def test_a_redirect_is_never_followed():
    """aiohttp follows a 302 on a POST with a GET, and took the GET's answer for the completion."""
    followed: list[str] = []
    with ServerThread(redirecting_app(followed)) as server:
        client = OpenAIUpstream(cfg(server.url), None)
        try:
            for call in (client.complete({"model": "m", "messages": user("hi")}),
                         anext(client.stream({"model": "m", "messages": user("hi")}))):
                with pytest.raises(UpstreamError) as info:
                    await call
                assert (info.value.status_code, info.value.code) == (502, "upstream_error")
                assert "redirect" in (info.value.detail or "")
            assert "redirect" in (await client.ping() or "")
        finally:
            await client.aclose()
    assert followed == []


def gzipped(status: int, payload: bytes) -> Starlette:
    body = gzip.compress(payload, compresslevel=1)

    async def chat(request: Request) -> Response:
        return Response(body, status, headers={"content-encoding": "gzip", "content-type": "application/json"})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


async def test_a_reply_larger_than_the_cap_is_a_502_even_when_it_compresses_well():
    payload = b'{"choices": [], "pad": "' + b"a" * MAX_REPLY_BYTES + b'"}'  # ~32 KiB on the wire, gzipped
    with ServerThread(gzipped(200, payload)) as server:
        client = OpenAIUpstream(cfg(server.url), None)
        try:
            with pytest.raises(UpstreamError) as info:
                await client.complete({"model": "m", "messages": user("hi")})
        finally:
            await client.aclose()
    assert (info.value.status_code, info.value.code) == (502, "upstream_error")
    assert info.value.message == "the upstream's reply is larger than the proxy reads (32 MiB)"


async def test_an_error_body_is_read_only_to_its_cap():
    payload = json.dumps({"error": {"message": "m" * 10_000_000, "code": "x"}}).encode()
    with ServerThread(gzipped(400, payload)) as server:
        client = OpenAIUpstream(cfg(server.url), None)
        try:
            for call in (client.complete({"model": "m", "messages": user("hi")}),
                         anext(client.stream({"model": "m", "messages": user("hi")}))):
                with pytest.raises(UpstreamError) as info:
                    await call
                # Its first 64 KiB are not the whole JSON: read as text, the client's 400 still says it.
                assert info.value.status_code == 400
                start = '{"error": {"message": "'
                assert info.value.message == "upstream model: " + start + "m" * (300 - len(start))
        finally:
            await client.aclose()


async def test_a_call_waiting_for_a_free_connection_is_busy_and_never_sent(upstream):
    """Past the pool's size a call waits for a slot for half its timeout, then is a 503 upstream_busy; it used
    to wait inside aiohttp, on its own timeout's clock, and end as a 504 "did not answer in time"."""
    behaviour, server = upstream
    behaviour.delay_s = 3.0  # holds the one connection for longer than the second call will wait (2 s)
    client = OpenAIUpstream(cfg(server.url, timeout_s=4), None, max_connections=1)
    try:
        first = asyncio.create_task(client.complete({"model": "m", "messages": user("first")}))
        await asyncio.sleep(0)  # the first call takes the slot
        with pytest.raises(UpstreamError) as info:
            await client.complete({"model": "m", "messages": user("second")})
        assert (await first)["choices"][0]["message"]["content"] == "Stand-in reply to: first"
        assert await client.complete({"model": "m", "messages": user("third")})  # the slot was given back
    finally:
        await client.aclose()
    assert (info.value.status_code, info.value.code) == (503, "upstream_busy")
    assert [r["messages"][0]["content"] for r in behaviour.requests] == ["first", "third"]


class CutServer:
    """A raw HTTP server on 127.0.0.1 that sends a 200's head and the start of its body, then hangs up."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
                     b'{"choices": [')
        await writer.drain()
        writer.close()

    def __enter__(self) -> CutServer:
        self.thread.start()
        server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self.handle, "127.0.0.1", 0),
                                                  self.loop).result(10)
        self.server = server
        self.port = server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def test_a_reply_cut_short_is_a_failed_reply_not_an_unreachable_upstream():
    with CutServer() as server:
        client = OpenAIUpstream(cfg(f"http://127.0.0.1:{server.port}"), None)
        try:
            with pytest.raises(UpstreamError) as info:
                await client.complete({"model": "m", "messages": user("hi")})
        finally:
            await client.aclose()
    assert (info.value.status_code, info.value.code, info.value.message) == (
        502, "upstream_error", "the upstream model failed")


# --- through the proxy, with the official openai SDK as the client ---------------------------------------

@pytest.mark.parametrize("raw", [
    b'{"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    b'{"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "seed": %d}' % 2**70,
    b'{"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}',
])
def test_a_request_body_that_is_not_strict_json_is_a_400(make_proxy, raw):
    # Before orjson: NaN and 1e999 were read as floats and sent on as invalid JSON, 2**70 was forwarded exact.
    # Now each is a 400 naming the reason, and nothing reaches the classifier or the model.
    proxy = make_proxy()
    response = httpx.post(f"{proxy.url}/v1/chat/completions", content=raw,
                          headers={"content-type": "application/json"}, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith("the request body is not valid JSON")
    assert proxy.classifier.requests == [] and proxy.upstream.requests == []


def test_a_completion_of_the_wrong_shape_is_a_502_through_the_sdk(make_proxy):
    proxy = make_proxy()
    proxy.upstream.raw_completion = {"result": "hello"}
    import openai

    with pytest.raises(openai.APIStatusError) as info:
        proxy.client.chat.completions.create(model="test-model", messages=user("hi"))
    assert info.value.status_code == 502
    assert info.value.body["message"] == NOT_A_COMPLETION
    assert "hello" in proxy.wait_audit()[0]["error"]


def test_the_relayed_body_is_the_upstreams_own_json(make_proxy):
    proxy = make_proxy({"input": {"enabled": False}, "output": {"enabled": False}})
    sent = {"id": "chatcmpl-9", "object": "chat.completion", "created": 7, "model": "m", "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "naïve 😀", "refusal": None},
                         "finish_reason": "stop", "logprobs": None, "stop_reason": None}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}, "vendor": {"k": [1, 2.5]}}
    proxy.upstream.raw_completion = sent
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "test-model", "messages": user("hi")})
    assert json.loads(response.content) == sent
    assert "naïve 😀".encode() in response.content  # UTF-8, not \\u escapes
    completion = proxy.client.chat.completions.create(model="test-model", messages=user("hi"))
    assert completion.choices[0].message.content == "naïve 😀"


SERVE_AND_LIST_SDKS = """
import json, sys, urllib.request
from guardrail_proxy import cli  # everything `guardrail-proxy serve` imports
from guardrail_proxy.app import create_app
from guardrail_proxy.loader import load_config
from guardrail_proxy.settings import Settings
from guardrail_proxy.standins.server import ServerThread
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with ServerThread(create_app(load_config(sys.argv[1]), Settings())) as proxy:
    for stream in (False, True):
        body = {"model": "test-model", "stream": stream, "messages": [{"role": "user", "content": "hi there"}]}
        request = urllib.request.Request(f"{proxy.url}/v1/chat/completions", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})
        with opener.open(request, timeout=10) as response:
            assert response.status == 200 and b"Stand-in" in response.read()
print(json.dumps(sorted(name for name in ("openai", "litellm") if name in sys.modules)))
"""


def test_serving_on_the_raw_transports_never_imports_the_openai_sdk(tmp_path, safeguard, upstream):
    """The SDK costs 47 MB of RSS and half a second of start-up (BENCHMARKS.md). A proxy whose upstreams are
    `provider: openai` and whose classifier has the default transport loads it neither at import, nor at
    start-up, nor for a guarded completion or a guarded stream. A fresh interpreter: this test process has
    imported the SDK long ago."""
    config = write_config(tmp_path, {"output": {"window_chars": 8}}, safeguard[1].url, upstream[1].url)
    done = subprocess.run([sys.executable, "-c", SERVE_AND_LIST_SDKS, str(config)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={"PYTHONPATH": str(Path(__file__).parent.parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert len(upstream[0].requests) == 2 and safeguard[0].requests


def credential_refusing_app(status: int) -> Starlette:
    async def chat(request: Request) -> Response:
        return Response(OPENAI_401, status, media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.mark.parametrize("status", [401, 403, 407])
@pytest.mark.parametrize("stream", [False, True])
def test_the_upstream_refusing_the_proxys_key_is_a_502_through_the_sdk(make_proxy, status, stream):
    """OpenAI's 401 names the proxy's key (masked) with the code the proxy answers for a bad client key: relayed,
    the client concluded its own key was wrong."""
    import openai

    with ServerThread(credential_refusing_app(status)) as refusing:
        proxy = make_proxy(upstream_cfg={"provider": "openai", "model": "m", "api_base": f"{refusing.url}/v1"})
        with pytest.raises(openai.APIStatusError) as info:
            if stream:
                list(proxy.client.chat.completions.create(model="test-model", messages=user("hi"), stream=True))
            else:
                proxy.client.chat.completions.create(model="test-model", messages=user("hi"))
        [record] = proxy.wait_audit()
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_auth_failed"
    assert info.value.body["message"] == CREDENTIALS_REJECTED
    assert "sk-proj" not in json.dumps(info.value.body)
    assert "Incorrect API key provided: sk-proj-****abcd" in record["error"]  # kept for the operator


def test_a_redirecting_upstream_is_a_502_through_the_sdk(make_proxy):
    import openai

    followed: list[str] = []
    with ServerThread(redirecting_app(followed)) as redirecting:
        proxy = make_proxy(upstream_cfg={"provider": "openai", "model": "m", "api_base": f"{redirecting.url}/v1"})
        with pytest.raises(openai.APIStatusError) as info:
            proxy.client.chat.completions.create(model="test-model", messages=user("hi"))
    assert info.value.status_code == 502 and followed == []
