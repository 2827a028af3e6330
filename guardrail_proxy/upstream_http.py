"""`provider: openai` upstreams: the body the proxy built, POSTed as it is through one pooled aiohttp session.

No SDK in between: the openai SDK re-validated and re-encoded a body the proxy had already checked, and built
a typed `ChatCompletion` the proxy only dumped back to JSON; that was about 30% of a guarded request's CPU
(BENCHMARKS.md, issue 14). Here a completion stays the JSON object the upstream sent (checked for shape by
`chat_completion`) and a stream is read line by line into chunks, each the upstream's own JSON object
(sse_parse.py).

Errors keep the meaning they had through the SDK (upstream.as_upstream_error is the litellm side, and shares
`rejection` with this one):
- an HTTP 4xx is the upstream refusing the request: its status passed on, its message cut to
  ERROR_TEXT_CHARS, its type and code only when they look like identifiers;
- except 401, 403 and 407, which are about the proxy's own credentials (or an outbound proxy's), never the
  client's: a 502 upstream_auth_failed, the upstream's words in the log and audit only;
- any other status (a redirect too: none is followed, so a POST never silently turns into a GET), a reply
  that is not a chat completion or is larger than MAX_REPLY_BYTES, a broken stream: 502 "the upstream model
  failed" or a more precise message;
- no connection: 502 upstream_unavailable; a timeout counts as one only when the budget has run out
  (deadlines.py), otherwise nothing answered at all, which is a 502 too.
Timeouts: a completion has `timeout_s` in all once it is sent; a stream has `timeout_s` to connect and between
two reads, so a long stream that keeps flowing is never cut. Before that, a call waits for one of
`max_connections` slots (the connection pool's size) for at most half its `timeout_s`; past that it is a 503
upstream_busy and was never sent. aiohttp's own pool limit would count that wait against the call's timeout
and call it the upstream's slowness.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .config import UpstreamConfig
from .deadlines import timed_out
from .errors import UpstreamError
from .http_pool import MAX_ERROR_BYTES, env_proxy, pooled_session, read_body
from .sse_parse import Chunk, chunks_from_lines, sse_lines, valid_index
from .wire_json import JSONReadError, dumps, loads

MAX_CONNECTIONS = 1000  # the openai SDK's own default pool size
MAX_REPLY_BYTES = 32 * 1024 * 1024  # a completion's body, decoded; a longer one is a 502
ERROR_TEXT_CHARS = 300
ERROR_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # an upstream's error type or code the client may see
CREDENTIAL_STATUSES = frozenset({401, 403, 407})
CREDENTIALS_REJECTED = "the upstream model rejected the proxy's credentials"


def error_name(value: object, default: str) -> str:
    """An upstream's error `type` or `code` as the client sees it: a short identifier as sent (vLLM sends the
    status number as its code), anything else replaced by `default`."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and ERROR_NAME.fullmatch(value) else default


def rejection(status: int, message: str, error_type: object = None, code: object = None) -> UpstreamError:
    """The error for an upstream's 4xx. The upstream judged the request, so the client sees that status, the
    message (cut to ERROR_TEXT_CHARS) and the type and code when they are identifier-shaped. Not so for 401,
    403 and 407: those judge the proxy's key (OpenAI's 401 quotes the key, masked, and its code invalid_api_key
    is the one the proxy answers for the client's own key) or an outbound proxy's credentials (407). The client
    gets a 502 saying so; the upstream's words go to the detail (log and audit)."""
    message = message[:ERROR_TEXT_CHARS]
    if status in CREDENTIAL_STATUSES:
        return UpstreamError(CREDENTIALS_REJECTED, code="upstream_auth_failed", detail=f"HTTP {status}: {message}")
    return UpstreamError(f"upstream model: {message}", status_code=status,
                         error_type=error_name(error_type, "invalid_request_error"),
                         code=error_name(code, "upstream_rejected"))


