"""The chat model behind the proxy: one small interface, two implementations.

`LitellmUpstream` reaches any provider litellm knows (openai/, hosted_vllm/, ollama/, ...). `OpenAIUpstream`
is the fast path for an OpenAI-compatible server (about a third of litellm's CPU per call). Both return
the openai SDK's `ChatCompletion`, so provider types never leak past this module.
"""

from __future__ import annotations

import importlib
import logging
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any, Protocol

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from .config import UpstreamConfig
from .deadlines import timed_out
from .errors import UpstreamError
from .settings import prepare_litellm_import
from .sse_parse import chunks_from_lines

OPENAI_CHAT_PARAMS = frozenset({
    "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "modalities", "n", "parallel_tool_calls", "prediction",
    "presence_penalty", "reasoning_effort", "response_format", "seed", "service_tier", "stop", "store",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user",
    "web_search_options",
})


class Upstream(Protocol):
    async def complete(self, body: dict[str, Any]) -> ChatCompletion: ...

    def stream(self, body: dict[str, Any]) -> AsyncIterator[ChatCompletionChunk]:
        """Chunks of a streamed completion. Closing the iterator (aclose) closes the upstream response."""
        ...

    async def ping(self) -> str | None: ...

    async def aclose(self) -> None: ...


def as_upstream_error(exc: BaseException, elapsed_s: float, budget_s: float) -> UpstreamError:
    """`elapsed_s` is how long the call ran: a timeout error that came before the budget ran out means the
    connection failed (deadlines.py), which is a 502, not a 504."""
    if isinstance(exc, openai.APITimeoutError) and timed_out(elapsed_s, budget_s):
        return UpstreamError("the upstream model did not answer in time", status_code=504,
                             code="upstream_timeout")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamError("cannot reach the upstream model", code="upstream_unavailable", detail=str(exc))
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(status, int) and 400 <= status < 500:
        # The upstream rejected the request itself: the client should see that, status and all.
        body = getattr(exc, "body", None)
        upstream_type = body.get("type") if isinstance(body, dict) else None
        upstream_code = body.get("code") if isinstance(body, dict) else None
        return UpstreamError(f"upstream model: {message}", status_code=status,
                             error_type=upstream_type or "invalid_request_error",
                             code=upstream_code or "upstream_rejected")
    return UpstreamError("the upstream model failed", detail=f"{type(exc).__name__}: {message}")


async def probe_models(base_url: str, api_key: str | None) -> str | None:
    """None when GET {base_url}/models answers, else why not."""
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


class OpenAIUpstream:
    def __init__(self, cfg: UpstreamConfig, api_key: str | None) -> None:
        self.cfg = cfg
        self.api_key = api_key
        self.client = openai.AsyncOpenAI(
            base_url=cfg.api_base, api_key=api_key or "unused", max_retries=0, timeout=cfg.timeout_s,
            http_client=openai.DefaultAioHttpClient(),  # about a quarter more req/s than the default client
        )

    async def complete(self, body: dict[str, Any]) -> ChatCompletion:
        started = time.monotonic()
        try:
            return await self.client.chat.completions.create(**self.params(body, stream=False))
        except Exception as exc:
            raise as_upstream_error(exc, time.monotonic() - started, self.cfg.timeout_s) from exc

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[ChatCompletionChunk]:
        # The SDK's own stream builds each chunk with a generic constructor; sse_parse is ~20x cheaper.
        request = self.client.chat.completions.with_streaming_response.create(**self.params(body, stream=True))
        started = time.monotonic()
        try:
            async with request as response:
                async for chunk in chunks_from_lines(response.iter_lines()):
                    yield chunk
        except UpstreamError:
            raise
        except Exception as exc:  # malformed events and dropped connections too, not only SDK errors
            raise as_upstream_error(exc, time.monotonic() - started, self.cfg.timeout_s) from exc

    def params(self, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        # extra_body sends every other field exactly as the client wrote it, known or not.
        extra = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
        return {"model": self.cfg.model, "messages": body["messages"], "stream": stream, "extra_body": extra}

    async def ping(self) -> str | None:
        return await probe_models(str(self.cfg.api_base), self.api_key)

    async def aclose(self) -> None:
        await self.client.close()


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

    async def complete(self, body: dict[str, Any]) -> ChatCompletion:
        started = time.monotonic()
        try:
            response = await self.litellm.acompletion(**self.params(body, stream=False))
        except Exception as exc:
            raise as_upstream_error(exc, time.monotonic() - started, self.cfg.timeout_s) from exc
        return ChatCompletion.model_validate(response.model_dump())

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[ChatCompletionChunk]:
        started = time.monotonic()
        try:
            response = await self.litellm.acompletion(**self.params(body, stream=True))
        except Exception as exc:
            raise as_upstream_error(exc, time.monotonic() - started, self.cfg.timeout_s) from exc
        try:
            async for chunk in response:
                yield ChatCompletionChunk.model_validate(chunk.model_dump())
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


def build_upstream(cfg: UpstreamConfig, api_key: str | None) -> Upstream:
    if cfg.provider == "openai":
        return OpenAIUpstream(cfg, api_key)
    return LitellmUpstream(cfg, api_key)
