"""The litellm side of the upstream interface (upstream.py): its chunks are JSON objects of the same shape as a raw
upstream's, so provider types never reach the relay; its errors follow the raw transport's rules; and a litellm
stream through the real proxy is checked."""

from __future__ import annotations

import httpx
import openai
import pytest
from conftest import user

from guardrail_proxy.errors import UpstreamError
from guardrail_proxy.standins.safeguard import Rule
from guardrail_proxy.upstream import as_upstream_error, litellm_chunk
from guardrail_proxy.upstream_http import CREDENTIALS_REJECTED


def test_a_litellm_chunk_is_its_json_object_with_the_envelope():
    chunk = litellm_chunk({"choices": [{"index": 0, "delta": {"content": "hi"}}], "model": "m"})
    assert chunk == {"choices": [{"index": 0, "delta": {"content": "hi"}}], "model": "m", "id": "",
                     "object": "chat.completion.chunk", "created": 0}


@pytest.mark.parametrize("data", [None, {}, {"choices": [{"delta": {}}]}, {"choices": [{"index": 0, "delta": "x"}]}])
def test_a_litellm_chunk_of_the_wrong_shape_is_an_upstream_error(data):
    with pytest.raises(UpstreamError):
        litellm_chunk(data)


@pytest.fixture
def litellm_proxy(make_proxy, upstream):
    def make(route):
        return make_proxy(route, upstream_cfg={"provider": "litellm", "model": "openai/stand-in-chat",
                                               "api_base": f"{upstream[1].url}/v1"})
    return make


def test_a_litellm_stream_reaches_the_sdk_whole(litellm_proxy):
    proxy = litellm_proxy({"output": {"window_chars": 8, "first_window_chars": 4}})
    stream = proxy.client.chat.completions.create(model="test-model", messages=user("hello there"), stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Stand-in reply to: hello there"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_litellm_stream_is_checked_window_by_window(litellm_proxy):
    proxy = litellm_proxy({"input": {"enabled": False}, "output": {"window_chars": 8, "first_window_chars": 4}})
    proxy.classifier.rules.append(Rule("knife", 3))
    stream = proxy.client.chat.completions.create(model="test-model", messages=user("a sharp knife please"),
                                                  stream=True)
    chunks = [c for c in stream if c.choices]
    assert "knife" not in "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "content_filter"


def status_error(status: int, message: str, body: object) -> openai.APIStatusError:
    """An error of the SDK's own type, as litellm raises it (its exceptions subclass these)."""
    response = httpx.Response(status, request=httpx.Request("POST", "http://model.test/v1/chat/completions"))
    return openai.APIStatusError(message, response=response, body=body)


@pytest.mark.parametrize("status", [401, 403, 407])
def test_litellm_the_upstream_refusing_the_proxys_key_is_a_502(status):
    error = as_upstream_error(status_error(status, "Incorrect API key provided: sk-****abcd",
                                           {"type": "invalid_request_error", "code": "invalid_api_key"}), 0.1, 20.0)
    assert (error.status_code, error.code, error.message) == (502, "upstream_auth_failed", CREDENTIALS_REJECTED)
    assert "sk-****abcd" in (error.detail or "")


@pytest.mark.parametrize(("body", "expected"), [
    ({"type": "t" * 100_000, "code": str({"a": 1})}, ("invalid_request_error", "upstream_rejected")),
    ({"type": "not_found_error", "code": "model_not_found"}, ("not_found_error", "model_not_found")),
    (None, ("invalid_request_error", "upstream_rejected")),
])
def test_litellm_a_4xx_is_passed_on_with_the_same_caps(body, expected):
    error = as_upstream_error(status_error(404, "x" * 5000, body), 0.1, 20.0)
    assert (error.status_code, error.message, error.error_type, error.code) == (
        404, "upstream model: " + "x" * 300, *expected)


def test_litellm_an_upstream_401_reaches_the_client_as_a_502(litellm_proxy, upstream):
    upstream[0].status = 401
    proxy = litellm_proxy({})
    with pytest.raises(openai.APIStatusError) as info:
        proxy.client.chat.completions.create(model="test-model", messages=user("hi"))
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_auth_failed"
    assert "stand-in upstream says 401" in proxy.wait_audit()[0]["error"]
