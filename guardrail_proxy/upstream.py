"""The chat model behind the proxy: one small interface, two implementations.

`OpenAIUpstream` (upstream_http.py) is the fast path for an OpenAI-compatible server: the proxy's body over a
pooled raw HTTP client. `LitellmUpstream` reaches any provider litellm knows (openai/, hosted_vllm/, ollama/,
...) and translates. Both answer a completion as its JSON object (the upstream's own, or litellm's dump of it),
checked for shape, and a stream as chunks that are JSON objects too (sse_parse.Chunk), so provider types never
leak past here. The openai SDK is never imported by this module: litellm brings it along (47 MB and half a
second), and a server with only `provider: openai` upstreams and the raw classifier transport runs without it.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any, Protocol

from .config import UpstreamConfig
from .deadlines import timed_out
from .errors import UpstreamError
from .settings import prepare_litellm_import
from .sse_parse import Chunk, as_chunk
from .upstream_http import OpenAIUpstream, chat_completion, rejection

OPENAI_CHAT_PARAMS = frozenset({
    "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "modalities", "n", "parallel_tool_calls", "prediction",
    "presence_penalty", "reasoning_effort", "response_format", "seed", "service_tier", "stop", "store",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user",
    "web_search_options",
})


class Upstream(Protocol):
    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The completion's JSON object: a dict whose `choices` is a list of objects (upstream_http.chat_completion)."""
        ...

    def stream(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        """Chunks of a streamed completion, each a JSON object (sse_parse.chunk_shaped). Closing the iterator
        (aclose) closes the upstream response."""
        ...

    async def ping(self) -> str | None: ...

    async def aclose(self) -> None: ...


def as_upstream_error(exc: BaseException, elapsed_s: float, budget_s: float) -> UpstreamError:
    """`elapsed_s` is how long the call ran: a timeout error that came before the budget ran out means the
    connection failed (deadlines.py), which is a 502, not a 504. litellm raises the openai SDK's types (its own
    subclass them); the SDK is loaded whenever litellm is, so it is looked up, never imported, here."""
    openai: Any = sys.modules.get("openai")
    if openai is not None and isinstance(exc, openai.APITimeoutError) and timed_out(elapsed_s, budget_s):
        return UpstreamError("the upstream model did not answer in time", status_code=504,
                             code="upstream_timeout")
    if openai is not None and isinstance(exc, openai.APIConnectionError):
        return UpstreamError("cannot reach the upstream model", code="upstream_unavailable", detail=str(exc))
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(status, int) and 400 <= status < 500:
        # The upstream rejected the request: the same rule as the raw transport's (its status, a short message,
        # identifier-shaped type and code; a 401, 403 or 407 is about the proxy's credentials, a 502).
        body = getattr(exc, "body", None)
        upstream_type = body.get("type") if isinstance(body, dict) else None
        upstream_code = body.get("code") if isinstance(body, dict) else None
        return rejection(status, str(message), upstream_type, upstream_code)
    return UpstreamError("the upstream model failed", detail=f"{type(exc).__name__}: {message}")


async def probe_models(base_url: str, api_key: str | None) -> str | None:
    """None when GET {base_url}/models answers, else why not. Only litellm upstreams use it, and litellm has
    already loaded the SDK."""
    import openai  # deferred: see the module docstring

    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0, timeout=3.0)
    try:
        await client.models.list()
    except openai.APIStatusError as exc:
        if exc.status_code in (401, 403):
            return f"{base_url} rejected the API key (HTTP {exc.status_code})"
        return None if exc.status_code == 404 else f"{base_url} answered HTTP {exc.status_code}"
    except Exception as exc:
        return f"cannot reach {base_url}: {exc}"
    finally:
        await client.close()
    return None


class LitellmUpstream:
    def __init__(self, cfg: UpstreamConfig, api_key: str | None) -> None:
        self.cfg = cfg
        self.api_key = api_key
        prepare_litellm_import()
        litellm: Any = importlib.import_module("litellm")  # ~2 s: only when a route needs it
        litellm.suppress_debug_info = True  # no "Give Feedback" banners on stdout
        logging.getLogger("LiteLLM").setLevel(logging.WARNING)  # one INFO line per call otherwise
        self.litellm = litellm

    def params(self, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        # Only OpenAI chat parameters become litellm arguments; anything else travels in extra_body.
        # litellm also reads control arguments (api_base, base_url, api_key, headers, ...) from its keyword
        # arguments, so spreading the client's body into them would let a client send our key elsewhere.
        known = {k: v for k, v in body.items() if k in OPENAI_CHAT_PARAMS}
        extra = {k: v for k, v in body.items() if k not in OPENAI_CHAT_PARAMS and k not in ("model", "stream")}
        params: dict[str, Any] = {**known, "model": self.cfg.model, "timeout": self.cfg.timeout_s,
                                  "num_retries": 0, "stream": stream}
        if extra:
            params["extra_body"] = extra
        if self.cfg.api_base:
            params["api_base"] = self.cfg.api_base
        if self.api_key:
            params["api_key"] = self.api_key
        elif self.cfg.api_base:
            params["api_key"] = "unused"  # a self-hosted server with no auth; litellm insists on a key
        return params

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        try:
            response = await self.litellm.acompletion(**self.params(body, stream=False))
        except Exception as exc:
            raise as_upstream_error(exc, time.monotonic() - started, self.cfg.timeout_s) from exc
        return chat_completion(response.model_dump(mode="json", warnings=False))

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        started = time.monotonic()
        try:
            response = await self.litellm.acompletion(**self.params(body, stream=True))
        except Exception as exc:
            raise as_upstream_error(exc, time.monotonic() - started, self.cfg.timeout_s) from exc
        try:
            async for chunk in response:
                yield litellm_chunk(chunk.model_dump(mode="json", exclude_unset=True, warnings=False))
        except UpstreamError:
            raise
        except Exception as exc:
            raise as_upstream_error(exc, time.monotonic() - started, self.cfg.timeout_s) from exc
        finally:
            await response.aclose()

    async def ping(self) -> str | None:
        if not self.cfg.api_base:
            return None  # a hosted provider with no base URL to probe; the first call will tell
        return await probe_models(self.cfg.api_base, self.api_key)

    async def aclose(self) -> None:
        """Stop litellm's background logging worker and close its cached HTTP clients on this loop.

        Both are process-wide in litellm; left running, the loop ends with "Task was destroyed but it is
        pending" and unclosed sessions. The worker lives in a module litellm does not export, so a release
        that moves it is reported as a warning here (and by the suite) rather than breaking shutdown.
        """
        try:
            worker = importlib.import_module("litellm.litellm_core_utils.logging_worker").GLOBAL_LOGGING_WORKER
            await worker.stop(discard_pending=True, timeout=2.0)
        except (ImportError, AttributeError) as exc:
            warnings.warn(f"cannot stop litellm's logging worker: {exc}", RuntimeWarning, stacklevel=1)
        await self.litellm.close_litellm_async_clients()


def litellm_chunk(data: Any) -> Chunk:
    """A chunk litellm built, as its JSON object, held to the shape a raw upstream's chunk is (sse_parse)."""
    chunk = as_chunk(data)
    if chunk is None:
        raise UpstreamError("litellm produced a chunk that is not a chat.completion.chunk", detail=repr(data)[:500])
    return chunk


def build_upstream(cfg: UpstreamConfig, api_key: str | None) -> Upstream:
    if cfg.provider == "openai":
        return OpenAIUpstream(cfg, api_key)
    return LitellmUpstream(cfg, api_key)