def http_error(status: int, body: bytes) -> UpstreamError:
    """The error for an upstream's answer other than 200, from its status and (the start of) its body: an
    OpenAI error body, vLLM's top-level message, a bare `{"error": "..."}`, or any text."""
    try:
        data = loads(body)
    except JSONReadError:
        data = None
    error = data.get("error", data) if isinstance(data, dict) else None
    error_type = code = None
    if isinstance(error, dict):
        found = error.get("message")
        text = str(found) if found else ""
        error_type, code = error.get("type"), error.get("code")
    else:
        text = str(error) if error else body[:ERROR_TEXT_CHARS * 4].decode("utf-8", "replace").strip()
    message = text[:ERROR_TEXT_CHARS] or f"HTTP {status}"
    if 400 <= status < 500:
        return rejection(status, message, error_type, code)
    why = " (a redirect, which the proxy does not follow)" if 300 <= status < 400 else ""
    return UpstreamError("the upstream model failed", detail=f"HTTP {status}{why}: {message}")


def transport_error(exc: BaseException, elapsed_s: float, budget_s: float, *, started: bool) -> UpstreamError:
    """The error for a call that got no complete answer. `started`: the upstream had begun its reply (its
    status line arrived), so a dropped connection is a failed reply rather than an unreachable upstream."""
    if isinstance(exc, TimeoutError) and timed_out(elapsed_s, budget_s):
        return UpstreamError("the upstream model did not answer in time", status_code=504, code="upstream_timeout")
    if not started and isinstance(exc, aiohttp.ClientConnectionError | TimeoutError):
        return UpstreamError("cannot reach the upstream model", code="upstream_unavailable",
                             detail=f"{type(exc).__name__}: {exc}")
    return UpstreamError("the upstream model failed", detail=f"{type(exc).__name__}: {exc}")


def too_large(limit: int) -> UpstreamError:
    return UpstreamError(f"the upstream's reply is larger than the proxy reads ({limit // (1024 * 1024)} MiB)")


def choice_shaped(choice: object) -> bool:
    """An object with a non-negative integer `index` (0 when absent; a negative one would read as the proxy's
    marker for text outside the choices, decisions.OUTSIDE) and an object `message`, or none, or null."""
    if not isinstance(choice, dict):
        return False
    index, message = choice.get("index", 0), choice.get("message")
    return valid_index(index) and index >= 0 and (message is None or isinstance(message, dict))


