"""Outbound sessions (http_pool.py): the proxy the environment names for a client's base URL."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from guardrail_proxy.errors import ConfigError
from guardrail_proxy.http_pool import bypassed, env_proxy, pooled_session, proxy_for, proxy_variables
from guardrail_proxy.standins.server import ServerThread

PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                   "ALL_PROXY", "REQUEST_METHOD")


@pytest.mark.parametrize(("env", "url", "expected"), [
    ({}, "http://127.0.0.1:8000/v1", None),
    ({"http_proxy": "http://proxy.test:3128"}, "http://model.test/v1", "http://proxy.test:3128"),
    ({"https_proxy": "http://proxy.test:3128"}, "http://model.test/v1", None),  # the scheme must match
    ({"HTTPS_PROXY": "http://proxy.test:3128"}, "https://model.test/v1", "http://proxy.test:3128"),
    ({"HTTPS_PROXY": "https://proxy.test:3129"}, "https://model.test/v1", "https://proxy.test:3129"),
    # No scheme: an http:// proxy, as httpx reads it (aiohttp refused every call with InvalidURL).
    ({"HTTP_PROXY": "proxy.test:3128"}, "http://model.test/v1", "http://proxy.test:3128"),
    ({"https_proxy": "proxy.test"}, "https://model.test/v1", "http://proxy.test"),
    # ALL_PROXY, for any scheme without a proxy of its own.
    ({"ALL_PROXY": "http://all.test:8080"}, "https://model.test/v1", "http://all.test:8080"),
    ({"all_proxy": "all.test:8080", "http_proxy": "http.test:1"}, "http://model.test/v1", "http://http.test:1"),
    # The lower-case name wins; an empty one unsets.
    ({"HTTP_PROXY": "upper.test:1", "http_proxy": "lower.test:2"}, "http://model.test/v1", "http://lower.test:2"),
    ({"HTTP_PROXY": "upper.test:1", "http_proxy": ""}, "http://model.test/v1", None),
    # Under CGI a client can set HTTP_PROXY as a header: the upper-case name is ignored there (httpoxy).
    ({"HTTP_PROXY": "upper.test:1", "REQUEST_METHOD": "GET"}, "http://model.test/v1", None),
    # NO_PROXY keeps working: a host, a domain suffix, everything.
    ({"http_proxy": "http://proxy.test:3128", "no_proxy": "model.test"}, "http://model.test/v1", None),
    ({"HTTP_PROXY": "proxy.test:3128", "NO_PROXY": ".test"}, "http://model.test/v1", None),
    ({"ALL_PROXY": "proxy.test:3128", "no_proxy": "*"}, "http://model.test/v1", None),
    ({"http_proxy": "proxy.test:3128", "no_proxy": "other.test"}, "http://model.test/v1", "http://proxy.test:3128"),
    # A bad value that NO_PROXY makes irrelevant is not this client's concern.
    ({"http_proxy": "socks5://proxy.test:1080", "no_proxy": "model.test"}, "http://model.test/v1", None),
])
def test_proxy_for(env, url, expected):
    assert proxy_for(url, env) == expected


@pytest.mark.parametrize(("env", "variable", "reason"), [
    ({"HTTP_PROXY": "http://proxy.test:port"}, "HTTP_PROXY", "not a proxy URL"),
    ({"http_proxy": "proxy.test:99999"}, "http_proxy", "not a proxy URL"),
    ({"ALL_PROXY": "socks5://proxy.test:1080"}, "ALL_PROXY", "scheme must be http or https"),
    ({"HTTP_PROXY": "http://"}, "HTTP_PROXY", "names no host"),
    ({"http_proxy": ":3128"}, "http_proxy", "not a proxy URL"),
    ({"http_proxy": "http://proxy .test:3128"}, "http_proxy", "contains a space"),
])
def test_a_bad_proxy_is_a_config_error_naming_the_variable(env, variable, reason):
    with pytest.raises(ConfigError) as info:
        proxy_for("http://model.test/v1", env)
    assert (info.value.file, info.value.field) == ("environment", variable)
    assert reason in info.value.reason


def test_a_config_error_never_shows_the_proxy_password():
    with pytest.raises(ConfigError) as info:
        proxy_for("http://model.test/v1", {"http_proxy": "socks5://user:s3cret@proxy.test:1080"})
    assert "s3cret" not in info.value.message and "proxy.test:1080" in info.value.message


@pytest.mark.parametrize(("host", "port", "no_proxy", "expected"), [
    ("model.test", None, "model.test", True),
    ("api.model.test", None, "model.test", True),     # a subdomain
    ("api.model.test", None, ".model.test", True),    # a leading dot changes nothing
    ("model.test", None, ".model.test", True),
    ("xmodel.test", None, "model.test", False),       # a suffix that is not a whole label
    ("model.test", None, " other.test , MODEL.test ", True),
    ("model.test", 8000, "model.test:8000", True),
    ("model.test", 8001, "model.test:8000", False),
    ("model.test", 8000, "model.test", True),
    ("127.0.0.1", 8000, "127.0.0.1", True),
    ("model.test", None, "a.test,*", True),
    ("model.test", None, "", False),
    ("model.test", None, ",", False),
])
def test_no_proxy(host, port, no_proxy, expected):
    assert bypassed(host, port, no_proxy) is expected


def test_proxy_variables_name_their_source():
    assert proxy_variables({"HTTPS_PROXY": "a:1", "all_proxy": "b:2", "NO_PROXY": "x", "PATH": "/bin"}) == {
        "https": ("HTTPS_PROXY", "a:1"), "all": ("all_proxy", "b:2"), "no": ("NO_PROXY", "x")}


def test_env_proxy_reads_the_process_environment_through_settings(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "proxy.test:3128")
    assert env_proxy("http://model.test/v1") == "http://proxy.test:3128"


async def test_requests_go_through_a_scheme_less_proxy():
    """The value aiohttp refused on every call now carries one: a stand-in on 127.0.0.1 plays the proxy and
    sees the absolute-form request a client sends to a forward proxy."""
    seen: list[dict[str, Any]] = []

    async def forward(request: Request) -> JSONResponse:
        seen.append({"target": request.scope.get("raw_path", b"").decode(), "host": request.headers.get("host")})
        return JSONResponse({"via": "proxy"})

    app = Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])
    with ServerThread(app) as server:
        proxy = proxy_for("http://model.invalid/v1/chat/completions", {"HTTP_PROXY": f"127.0.0.1:{server.port}"})
        async with pooled_session(1) as session, \
                session.post("http://model.invalid/v1/chat/completions", json={}, proxy=proxy) as response:
            assert response.status == 200 and await response.json() == {"via": "proxy"}
    assert seen == [{"target": "/v1/chat/completions", "host": "model.invalid"}]
