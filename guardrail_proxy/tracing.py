"""OpenTelemetry traces (the optional `otel` extra): a SERVER span per request, and in it a CLIENT span for each
classifier and upstream call.

Model calls carry the GenAI semantic conventions (gen_ai.*, server.*, error.type); what the guardrail decided is
under our own `guardrail.*`. A span holds no text: no message content, reasoning, rationale, classifier answer or
exception message (a peer's error can quote the prompt). The audit record keeps those; `guardrail.request.id`
leads there. opentelemetry is imported only when tracing is on, and each app gets a TracerProvider of its own
(the global one is never set), so several apps in one process keep their spans apart.
"""

from __future__ import annotations

import asyncio
import importlib
import time
import traceback
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .audit import AuditRecord
from .classifier import Classification, Classifier
from .config import ClassifierConfig, TracingConfig, UpstreamConfig
from .decisions import ACTION_STRENGTH
from .errors import ClassifierError, ConfigError, GuardrailProxyError
from .policies import Policy
from .responses import shown_decision
from .sse_parse import Chunk
from .upstream import Upstream

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanKind, StatusCode
    from opentelemetry.util.types import AttributeValue

    Attributes = dict[str, AttributeValue]

# litellm's provider prefix -> gen_ai.provider.name, where the conventions spell the provider otherwise.
LITELLM_PROVIDERS = MappingProxyType({"azure": "azure.ai.openai", "bedrock": "aws.bedrock", "gemini": "gcp.gemini",
                                      "vertex_ai": "gcp.vertex_ai", "mistral": "mistral_ai", "xai": "x_ai"})
# Request fields kept as gen_ai.request.<key>: numbers only, never text a client wrote.
REQUEST_NUMBERS: Mapping[str, tuple[str, type[int] | type[float]]] = MappingProxyType({
    "max_completion_tokens": ("max_tokens", int), "max_tokens": ("max_tokens", int), "seed": ("seed", int),
    "temperature": ("temperature", float), "top_p": ("top_p", float), "n": ("choice.count", int)})
LABEL_CHARS = 64  # a JSON policy's label is the classifier's own policy_category: kept short


class Tracing:
    """Spans for one app. Made by `build`; `aclose` flushes and stops its provider."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import context, trace  # the optional extra; build() has shown it is installed
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider, self.tracer = provider, provider.get_tracer("guardrail_proxy")
        self.server_kind, self.client_kind, self.error = trace.SpanKind.SERVER, trace.SpanKind.CLIENT, \
            trace.StatusCode.ERROR
        self.in_context, self.current = trace.set_span_in_context, context.get_current
        self.attach, self.detach, self.propagator = context.attach, context.detach, TraceContextTextMapPropagator()

    @classmethod
    def build(cls, cfg: TracingConfig, source: str, exporter: SpanExporter | None = None) -> Tracing | None:
        """None when tracing is off. `exporter` (tests) replaces OTLP/HTTP and gets each span as it ends."""
        if not cfg.enabled:
            return None
        require_sdk(cfg, source)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(cfg.sample_ratio)),
                                  resource=Resource.create({"service.name": cfg.service_name}),
                                  shutdown_on_exit=False)  # aclose shuts it down: no atexit hook per app
        # Batches leave from the SDK's own thread, off the request path.
        provider.add_span_processor(SimpleSpanProcessor(exporter) if exporter is not None
                                    else BatchSpanProcessor(OTLPSpanExporter(endpoint=cfg.endpoint)))
        return cls(provider)

    @contextmanager
    def request(self, name: str, http_method: str, path: str,
                headers: Mapping[str, str] | None = None) -> Iterator[RequestSpan]:
        """The SERVER span of one request, current until it ends so the calls below nest in it. Given the
        request's `headers`, a W3C traceparent there makes it a child of the caller's span."""
        parent = self.propagator.extract(headers) if headers is not None else None
        attributes: Attributes = {"http.request.method": http_method, "url.path": path}
        with self.span(name, self.server_kind, attributes, parent=parent) as span:
            yield RequestSpan(span, self.error)

    def classifier(self, inner: Classifier, name: str, cfg: ClassifierConfig) -> Classifier:
        return TracedClassifier(inner, self, name, cfg)

    def upstream(self, inner: Upstream, name: str, cfg: UpstreamConfig) -> Upstream:
        return TracedUpstream(inner, self, name, cfg)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.provider.shutdown)  # the SDK blocks while it sends what is queued

    @contextmanager
    def span(self, name: str, kind: SpanKind, attributes: Attributes, *, parent: Context | None = None,
             current: bool = True) -> Iterator[Span]:
        """A span that notes a failure (`record_failure`) or a cancellation and lets it through unchanged. A
        current span may end in another task than the one that entered it (a streamed reply ends in Starlette's
        body task); that task's context is a copy, not ours to restore."""
        span = self.tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        task, token = running_task(), self.attach(self.in_context(span)) if current else None
        try:
            yield span
        except (asyncio.CancelledError, GeneratorExit):
            span.set_attribute("guardrail.cancelled", True)
            raise
        except Exception as exc:
            record_failure(span, exc, self.error)
            raise
        finally:
            if token is not None and running_task() is task:
                self.detach(token)
            span.end()


