"""The classifier's raw transport (classifier_aiohttp.py) where it differs from the SDK one: its session, its
proxy, redirects and how much of an answer it reads. Both transports' shared contract is tested in
test_classifier.py."""

from __future__ import annotations

import gc
import gzip
import json
import warnings

import pytest
from conftest import VIOLENCE_POLICY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from guardrail_proxy.classifier_aiohttp import MAX_ANSWER_BYTES, AiohttpSafeguardClient
from guardrail_proxy.config import ClassifierConfig
from guardrail_proxy.errors import ClassifierError, ConfigError
from guardrail_proxy.policies import parse_policy
from guardrail_proxy.standins.server import ServerThread

POLICY = parse_policy(VIOLENCE_POLICY, "v.md")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                   "ALL_PROXY", "REQUEST_METHOD")
ANSWER = {"id": "c", "object": "chat.completion",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "0"}, "finish_reason": "stop"}]}


def client_for(url: str) -> AiohttpSafeguardClient:
    return AiohttpSafeguardClient(ClassifierConfig(base_url=f"{url}/v1", transport="aiohttp", retries=0), None)


async def test_a_bad_proxy_variable_fails_before_a_session_is_opened(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://proxy.test:port")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            client_for("https://classifier.test")
        except ConfigError as exc:
            field = exc.field
        gc.collect()  # a session left open is reported as it is collected
    assert field == "https_proxy"
    assert [str(w.message) for w in caught if str(w.message).startswith("Unclosed client session")] == []


async def test_a_redirect_is_a_classifier_error_and_never_followed():
    followed: list[str] = []

    async def moved(request: Request) -> Response:
        followed.append(request.method)
        return JSONResponse({**ANSWER, "object": "list", "data": []})

    async def redirect(request: Request) -> Response:
        return RedirectResponse("/v1/moved", status_code=302)

    app = Starlette(routes=[Route("/v1/chat/completions", redirect, methods=["POST"]), Route("/v1/models", redirect),
                            Route("/v1/moved", moved, methods=["GET", "POST"])])
    with ServerThread(app) as server:
        client = client_for(server.url)
        try:
            with pytest.raises(ClassifierError) as info:
                await client.classify(POLICY, "hello")
            assert "redirect" in (await client.ping() or "")
        finally:
            await client.aclose()
    assert (info.value.kind, info.value.retryable) == ("http", False)
    assert "HTTP 302" in info.value.message and followed == []


def gzipped_app(status: int, payload: bytes) -> Starlette:
    body = gzip.compress(payload, compresslevel=1)

    async def chat(request: Request) -> Response:
        return Response(body, status, headers={"content-encoding": "gzip", "content-type": "application/json"})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


async def test_an_answer_larger_than_the_cap_is_malformed():
    payload = json.dumps({**ANSWER, "pad": "a" * MAX_ANSWER_BYTES}).encode()  # a few KiB gzipped
    with ServerThread(gzipped_app(200, payload)) as server:
        client = client_for(server.url)
        try:
            with pytest.raises(ClassifierError) as info:
                await client.classify(POLICY, "hello")
        finally:
            await client.aclose()
    assert info.value.kind == "malformed"
    assert info.value.message == f"the classifier's response is larger than {MAX_ANSWER_BYTES} bytes"


async def test_an_error_body_is_read_only_to_its_cap():
    payload = json.dumps({"error": {"message": "m" * 10_000_000}}).encode()
    with ServerThread(gzipped_app(503, payload)) as server:
        client = client_for(server.url)
        try:
            with pytest.raises(ClassifierError) as info:
                await client.classify(POLICY, "hello")
        finally:
            await client.aclose()
    # The status keeps its meaning (an outage, retryable); the message is the body's first characters.
    assert (info.value.kind, info.value.retryable) == ("http", True)
    assert info.value.message == 'the classifier answered HTTP 503: {"error": {"message": "' + "m" * 277