def chat_completion(data: Any, raw: bytes = b"") -> dict[str, Any]:
    """`data` when it has the shape of a chat completion: an object whose `choices` is a list of objects, each
    shaped as `choice_shaped` says. Anything else is an UpstreamError, never a fault further down; unknown
    fields and odd values inside a message are the output check's business."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if isinstance(choices, list) and all(choice_shaped(c) for c in choices):
        return data
    shown = raw[:ERROR_TEXT_CHARS].decode("utf-8", "replace") if raw else repr(data)[:ERROR_TEXT_CHARS]
    raise UpstreamError("the upstream answered something that is not a chat completion", detail=shown)


class OpenAIUpstream:
    def __init__(self, cfg: UpstreamConfig, api_key: str | None, max_connections: int = MAX_CONNECTIONS) -> None:
        self.cfg = cfg
        self.api_key = api_key
        base = str(cfg.api_base).rstrip("/")
        self.url, self.models_url = f"{base}/chat/completions", f"{base}/models"
        # The SDK sent a placeholder key when none is configured; some servers insist on the header.
        self.headers = {"content-type": "application/json", "accept": "application/json",
                        "authorization": f"Bearer {api_key or 'unused'}"}
        self.complete_timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
        self.stream_timeout = aiohttp.ClientTimeout(total=None, connect=cfg.timeout_s, sock_read=cfg.timeout_s)
        # Proxy variables apply, as they did to the SDK's client (http_pool.py). Resolved first: a bad one
        # raises ConfigError before there is a session to leak.
        self.proxy = env_proxy(self.url)
        # The slots bound the calls (and so the connections); the pool itself has no cap, so that /readyz's
        # probe never queues behind calls and a call never waits inside aiohttp, on its own timeout's clock.
        self.slots = asyncio.Semaphore(max_connections)
        self.slot_wait_s = cfg.timeout_s / 2
        # Built inside the app's lifespan (a running loop) and shared by every request.
        self.session = pooled_session(0)

    def body(self, body: dict[str, Any], *, stream: bool) -> bytes:
        """Every field as the client sent it, with the route's model name and the stream flag."""
        return dumps({**body, "model": self.cfg.model, "stream": stream})

    async def take_slot(self) -> None:
        """Wait for a free slot (at most `slot_wait_s`); the caller releases it. A call still waiting then is
        the proxy's overload, not the upstream's slowness, and is never sent."""
        if not self.slots.locked():
            await self.slots.acquire()
            return
        try:
            async with asyncio.timeout(self.slot_wait_s):
                await self.slots.acquire()
        except TimeoutError:
            raise UpstreamError("the proxy has too many calls to the upstream model in flight; retry later",
                                status_code=503, code="upstream_busy",
                                detail=f"no free connection after {self.slot_wait_s:g} s") from None

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        await self.take_slot()
        started, opened = time.monotonic(), False
        try:
            async with self.session.post(self.url, data=self.body(body, stream=False), headers=self.headers,
                                         timeout=self.complete_timeout, proxy=self.proxy,
                                         allow_redirects=False) as response:
                opened, status = True, response.status
                raw, whole = await read_body(response, MAX_REPLY_BYTES if status == 200 else MAX_ERROR_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, time.monotonic() - started, self.cfg.timeout_s, started=opened) from None
        finally:
            self.slots.release()
        if status != 200:
            raise http_error(status, raw)
        if not whole:
            raise too_large(MAX_REPLY_BYTES)
        try:
            data = loads(raw)
        except JSONReadError as exc:
            raise UpstreamError("the upstream answered something that is not JSON",
                                detail=f"{exc.reason}: {raw[:ERROR_TEXT_CHARS].decode('utf-8', 'replace')}") from None
        return chat_completion(data, raw)

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        """Closing this iterator early (aclose, or the task reading it cancelled) closes the connection."""
        await self.take_slot()
        started, opened = time.monotonic(), False
        try:
            async with self.session.post(self.url, data=self.body(body, stream=True), headers=self.headers,
                                         timeout=self.stream_timeout, proxy=self.proxy,
                                         allow_redirects=False) as response:
                if response.status != 200:
                    raise http_error(response.status, (await read_body(response, MAX_ERROR_BYTES))[0])
                opened = True
                try:
                    async for chunk in chunks_from_lines(sse_lines(response.content.iter_any())):
                        yield chunk
                finally:
                    if not response.content.is_eof():
                        response.close()  # stopped early: this connection cannot serve another request
        except UpstreamError:
            raise
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            raise transport_error(exc, time.monotonic() - started, self.cfg.timeout_s, started=opened) from None
        finally:
            self.slots.release()

    async def ping(self) -> str | None:
        try:
            async with self.session.get(self.models_url, headers=self.headers, proxy=self.proxy,
                                        timeout=aiohttp.ClientTimeout(total=3.0), allow_redirects=False) as response:
                status = response.status
        except TimeoutError:
            return f"{self.cfg.api_base} did not answer in time"
        except aiohttp.ClientError as exc:
            return f"cannot reach {self.cfg.api_base}: {exc}"
        if status in (401, 403):
            return f"{self.cfg.api_base} rejected the API key (HTTP {status})"
        if 300 <= status < 400:
            return f"{self.cfg.api_base} answered HTTP {status}, a redirect (the proxy does not follow one)"
        return None if status < 400 or status == 404 else f"{self.cfg.api_base} answered HTTP {status}"

    async def aclose(self) -> None:
        await self.session.close()
