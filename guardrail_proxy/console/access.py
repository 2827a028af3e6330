"""Who may see the review console, and which of its POSTs are genuine. Pure.

The console shows stored conversations and the classifier's reasoning, so it follows the operator
endpoints' rules (ops.py) and adds what a browser needs:

- with `server.ops_port` it is served on the ops port only (404 on the main port);
- with `server.ops_key_env` it needs the ops key. A browser cannot send a Bearer header when it follows a
  link, so a login form takes the key once and sets a session cookie (HttpOnly, SameSite=Strict, scoped to
  /console). The cookie holds its issue time, a random nonce and an HMAC of both under a session key derived
  from the ops key (an HMAC of a fixed context string), never the key itself; it expires after SESSION_S.
  Scripts may send `Authorization: Bearer <ops key>` instead;
- with neither, the console is refused (403): the only port left is the one end users reach.

The ops port without a key is open to anyone who can reach it, so there the Host header must name this
machine as its operator would: an IP literal, a localhost name, or `server.ops_host` / `server.host` (421
otherwise). A DNS-rebinding page (its own name, resolved to this port) then gets no answer from the console,
although the browser thinks it is same-origin. Behind the ops key that check is not needed (the rebinding
page has neither the key nor the cookie, which the browser keeps for the real name), and a console behind
a reverse proxy keeps its public name.

A POST that changes state must come from a console page: its Origin (or, lacking one, its Referer) must
name the host the request was sent to; `Origin: null` (a sandboxed frame, a redirect from elsewhere) is
refused, and so is any `Sec-Fetch-Site` other than same-origin when the browser sends one. A Bearer request
is exempt, as no browser adds that header by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import posixpath
import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from ..config import ServerConfig

COOKIE = "guardrail_console"
PREFIX = "/console"
SESSION_S = 12 * 3600
SESSION_CONTEXT = b"guardrail-console-session"
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
MAC = re.compile(r"[0-9a-f]{64}")
UNSPECIFIED = {"", "0.0.0.0", "::"}  # a listener on every address: no name to expect from it


@dataclass(frozen=True)
class Access:
    """May this request see the console? `status` 200 when it may; else the page to answer with."""

    status: int
    reason: str = ""
    via: str = ""  # "bearer", "cookie" or "open" (the ops port without a key)

    @property
    def allowed(self) -> bool:
        return self.status == 200

    @property
    def needs_login(self) -> bool:
        return self.status == 401


OFF = ("The review console is off. It is served only on the ops port (server.ops_port) or behind the ops key "
       "(server.ops_key_env), and neither is configured, so the only port left is the one end users reach.")


def admit(server: ServerConfig, key: str | None, on_ops_listener: bool, authorization: str | None,
          cookie: str | None, now: float, host: str | None = None) -> Access:
    """The console's gate for one request; `host` is the request's Host header."""
    if server.ops_port is not None and not on_ops_listener:
        return Access(404, "Not found.")  # the main port knows no console
    if server.ops_port is None and key is None:
        return Access(403, OFF)
    if key is None:
        if not host_expected(host, server):
            return Access(421, f"The ops port has no key, so its console answers only to an IP address, localhost "
                               f"or server.ops_host, not to the name {host_name(host) or '(none)'!r}: a page of "
                               "another site that points its own name at this port must not read it. Open the "
                               "console by address, or set server.ops_key_env.")
        return Access(200, via="open")
    if bearer_matches(authorization, key):
        return Access(200, via="bearer")
    if cookie and session_valid(key, cookie, now):
        return Access(200, via="cookie")
    return Access(401, "Sign in with the proxy's ops key.")


def host_name(host: str | None) -> str | None:
    """The name in a Host header (no port, no brackets, lower case, no trailing dot), or None when unreadable."""
    if not host or any(ch in host for ch in "/?#@\\ ") or not host.isascii():
        return None
    try:
        name = urlsplit(f"//{host}").hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_expected(host: str | None, server: ServerConfig) -> bool:
    """Does the Host header name this machine as its operator would (see the module's docstring)?"""
    name = host_name(host)
    if name is None:
        return False
    configured = {n.lower().rstrip(".") for n in (server.ops_host, server.host) if n} - UNSPECIFIED
    return is_ip(name) or name == "localhost" or name.endswith(".localhost") or name in configured


def bearer_matches(authorization: str | None, key: str) -> bool:
    scheme, _, token = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and key_matches(token.strip(), key)


def key_matches(given: str, key: str) -> bool:
    """Constant time in the key's content."""
    return hmac.compare_digest(given.encode(), key.encode())


def session_key(key: str) -> bytes:
    """The key cookies are signed with: derived from the ops key, so no other use of the ops key (or of an
    HMAC under it) can produce a session."""
    return hmac.new(key.encode(), SESSION_CONTEXT, hashlib.sha256).digest()


def signature(key: str, issued: int, nonce: str) -> str:
    return hmac.new(session_key(key), f"{issued}.{nonce}".encode(), hashlib.sha256).hexdigest()


def session_token(key: str, now: float, nonce: str | None = None) -> str:
    issued = int(now)
    nonce = nonce or secrets.token_urlsafe(16)
    return f"{issued}.{nonce}.{signature(key, issued, nonce)}"


def session_valid(key: str, token: str, now: float, max_age_s: int = SESSION_S) -> bool:
    parts = token.split(".")
    if len(parts) != 3:
        return False
    issued_text, nonce, mac = parts
    if not (issued_text.isascii() and issued_text.isdecimal()) or len(issued_text) > 12:
        return False
    if not NONCE.fullmatch(nonce) or not MAC.fullmatch(mac):
        return False
    issued = int(issued_text)
    if not 0 <= now - issued <= max_age_s:
        return False
    return hmac.compare_digest(mac.encode(), signature(key, issued, nonce).encode())


def same_origin(origin: str | None, referer: str | None, host: str | None, fetch_site: str | None = None) -> bool:
    """Did a page of this host send the POST? Host and port are compared, not the scheme, so that a console
    behind a TLS-terminating proxy still works; a page of another site can never name this host.
    `fetch_site` is the Sec-Fetch-Site header: when a browser sends it, it must say same-origin."""
    if not host or origin == "null":
        return False
    if fetch_site is not None and fetch_site.strip().lower() != "same-origin":
        return False
    source = origin or referer
    if not source:
        return False
    try:
        netloc = urlsplit(source).netloc
    except ValueError:
        return False
    return netloc.lower() == host.lower()


def cookie_header(token: str, secure: bool, max_age_s: int = SESSION_S) -> str:
    flags = f"; Path={PREFIX}; HttpOnly; SameSite=Strict; Max-Age={max_age_s}"
    return f"{COOKIE}={token}{flags}" + ("; Secure" if secure else "")


PATH_SAFE = "/:@!$&'()*+,;=-._~"  # RFC 3986 path characters left as they are


def next_path(candidate: str | None) -> str:
    """Where to go after signing in: a path under /console, normalised (no `..`, no other site, no control
    characters), with its query; anything else leads to the console's first page."""
    home = PREFIX + "/"
    if not candidate or not candidate.isprintable() or "\\" in candidate:
        return home
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return home
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return home
    path = posixpath.normpath(unquote(parts.path))
    if path.startswith("//") or not path.startswith(home) or not path.isprintable():
        return home
    if parts.path.endswith("/"):
        path += "/"
    return quote(path, safe=PATH_SAFE) + (f"?{parts.query}" if parts.query else "")