def require_sdk(cfg: TracingConfig, source: str) -> None:
    """With tracing on, the OpenTelemetry extra must be installed: ConfigError (file, field, the pip line) if not.
    `serve` calls it before anything listens; `Tracing.build` before it imports the SDK."""
    if not cfg.enabled:
        return
    try:
        for module in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter"):
            importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(source, "tracing.enabled", f"traces need the OpenTelemetry extra ({exc.name} is not "
                                                     "installed): pip install 'guardrail-proxy[otel]'") from None


class RequestSpan:
    def __init__(self, span: Span, error: StatusCode) -> None:
        self.span, self.error = span, error

    def finish(self, record: AuditRecord) -> None:
        """The request's outcome, from its audit record; an answer of 500 or more is an error."""
        if self.span.is_recording():
            self.span.set_attributes(request_attributes(record))
            if record.status >= 500:
                self.span.set_attribute("error.type", str(record.status))
                self.span.set_status(self.error, f"HTTP {record.status}")


class TracedClassifier:
    def __init__(self, inner: Classifier, tracing: Tracing, name: str, cfg: ClassifierConfig) -> None:
        self.inner, self.tracing, self.span_name = inner, tracing, f"chat {cfg.model}"
        # provider "openai": whoever serves the classifier, it is spoken to through the OpenAI chat API.
        self.attributes: Attributes = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": cfg.model,
            "gen_ai.request.reasoning.level": cfg.reasoning_effort, **server_attributes(cfg.base_url),
            "guardrail.classifier.name": name}
        if cfg.max_tokens is not None:
            self.attributes["gen_ai.request.max_tokens"] = cfg.max_tokens

    async def classify(self, policy: Policy, content: str) -> Classification:
        attributes = {**self.attributes, "guardrail.policy.id": policy.id, "guardrail.policy.digest": policy.digest}
        with self.tracing.span(self.span_name, self.tracing.client_kind, attributes) as span:
            try:
                result = await self.inner.classify(policy, content)
            except Exception:
                span.set_attribute("guardrail.verdict", "error")
                raise
            answer = result.answer
            span.set_attributes({"guardrail.verdict": "violation" if answer.violation else "pass",
                                 "guardrail.severity": answer.severity, "guardrail.cached": result.cached})
            if answer.label is not None:
                span.set_attribute("guardrail.label", answer.label[:LABEL_CHARS])
            if not result.cached:  # an answer from memory spent no tokens
                span.set_attributes(usage_attributes(result))
            return result

    def knows(self, policy: Policy, content: str) -> bool:
        return self.inner.knows(policy, content)

    async def ping(self) -> str | None:
        return await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()


