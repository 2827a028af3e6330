"""The pooled aiohttp session behind each outbound client (the classifier's raw transport, the raw upstream),
the proxy it goes through, and how much of a reply it reads.

Proxy variables are read as httpx and the openai SDK read them, so a deployment behind a proxy works the same
with either transport:
- `<scheme>_proxy` (HTTP_PROXY, HTTPS_PROXY) for URLs of that scheme, else ALL_PROXY; the lower-case name wins
  over the upper-case one, as in urllib;
- a value without a scheme (`proxy.internal:3128`) means an http:// proxy, as httpx reads it;
- NO_PROXY exempts a host: a comma-separated list of names, each matching that host and its subdomains (a
  leading dot changes nothing), optionally with a port, or `*` for every host; as urllib reads it.
The proxy is resolved once, when the client is built, for the one base URL it calls, and passed with every
request; a value aiohttp cannot use (no host, a port that is not a number, a scheme other than http or https,
such as socks5) is a ConfigError naming the variable then, rather than an InvalidURL on every call. aiohttp's
own `trust_env=True` would resolve the variables again on every request, in a worker thread, and also read
~/.netrc there: two thread hand-offs per call, about a tenth of a guarded request's CPU in a py-spy profile
(BENCHMARKS.md). A ~/.netrc is not read: these clients send their key in an Authorization header, which
aiohttp refuses to combine with netrc credentials anyway.

The variables come from a mapping (`proxy_for`); only settings.py reads the process environment. A client
resolves its proxy before it builds its session, so a bad variable leaves no open session behind.

Bodies are read in pieces up to a cap (`read_body`), counted after aiohttp has undone any gzip or deflate
encoding: a peer cannot make the proxy hold more than the cap in memory, whatever Content-Length says or
however well its body compresses. An error body is read up to MAX_ERROR_BYTES and the rest ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from .errors import ConfigError
from .settings import Settings

PROXY_SCHEMES = ("http", "https")  # what aiohttp can send through
ENVIRONMENT = "environment"  # the `file` of a ConfigError about a variable
MAX_ERROR_BYTES = 64 * 1024  # of an error body: its message is all the proxy wants from it


def proxy_variables(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Per scheme ("http", "https", "all", "no", ...): the variable that sets its proxy and its value. As
    urllib.request.getproxies_environment reads them: a lower-case name wins, an empty value unsets, and
    HTTP_PROXY in upper case is ignored under CGI (REQUEST_METHOD set), where a client can set it as a header."""
    found: dict[str, tuple[str, str]] = {}
    for lower_case in (False, True):
        for name, value in env.items():
            if name.lower().endswith("_proxy") and (name == name.lower()) is lower_case:
                scheme = name[:-len("_proxy")].lower()
                if value:
                    found[scheme] = (name, value)
                else:
                    found.pop(scheme, None)
    if "REQUEST_METHOD" in env and found.get("http", ("",))[0] == "HTTP_PROXY":
        del found["http"]
    return found


def proxy_for(url: str, env: Mapping[str, str]) -> str | None:
    """The proxy URL `env` names for `url`, or None (none set, or NO_PROXY covers its host). Raises ConfigError
    naming the variable when its value is not a proxy aiohttp can use."""
    parts = urlsplit(url)
    variables = proxy_variables(env)
    if not parts.hostname or bypassed(parts.hostname, parts.port, variables.get("no", ("", ""))[1]):
        return None
    chosen = variables.get(parts.scheme) or variables.get("all")
    if chosen is None:
        return None
    name, value = chosen
    return checked_proxy(name, value)


def bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether NO_PROXY's value exempts `host` (lower case, as urlsplit gives it) on `port`."""
    names = {host, f"{host}:{port}"} if port is not None else {host}
    for entry in no_proxy.split(","):
        entry = entry.strip().lstrip(".").lower()
        if entry == "*":
            return True
        if entry and any(name == entry or name.endswith(f".{entry}") for name in names):
            return True
    return False


def checked_proxy(name: str, value: str) -> str:
    """`value` as a proxy URL: http:// added when it names no scheme, then checked as aiohttp will read it."""
    proxy = value.strip() if "://" in value else f"http://{value.strip()}"
    shown = repr(proxy.rsplit("@", 1)[-1] if "@" in proxy else proxy)  # never a password in a log line
    if any(c.isspace() for c in proxy):
        raise ConfigError(ENVIRONMENT, name, f"{shown} is not a proxy URL: it contains a space")
    try:
        parsed = URL(proxy)
        parsed.port  # noqa: B018 (a port that is not a number raises here, as it would on every request)
    except ValueError as exc:
        raise ConfigError(ENVIRONMENT, name, f"{shown} is not a proxy URL: {exc}") from None
    if parsed.scheme not in PROXY_SCHEMES:
        raise ConfigError(ENVIRONMENT, name, f"{shown}: the proxy's scheme must be http or https "
                                             f"(aiohttp, the proxy's HTTP client, cannot use {parsed.scheme})")
    if not parsed.host:
        raise ConfigError(ENVIRONMENT, name, f"{shown} is not a proxy URL: it names no host")
    return proxy


def env_proxy(url: str) -> str | None:
    """`proxy_for(url)` with the variables of the process's environment, as settings.py reads them. For
    clients built without the process's Settings at hand; those that have it should call proxy_for."""
    return proxy_for(url, Settings.from_environ().env)


def pooled_session(limit: int) -> aiohttp.ClientSession:
    """A session with one connection pool; `limit` caps its connections (0: no cap). Build it on a running
    loop (the app's lifespan) and close it there."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))


async def read_body(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, as aiohttp decodes it, and whether that is all of it. Past the limit
    reading stops and the connection is closed: with its body unread it cannot serve another request."""
    pieces: list[bytes] = []
    size = 0
    async for piece in response.content.iter_any():
        pieces.append(piece)
        size += len(piece)
        if size > limit:
            response.close()
            return b"".join(pieces)[:limit], False
    return b"".join(pieces), True
