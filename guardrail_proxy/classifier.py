"""The gpt-oss-safeguard client: request building, retries under a total deadline, strict parsing.

Request contract (see SAFEGUARD.md): the policy is the system message, the content the user message,
`reasoning_effort` is a request parameter, and `max_tokens` is left unset unless configured. The answer
is in `message.content`; the reasoning in `message.reasoning` (current vLLM) or `reasoning_content`
(older vLLM and some providers).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from .answers import Answer, parse_answer
from .config import ClassifierConfig
from .deadlines import timed_out
from .errors import ClassifierError
from .policies import Policy

if TYPE_CHECKING:
    import openai


def loaded_openai() -> Any:
    """The openai package when something has imported it, else None. Only the SDK transport below, litellm and
    the CLI tools import it (47 MB and half a second a server on the raw transports never pays), and an SDK
    exception cannot exist before the package is loaded: the fault mappings look it up, never import it."""
    return sys.modules.get("openai")


@dataclass(frozen=True)
class Classification:
    answer: Answer
    reasoning: str | None
    raw: str
    latency_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False


class Classifier(Protocol):
    """Anything that can judge one text against one policy. Raises ClassifierError on any fault."""

    async def classify(self, policy: Policy, content: str) -> Classification: ...

    def knows(self, policy: Policy, content: str) -> bool:
        """True when classify would answer from memory, without a call (verdict_cache.py)."""
        ...

    async def ping(self) -> str | None: ...

    async def aclose(self) -> None: ...


def build_messages(policy: Policy, content: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": policy.text}, {"role": "user", "content": content}]


def build_request(cfg: ClassifierConfig, policy: Policy, content: str) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": cfg.model,
        "messages": build_messages(policy, content),
        "reasoning_effort": cfg.reasoning_effort,
    }
    if cfg.max_tokens is not None:
        request["max_tokens"] = cfg.max_tokens
    return request


@dataclass(frozen=True)
class Reply:
    """What a transport got back from a 200 answer, before the verdict is parsed."""

    content: str | None
    reasoning: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def reply_from_json(data: object) -> Reply:
    """Read a chat.completion body strictly; a wrong shape is an unparseable answer, never a crash."""
    try:
        message = data["choices"][0]["message"]  # type: ignore[index]
        content = message.get("content")
        reasoning = next((v for k in ("reasoning", "reasoning_content")
                          if isinstance(v := message.get(k), str) and v), None)
    except (AttributeError, IndexError, KeyError, TypeError):
        raise ClassifierError("the classifier's response has no choices[0].message", kind="malformed") from None
    if content is not None and not isinstance(content, str):
        raise ClassifierError("the classifier's message content is not text", kind="malformed")
    usage = data.get("usage") if isinstance(data, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    return Reply(content, reasoning, usage.get("prompt_tokens"), usage.get("completion_tokens"))


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ClassifierError):
        return exc.retryable
    if (openai := loaded_openai()) is None:
        return False
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code == 429 or exc.status_code >= 500)


PING_TIMEOUT_S = 3.0
# Statuses by which the classifier refuses this one text (too long for its context, malformed): a fact about
# the request, not an outage, so it must never turn into a fail-open pass.
REJECTING_STATUSES = frozenset({400, 413, 422})


def http_kind(status: int) -> str:
    """rejected: it refused this text; overload: it is too busy (429); http: anything else, an outage."""
    if status == 429:
        return "overload"
    return "rejected" if status in REJECTING_STATUSES else "http"


def as_classifier_error(exc: BaseException) -> ClassifierError:
    """Map an SDK or asyncio fault by its public type only: APITimeoutError is a subclass of
    APIConnectionError, so it is tested first (a too-early one was already turned into a transport
    error by the caller's clock); any other connection error means nothing answered."""
    openai = loaded_openai()
    if isinstance(exc, TimeoutError) or (openai and isinstance(exc, openai.APITimeoutError)):
        return ClassifierError("the classifier did not answer in time", kind="timeout")
    if openai and isinstance(exc, openai.APIConnectionError):
        return ClassifierError(f"cannot connect to the classifier: {exc}", kind="transport")
    if openai and isinstance(exc, openai.APIStatusError):
        return ClassifierError(f"the classifier answered HTTP {exc.status_code}: {exc.message}",
                               kind=http_kind(exc.status_code))
    return ClassifierError(f"classifier call failed: {exc!r}", kind="transport")


class RetryingClassifier:
    """Retries, the total deadline, the concurrency limit and strict parsing; transports supply `send`."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        self.cfg = cfg
        self.limit = asyncio.Semaphore(cfg.max_concurrency)
        self.waiting = 0  # calls queued behind the concurrency limit
        self.active = 0  # calls holding a slot

    def admit(self) -> None:
        """Refuse a call at once when the queue behind the concurrency limit is full: overload is answered
        with a retry-later, never left to become timeouts that a fail-open route would pass unchecked."""
        if self.limit.locked() and self.waiting >= self.cfg.max_queue:
            raise ClassifierError(f"the classifier queue is full ({self.cfg.max_queue} calls waiting)",
                                  kind="overload")

    async def send(self, request: dict[str, Any], timeout_s: float) -> Reply:
        raise NotImplementedError

    def load(self) -> tuple[int, int]:
        """(calls in flight, calls queued behind the concurrency limit), for the metrics."""
        return self.active, self.waiting

    def knows(self, policy: Policy, content: str) -> bool:
        return False

    def spare(self) -> int:
        """Slots no call holds or waits for at this moment (0 while any call waits for one): the room that work
        which must never delay a counted call may look at (shadow_run.py)."""
        return 0 if self.waiting else self.cfg.max_concurrency - self.active

    async def classify(self, policy: Policy, content: str, *, slot: bool = True) -> Classification:
        """`slot=False`: a call outside the concurrency limit (a shadow call, shadow_run.py), which never holds a
        slot and so never makes a counted call wait or be refused; its caller bounds how many run."""
        started = time.perf_counter()
        request = build_request(self.cfg, policy, content)
        if slot:
            self.admit()
            # Waiting for a slot and the call itself have a budget of timeout_s each: a slot that does not free
            # up in time is load (overload), a call that does not answer in time is the classifier (timeout),
            # and time spent in our own queue never eats into the call's budget.
            self.waiting += 1
            try:
                async with asyncio.timeout(self.cfg.timeout_s):
                    await self.limit.acquire()
            except TimeoutError:
                raise ClassifierError("no classifier slot freed up in time", kind="overload") from None
            finally:
                self.waiting -= 1
            self.active += 1
        try:
            async with asyncio.timeout(self.cfg.timeout_s):
                reply = await self._send_with_retries(request, time.monotonic() + self.cfg.timeout_s)
        except ClassifierError:
            raise
        except Exception as exc:  # every transport/HTTP fault becomes a classifier error
            raise as_classifier_error(exc) from exc
        finally:
            if slot:
                self.active -= 1
                self.limit.release()
        answer = parse_answer(reply.content, policy)
        return Classification(
            answer=answer,
            reasoning=reply.reasoning,
            raw=reply.content or "",
            latency_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
        )

    async def _send_with_retries(self, request: dict[str, Any], deadline: float) -> Reply:
        # The deadline is enforced here as well as by the caller's asyncio.timeout: a transport's own
        # timer firing at the same moment can swallow that cancellation, and retries must not outlive it.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.cfg.retries + 1) | stop_after_delay(self.cfg.timeout_s),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
            retry=retry_if_exception(is_retryable),
            reraise=True,
        )
        per_attempt = self.cfg.attempt_timeout_s or self.cfg.timeout_s
        async for attempt in retrying:
            with attempt:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClassifierError("the classifier did not answer in time", kind="timeout")
                return await self.send(request, min(per_attempt, remaining))
        raise AssertionError("unreachable: tenacity re-raises the last error")


class SafeguardClient(RetryingClassifier):
    """Calls an OpenAI-compatible endpoint with the official SDK over its pooled aiohttp client.

    That client reports a refused connection as APITimeoutError; `deadlines.timed_out` tells the two
    apart by the clock, so a dead classifier is never audited, measured or reported by /readyz as slow.
    """

    def __init__(self, cfg: ClassifierConfig, api_key: str | None,
                 client: openai.AsyncOpenAI | None = None) -> None:
        import openai  # this transport only (loaded_openai)

        super().__init__(cfg)
        self.sdk = openai
        self.client = client or openai.AsyncOpenAI(
            base_url=cfg.base_url,
            api_key=api_key or "unused",
            max_retries=0,  # retries are ours, under one total deadline
            timeout=cfg.attempt_timeout_s or cfg.timeout_s,
            http_client=openai.DefaultAioHttpClient(),
        )

    async def send(self, request: dict[str, Any], timeout_s: float) -> Reply:
        started = time.monotonic()
        try:
            response = await self.client.chat.completions.with_raw_response.create(**request, timeout=timeout_s)
        except self.sdk.APITimeoutError as exc:
            if timed_out(time.monotonic() - started, timeout_s):
                raise
            raise ClassifierError(f"cannot connect to the classifier: {exc}", kind="transport",
                                  retryable=True) from None
        try:
            data = json.loads(response.http_response.content)
        except ValueError:
            raise ClassifierError("the classifier's response is not JSON", kind="malformed") from None
        return reply_from_json(data)

    async def ping(self) -> str | None:
        """None when the endpoint answers GET /models, else why not."""
        started = time.monotonic()
        try:
            await self.client.models.list(timeout=PING_TIMEOUT_S)
        except self.sdk.NotFoundError:
            return None  # it answered; some OpenAI-compatible servers have no /models
        except self.sdk.APITimeoutError as exc:
            if timed_out(time.monotonic() - started, PING_TIMEOUT_S):
                return as_classifier_error(exc).message
            return f"cannot connect to the classifier: {exc}"
        except Exception as exc:
            return as_classifier_error(exc).message
        return None

    async def aclose(self) -> None:
        await self.client.close()