class TracedUpstream:
    def __init__(self, inner: Upstream, tracing: Tracing, name: str, cfg: UpstreamConfig) -> None:
        provider, model = upstream_identity(cfg)
        self.inner, self.tracing, self.span_name = inner, tracing, f"chat {model}"
        self.attributes: Attributes = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
            **server_attributes(cfg.api_base), "guardrail.upstream.name": name}

    def request_attributes(self, body: dict[str, Any], stream: bool) -> Attributes:
        attributes = {**self.attributes, **({"gen_ai.request.stream": True} if stream else {})}
        for field, (key, kind) in REQUEST_NUMBERS.items():
            value = body.get(field)
            if isinstance(value, kind | int) and not isinstance(value, bool) and (key, value) != ("choice.count", 1):
                attributes.setdefault(f"gen_ai.request.{key}", kind(value))  # one choice, the default, is left out
        return attributes

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.tracing.span(self.span_name, self.tracing.client_kind, self.request_attributes(body, False)) as span:
            reply = await self.inner.complete(body)  # the completion's JSON object (upstream.Upstream)
            reasons = [choice.get("finish_reason") for choice in reply["choices"]]
            span.set_attributes(response_attributes(reply.get("id"), reply.get("model"), reasons, reply.get("usage")))
            return reply

    def stream(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        return self.relay(body, self.tracing.current())  # the parent now: another task may read the chunks

    async def relay(self, body: dict[str, Any], parent: Context) -> AsyncIterator[Chunk]:
        """The span runs from the first read to the stream's end, however it ends. It is never current: the
        reader's context can change between reads, and nothing nests below a model call."""
        source, started, first = self.inner.stream(body), time.monotonic(), 0.0
        chunk_id, model, usage, finish = "", "", None, dict[int, Any]()
        with self.tracing.span(self.span_name, self.tracing.client_kind, self.request_attributes(body, True),
                               parent=parent, current=False) as span:
            try:
                async for chunk in source:  # a JSON object (sse_parse.Chunk), read before the relay edits it
                    first = first or time.monotonic()
                    chunk_id, model = chunk_id or chunk["id"], model or chunk["model"]
                    usage = chunk.get("usage") or usage
                    for choice in chunk["choices"]:
                        if choice.get("finish_reason") or choice["index"] not in finish:
                            finish[choice["index"]] = choice.get("finish_reason")
                    yield chunk
            finally:
                span.set_attributes(response_attributes(chunk_id, model, [finish[i] for i in sorted(finish)], usage))
                if first:
                    span.set_attribute("gen_ai.response.time_to_first_chunk", first - started)
                if (aclose := getattr(source, "aclose", None)) is not None:
                    await aclose()  # closing the upstream's iterator closes its response

    async def ping(self) -> str | None:
        return await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()


def record_failure(span: Span, exc: BaseException, error: StatusCode) -> None:
    """Error status, error.type and an exception event that name the fault without its message or its cause's."""
    kind = type(exc)
    summary = kind.__name__
    attributes: Attributes = {"error.type": f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins.")}
    if isinstance(exc, ClassifierError):
        summary, attributes["guardrail.error.kind"] = f"{summary}: {exc.kind}", exc.kind
    elif isinstance(exc, GuardrailProxyError):
        summary, attributes["guardrail.error.code"] = f"{summary}: {exc.code} (HTTP {exc.status_code})", exc.code or ""
    span.set_attributes(attributes)
    span.record_exception(exc, {"exception.message": summary,
                                "exception.stacktrace": "".join(traceback.format_tb(exc.__traceback__))})
    span.set_status(error, summary)


def request_attributes(record: AuditRecord) -> Attributes:
    triggered = [t for d in record.decisions for t in d.triggered]
    attributes: Attributes = {
        "guardrail.request.id": record.request_id, "guardrail.route": record.route, "guardrail.model": record.model,
        "guardrail.stream": record.stream, "guardrail.decision": record.decision,
        "guardrail.unchecked": any(d.unchecked for d in record.decisions),
        "guardrail.policies.violated": unique(t.verdict.policy_id for t in triggered),
        "guardrail.upstream.called": record.upstream_called,
        "guardrail.upstream.cancelled": record.upstream_cancelled, "http.response.status_code": record.status}
    if record.client:
        attributes["guardrail.client"] = record.client
    if triggered:
        attributes["guardrail.action"] = max(triggered, key=lambda t: ACTION_STRENGTH[t.action]).action.value
    for phase in ("input", "output"):
        if decisions := [d for d in record.decisions if d.phase == phase]:
            hits = [t.verdict for d in decisions for t in d.triggered]
            attributes[f"guardrail.{phase}.decision"] = shown_decision(decisions)
            attributes[f"guardrail.{phase}.checks"] = sum(len(d.outcomes) for d in decisions)
            attributes[f"guardrail.{phase}.violated"] = unique(v.policy_id for v in hits)
            attributes[f"guardrail.{phase}.labels"] = unique((v.label or "")[:LABEL_CHARS] for v in hits)
            attributes[f"guardrail.{phase}.failed"] = unique(f.policy_id for d in decisions for f in d.failures)
    return attributes


def response_attributes(response_id: object, model: object, finish_reasons: list[Any], usage: object) -> Attributes:
    attributes: Attributes = {}
    if isinstance(response_id, str) and response_id:
        attributes["gen_ai.response.id"] = response_id
    if isinstance(model, str) and model:
        attributes["gen_ai.response.model"] = model
    if finish_reasons:  # the conventions' "error" for a choice that never finished (a failed or closed stream)
        attributes["gen_ai.response.finish_reasons"] = tuple(r if isinstance(r, str) and r else "error"
                                                             for r in finish_reasons)
    return {**attributes, **usage_attributes(usage)}


def usage_attributes(usage: object) -> Attributes:
    """Token counts of anything that has them as prompt_tokens and completion_tokens (a usage, its JSON object,
    a Classification)."""
    read = usage.get if isinstance(usage, dict) else lambda name: getattr(usage, name, None)
    pairs = (("gen_ai.usage.input_tokens", read("prompt_tokens")),
             ("gen_ai.usage.output_tokens", read("completion_tokens")))
    return {key: value for key, value in pairs if isinstance(value, int) and not isinstance(value, bool)}


def upstream_identity(cfg: UpstreamConfig) -> tuple[str, str]:
    """(gen_ai.provider.name, gen_ai.request.model). litellm's `provider/model` names the provider first; with
    no prefix litellm guesses it from the model's name, a guess not repeated here."""
    if cfg.provider == "openai":
        return "openai", cfg.model
    prefix, slash, model = cfg.model.partition("/")
    return (LITELLM_PROVIDERS.get(prefix, prefix), model) if slash else ("litellm", cfg.model)


def server_attributes(url: str | None) -> Attributes:
    parts = urlsplit(url or "")
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port out of range
        port = None
    found: Attributes = {"server.address": parts.hostname} if parts.hostname else {}
    return {**found, "server.port": port} if found and port else found


def unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def running_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None
