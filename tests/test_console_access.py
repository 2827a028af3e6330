"""Who may see the review console: the ops port, the ops key (Bearer or the login cookie), nobody when neither
is configured; the Host an open console answers to; session tokens; same-origin POSTs; where a sign-in may
lead."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from guardrail_proxy.config import ServerConfig
from guardrail_proxy.console.access import (
    SESSION_S,
    admit,
    cookie_header,
    host_expected,
    host_name,
    next_path,
    same_origin,
    session_token,
    session_valid,
)

NOW = 1_800_000_000.0
KEY = "ops-secret"
PORT = ServerConfig(ops_port=9090)
NO_PORT = ServerConfig()
COOKIE = session_token(KEY, NOW - 60)


@pytest.mark.parametrize(("server", "key", "on_ops", "authorization", "cookie", "status", "via"), [
    (NO_PORT, None, False, None, None, 403, ""),  # neither: never open on the end users' port
    (NO_PORT, None, False, f"Bearer {KEY}", None, 403, ""),
    (PORT, None, False, None, None, 404, ""),  # the main port knows no console
    (PORT, KEY, False, f"Bearer {KEY}", COOKIE, 404, ""),  # not even with the key
    (PORT, None, True, None, None, 200, "open"),  # the ops port alone
    (PORT, KEY, True, None, None, 401, ""),
    (PORT, KEY, True, f"Bearer {KEY}", None, 200, "bearer"),
    (PORT, KEY, True, None, COOKIE, 200, "cookie"),
    (NO_PORT, KEY, False, None, None, 401, ""),  # the key alone: the main port, behind it
    (NO_PORT, KEY, False, "Bearer wrong", None, 401, ""),
    (NO_PORT, KEY, False, f"Basic {KEY}", None, 401, ""),
    (NO_PORT, KEY, False, f"bearer {KEY}", None, 200, "bearer"),
    (NO_PORT, KEY, False, None, COOKIE, 200, "cookie"),
    (NO_PORT, KEY, False, None, session_token("another key", NOW), 401, ""),
    (NO_PORT, KEY, False, None, KEY, 401, ""),  # the key itself is not a session
])
def test_admit(server, key, on_ops, authorization, cookie, status, via) -> None:
    access = admit(server, key, on_ops, authorization, cookie, NOW, "127.0.0.1:9090")
    assert (access.status, access.via) == (status, via)
    assert access.allowed == (status == 200) and access.needs_login == (status == 401)


def test_the_refusal_says_why() -> None:
    reason = admit(NO_PORT, None, False, None, None, NOW).reason
    assert "ops_port" in reason and "ops_key_env" in reason and "end users" in reason


NONCE = "n" * 22
TOKEN = session_token(KEY, NOW, NONCE)
ISSUED, _, MAC = TOKEN.split(".")


@pytest.mark.parametrize(("token", "now", "valid"), [
    (session_token(KEY, NOW), NOW, True),
    (TOKEN, NOW, True),
    (session_token(KEY, NOW), NOW + SESSION_S, True),
    (session_token(KEY, NOW), NOW + SESSION_S + 1, False),  # expired
    (session_token(KEY, NOW + 100), NOW, False),  # issued in the future
    (TOKEN[:-1] + ("0" if TOKEN[-1] != "0" else "1"), NOW, False),  # tampered signature
    (f"{int(NOW) + 1}.{NONCE}.{MAC}", NOW + 2, False),  # another issue time
    (f"{ISSUED}.{'m' * 22}.{MAC}", NOW, False),  # another nonce
    (f"{ISSUED}.{MAC}", NOW, False),  # the old two-part form
    ("", NOW, False),
    ("abc.def.ghi", NOW, False),
    ("9" * 40 + f".{NONCE}.{MAC}", NOW, False),
    (f"²{ISSUED[1:]}.{NONCE}.{MAC}", NOW, False),  # isdigit() says yes, int() says no: refused, not a crash
    (f"١{ISSUED[1:]}.{NONCE}.{MAC}", NOW, False),  # a decimal digit, but not ASCII
    (f"{ISSUED}.{NONCE}.{MAC.upper()}", NOW, False),
    (f"{ISSUED}.a.b.{MAC}", NOW, False),
])
def test_session_tokens(token: str, now: float, valid: bool) -> None:
    assert session_valid(KEY, token, now) is valid


def test_a_token_holds_no_key_and_each_is_new() -> None:
    assert KEY not in session_token(KEY, NOW)
    assert session_token(KEY, NOW) != session_token(KEY, NOW)  # a random nonce each time


def test_the_cookie_is_signed_with_a_derived_key_not_the_ops_key() -> None:
    """An HMAC made directly under the ops key (by any other use of it) is never a valid session."""
    direct = hmac.new(KEY.encode(), f"{ISSUED}.{NONCE}".encode(), hashlib.sha256).hexdigest()
    assert direct != MAC and not session_valid(KEY, f"{ISSUED}.{NONCE}.{direct}", NOW)
    derived = hmac.new(KEY.encode(), b"guardrail-console-session", hashlib.sha256).digest()
    assert hmac.new(derived, f"{ISSUED}.{NONCE}".encode(), hashlib.sha256).hexdigest() == MAC


OPEN = ServerConfig(ops_port=9090)


@pytest.mark.parametrize(("host", "server", "expected"), [
    ("127.0.0.1:9090", OPEN, True),
    ("10.1.2.3:9090", OPEN, True),
    ("[::1]:9090", OPEN, True),
    ("localhost:9090", OPEN, True),
    ("LOCALHOST.:9090", OPEN, True),
    ("review.localhost:9090", OPEN, True),
    ("ops.internal:9090", ServerConfig(ops_port=9090, ops_host="ops.internal"), True),
    ("ops.internal:9090", ServerConfig(ops_port=9090, host="ops.internal"), True),
    ("rebind.evil.example:9090", OPEN, False),  # a DNS-rebinding page's own name
    ("rebind.evil.example:9090", ServerConfig(ops_port=9090, ops_host="0.0.0.0"), False),
    ("localhost.evil.example", OPEN, False),
    ("127.0.0.1.evil.example", OPEN, False),
    ("evil.example@127.0.0.1", OPEN, False),
    ("", OPEN, False),
    (None, OPEN, False),
    ("lоcalhost", OPEN, False),  # a Cyrillic o
])
def test_the_host_an_open_console_answers_to(host, server, expected) -> None:
    assert host_expected(host, server) is expected


def test_an_open_console_refuses_an_unexpected_host_and_a_keyed_one_does_not_care() -> None:
    refused = admit(OPEN, None, True, None, None, NOW, "rebind.evil.example:9090")
    assert refused.status == 421 and "rebind.evil.example" in refused.reason and "ops_key_env" in refused.reason
    assert admit(OPEN, KEY, True, f"Bearer {KEY}", None, NOW, "review.example").status == 200
    assert host_name("[::1]:9090") == "::1" and host_name("Example.COM.:80") == "example.com"


@pytest.mark.parametrize(("origin", "referer", "host", "same"), [
    ("http://127.0.0.1:9090", None, "127.0.0.1:9090", True),
    ("https://review.example", None, "review.example", True),  # TLS ended by a proxy in front
    ("http://evil.example", None, "127.0.0.1:9090", False),
    ("http://127.0.0.1:9091", None, "127.0.0.1:9090", False),
    (None, "http://127.0.0.1:9090/console/decisions/x", "127.0.0.1:9090", True),
    ("null", "http://127.0.0.1:9090/console/", "127.0.0.1:9090", False),  # a null origin is refused outright
    ("null", None, "127.0.0.1:9090", False),
    (None, None, "127.0.0.1:9090", False),  # neither header: refused
    ("http://127.0.0.1:9090", None, None, False),
    ("http://[::1", None, "127.0.0.1:9090", False),  # unparsable: refused, not a crash
])
def test_same_origin(origin, referer, host, same) -> None:
    assert same_origin(origin, referer, host) is same


@pytest.mark.parametrize(("fetch_site", "same"), [
    (None, True), ("same-origin", True), ("same-site", False), ("cross-site", False), ("none", False)])
def test_sec_fetch_site_must_say_same_origin_when_sent(fetch_site, same) -> None:
    assert same_origin("http://127.0.0.1:9090", None, "127.0.0.1:9090", fetch_site) is same


@pytest.mark.parametrize(("candidate", "path"), [
    ("/console/decisions?policy=violence", "/console/decisions?policy=violence"),
    (None, "/console/"),
    ("", "/console/"),
    ("https://evil.example/console/", "/console/"),
    ("//evil.example/console/", "/console/"),
    ("/consolex", "/console/"),
    ("/console/\\evil", "/console/"),
    ("/metrics", "/console/"),
    ("/console", "/console/"),
    ("/console/../metrics", "/console/"),
    ("/console/%2e%2e/admin/reload", "/console/"),  # a browser would resolve the encoded dots
    ("/console/./decisions/../shadow?window=7d", "/console/shadow?window=7d"),
    ("/console/decisions/a%20b", "/console/decisions/a%20b"),
    ("/console/x\r\nSet-Cookie: a=b", "/console/"),
    ("/console/\x00", "/console/"),
    ("/console//evil.example/", "/console/evil.example/"),
    ("http:/console/", "/console/"),
])
def test_next_path_stays_in_the_console(candidate, path) -> None:
    assert next_path(candidate) == path


def test_the_cookie_is_scoped_and_hidden_from_scripts() -> None:
    header = cookie_header("t", secure=False)
    assert header.startswith("guardrail_console=t;")
    assert all(flag in header for flag in ("Path=/console", "HttpOnly", "SameSite=Strict", f"Max-Age={SESSION_S}"))
    assert "Secure" not in header and cookie_header("t", secure=True).endswith("; Secure")
