"""Traces against the real stand-in servers: classifier and upstream spans, nesting under a request span, the
request's attributes from its audit record, and no text of the conversation in any span."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SELFHARM_POLICY, VIOLENCE_POLICY, free_port, user
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from guardrail_proxy.audit import AuditRecord
from guardrail_proxy.classifier_factory import build_classifier
from guardrail_proxy.config import ClassifierConfig, PolicyRule, RouteConfig, TracingConfig, UpstreamConfig
from guardrail_proxy.decisions import CheckFailure, Verdict, combine
from guardrail_proxy.errors import ClassifierError, UpstreamError
from guardrail_proxy.policies import parse_policy
from guardrail_proxy.standins.safeguard import Rule
from guardrail_proxy.streaming import ChunkFeed
from guardrail_proxy.tracing import Tracing
from guardrail_proxy.upstream import build_upstream
from guardrail_proxy.verdict_cache import CachingClassifier

ROOT = Path(__file__).resolve().parent.parent
VIOLENCE = parse_policy(VIOLENCE_POLICY, "violence.md")
SELFHARM = parse_policy(SELFHARM_POLICY, "selfharm.md")
SECRET = "zebra-quartz-7781"  # in every prompt here; must never show up in a span
PROMPT = f"how do I sharpen a knife, asks {SECRET}"
SAFEGUARD_MODEL = "openai/gpt-oss-safeguard-20b"


@pytest.fixture
async def traced() -> AsyncIterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracing = Tracing.build(TracingConfig(enabled=True), "proxy.yaml", exporter)
    assert tracing is not None
    yield tracing, exporter
    await tracing.aclose()


def classifier_cfg(url: str, transport: str = "openai", **extra: Any) -> ClassifierConfig:
    return ClassifierConfig(base_url=f"{url}/v1", transport=transport, timeout_s=5, **extra)  # type: ignore[arg-type]


def upstream_cfg(url: str) -> UpstreamConfig:
    return UpstreamConfig(provider="openai", model="stand-in-chat", api_base=f"{url}/v1")


def only(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def texts_in(spans: tuple[ReadableSpan, ...]) -> list[str]:
    """Every string a span carries: name, attribute values, event attributes, status description."""
    found: list[str] = []
    for span in spans:
        found += [span.name, span.status.description or ""]
        maps = [span.attributes or {}] + [event.attributes or {} for event in span.events]
        for values in maps:
            for value in values.values():
                found += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
    return found


@pytest.mark.parametrize("transport", ["openai", "aiohttp"])
async def test_classifier_span_for_a_violation(traced, safeguard, transport):
    tracing, exporter = traced
    behaviour, server = safeguard
    behaviour.rules.append(Rule("knife", 3))
    cfg = classifier_cfg(server.url, transport)
    classifier = tracing.classifier(build_classifier(cfg, None), "default", cfg)
    result = await classifier.classify(VIOLENCE, PROMPT)
    await classifier.aclose()
    assert result.answer.label == "TV3"  # the answer passes through untouched
    span = only(exporter)
    assert (span.name, span.kind, span.status.status_code) == (f"chat {SAFEGUARD_MODEL}", SpanKind.CLIENT,
                                                               StatusCode.UNSET)
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": SAFEGUARD_MODEL,
        "gen_ai.request.reasoning.level": "low", "server.address": "127.0.0.1", "server.port": server.port,
        "guardrail.classifier.name": "default", "guardrail.policy.id": "violence",
        "guardrail.policy.digest": VIOLENCE.digest, "guardrail.verdict": "violation", "guardrail.severity": 3,
        "guardrail.label": "TV3", "guardrail.cached": False,
        "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20,
    }


async def test_classifier_span_for_a_pass_and_a_cached_answer(traced, safeguard):
    tracing, exporter = traced
    _, server = safeguard
    cfg = classifier_cfg(server.url)
    # Outside the cache, a span per check says whether the answer came from memory.
    classifier = CachingClassifier(build_classifier(cfg, None), 10)
    traced_classifier = tracing.classifier(classifier, "default", cfg)
    await traced_classifier.classify(SELFHARM, "hello there")
    await traced_classifier.classify(SELFHARM, "hello there")
    await traced_classifier.aclose()
    first, second = exporter.get_finished_spans()
    for span in (first, second):
        assert span.attributes["guardrail.verdict"] == "pass"
        assert span.attributes["guardrail.label"] == "0"
        assert span.attributes["guardrail.policy.id"] == "selfharm"
    assert first.attributes["guardrail.cached"] is False and first.attributes["gen_ai.usage.input_tokens"] == 100
    assert second.attributes["guardrail.cached"] is True
    assert "gen_ai.usage.input_tokens" not in second.attributes  # an answer from memory spent no tokens


@pytest.mark.parametrize("fault", ["http", "transport", "unparseable"])
async def test_classifier_span_for_a_failure(traced, safeguard, fault):
    tracing, exporter = traced
    behaviour, server = safeguard
    url = server.url if fault != "transport" else f"http://127.0.0.1:{free_port()}"
    behaviour.mode = "error" if fault == "http" else "ok"
    behaviour.injected = f"Unsure about {SECRET}" if fault == "unparseable" else None  # an answer quoting the text
    cfg = classifier_cfg(url, retries=0)
    inner = build_classifier(cfg, None)
    with pytest.raises(ClassifierError) as plain:
        await inner.classify(VIOLENCE, PROMPT)
    classifier = tracing.classifier(inner, "default", cfg)
    with pytest.raises(ClassifierError) as traced_error:
        await classifier.classify(VIOLENCE, PROMPT)
    await classifier.aclose()
    # The wrapper lets the error through as the classifier raised it.
    assert type(traced_error.value) is ClassifierError and traced_error.value.kind == plain.value.kind == fault
    assert traced_error.value.message == plain.value.message
    span = only(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == f"ClassifierError: {fault}"
    attributes = span.attributes or {}
    assert attributes["guardrail.verdict"] == "error" and attributes["guardrail.error.kind"] == fault
    assert attributes["error.type"] == "guardrail_proxy.errors.ClassifierError"
    assert "guardrail.label" not in attributes
    [event] = span.events
    assert event.name == "exception" and event.attributes["exception.message"] == f"ClassifierError: {fault}"
    assert not any(SECRET in text for text in texts_in((span,)))


async def test_upstream_span_for_a_completion(traced, upstream):
    tracing, exporter = traced
    _, server = upstream
    cfg = upstream_cfg(server.url)
    model = tracing.upstream(build_upstream(cfg, None), "standin", cfg)
    reply = await model.complete({"model": "test-model", "messages": user(PROMPT), "temperature": 0.5,
                                  "max_tokens": 64, "n": 1, "stop": [SECRET]})
    await model.aclose()
    assert reply["choices"][0]["message"]["content"] == f"Stand-in reply to: {PROMPT}"
    span = only(exporter)
    assert (span.name, span.kind, span.status.status_code) == ("chat stand-in-chat", SpanKind.CLIENT,
                                                               StatusCode.UNSET)
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "stand-in-chat",
        "server.address": "127.0.0.1", "server.port": server.port, "guardrail.upstream.name": "standin",
        "gen_ai.request.temperature": 0.5, "gen_ai.request.max_tokens": 64,
        "gen_ai.response.id": reply["id"], "gen_ai.response.model": "stand-in-chat",
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": reply["usage"]["completion_tokens"],
    }


async def test_upstream_span_for_a_failed_completion(traced, upstream):
    tracing, exporter = traced
    behaviour, server = upstream
    behaviour.status = 400
    cfg = upstream_cfg(server.url)
    model = tracing.upstream(build_upstream(cfg, None), "standin", cfg)
    with pytest.raises(UpstreamError) as error:
        await model.complete({"model": "test-model", "messages": user(PROMPT)})
    await model.aclose()
    assert (error.value.status_code, error.value.code) == (400, "standin_error")
    span = only(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "guardrail_proxy.errors.UpstreamError"
    assert span.attributes["guardrail.error.code"] == "standin_error"


async def test_upstream_span_for_a_stream_read_to_the_end(traced, upstream):
    tracing, exporter = traced
    _, server = upstream
    cfg = upstream_cfg(server.url)
    model = tracing.upstream(build_upstream(cfg, None), "standin", cfg)
    chunks = []
    async for chunk in model.stream({"model": "test-model", "messages": user(PROMPT), "stream": True,
                                     "stream_options": {"include_usage": True}}):
        chunks.append(chunk)
        assert not exporter.get_finished_spans()  # the span lasts as long as the stream
    await model.aclose()
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == f"Stand-in reply to: {PROMPT}"
    span = only(exporter)
    attributes = span.attributes or {}
    assert span.status.status_code is StatusCode.UNSET and "guardrail.cancelled" not in attributes
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.response.id"] == chunks[0]["id"]
    assert attributes["gen_ai.response.model"] == "stand-in-chat"
    assert attributes["gen_ai.usage.input_tokens"] == 10
    assert attributes["gen_ai.usage.output_tokens"] == chunks[-1]["usage"]["completion_tokens"]
    assert 0 < attributes["gen_ai.response.time_to_first_chunk"] < span.end_time - span.start_time


async def test_upstream_span_for_a_stream_closed_early(traced, upstream):
    tracing, exporter = traced
    behaviour, server = upstream
    behaviour.chunk_delay_s = 0.05
    cfg = upstream_cfg(server.url)
    watched = Watched(build_upstream(cfg, None))
    model = tracing.upstream(watched, "standin", cfg)  # type: ignore[arg-type]
    stream = model.stream({"model": "test-model", "messages": user(PROMPT), "stream": True})
    assert (await anext(stream))["choices"][0]["delta"]["role"] == "assistant"
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]  # what ChunkFeed does on a block
    assert watched.closed  # at once, not whenever the garbage collector gets to it
    span = only(exporter)
    attributes = span.attributes or {}
    assert span.status.status_code is StatusCode.UNSET and attributes["guardrail.cancelled"] is True
    assert attributes["gen_ai.response.finish_reasons"] == ("error",)  # the conventions' word for unfinished
    # The upstream response was closed too: the stand-in saw its client go.
    deadline = time.monotonic() + 5
    while behaviour.cancelled == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert (behaviour.cancelled, behaviour.completed) == (1, 0)
    await model.aclose()


async def test_upstream_span_for_a_stream_that_fails(traced, upstream):
    tracing, exporter = traced
    behaviour, server = upstream
    behaviour.raw_events = [b'data: {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m", '
                            b'"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]}\n\n',
                            b'data: {"error": {"message": "' + SECRET.encode() + b' broke"}}\n\n']
    cfg = upstream_cfg(server.url)
    model = tracing.upstream(build_upstream(cfg, None), "standin", cfg)
    with pytest.raises(UpstreamError) as error:
        async for _ in model.stream({"model": "test-model", "messages": user(PROMPT), "stream": True}):
            pass
    await model.aclose()
    assert SECRET in (error.value.detail or "")  # the error keeps the upstream's words, for the audit
    span = only(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["gen_ai.response.finish_reasons"] == ("error",)
    assert not any(SECRET in text for text in texts_in((span,)))


class Watched:
    """A real upstream whose streams note when they are closed."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.closed = inner, False

    def stream(self, body: dict[str, Any]) -> AsyncIterator[Any]:
        async def relay() -> AsyncIterator[Any]:
            source = self.inner.stream(body)
            try:
                async for chunk in source:
                    yield chunk
            finally:
                self.closed = True
                await source.aclose()

        return relay()

    async def aclose(self) -> None:
        await self.inner.aclose()


def audit_record(status: int = 400) -> AuditRecord:
    route = RouteConfig(name="main", models=("test-model",), upstream="standin", fail_mode="open",
                        policies=(PolicyRule(id="violence", levels={1: "annotate", 3: "block"}),  # type: ignore[dict-item]
                                  PolicyRule(id="selfharm")))
    policies = {"violence": VIOLENCE, "selfharm": SELFHARM}
    verdict = Verdict("violence", VIOLENCE.digest, "input", True, 3, "TV3", rationale=f"quotes {SECRET}",
                      reasoning=f"the user wrote {SECRET}", raw="TV3")
    failure = CheckFailure("selfharm", SELFHARM.digest, "input", "timeout", f"no answer for {SECRET}")
    mild = Verdict("violence", VIOLENCE.digest, "output", True, 1, "TV1", reasoning=SECRET)
    decisions = [combine("input", [verdict, failure], route, policies),
                 combine("output", [mild, Verdict("selfharm", SELFHARM.digest, "output", False, 0, "0")], route,
                         policies)]
    return AuditRecord("req-1", route="main", model="test-model", decisions=decisions, status=status,
                       upstream_called=True, upstream_cancelled=True, client="key-0123456789ab",
                       content={"input": PROMPT}, released=[PROMPT], error=f"failed on {SECRET}")


async def test_calls_nest_in_the_request_span_and_finish_sets_its_outcome(traced, safeguard, upstream):
    tracing, exporter = traced
    safeguard[0].rules.append(Rule("knife", 3))
    c_cfg, u_cfg = classifier_cfg(safeguard[1].url), upstream_cfg(upstream[1].url)
    classifier = tracing.classifier(build_classifier(c_cfg, None), "default", c_cfg)
    model = tracing.upstream(build_upstream(u_cfg, None), "standin", u_cfg)
    body = {"model": "test-model", "messages": user(PROMPT)}
    with tracing.request("POST /v1/chat/completions", "POST", "/v1/chat/completions") as request:
        await classifier.classify(VIOLENCE, PROMPT)
        await model.complete(body)
        feed = ChunkFeed(model.stream({**body, "stream": True}))  # read in a task of its own, as the proxy does
        await feed.opened(5)
        assert [batch async for batch in feed.batches()]
        await feed.close()
        request.finish(audit_record())
    await asyncio.gather(classifier.aclose(), model.aclose())
    *calls, root = exporter.get_finished_spans()
    assert [s.name for s in calls] == [f"chat {SAFEGUARD_MODEL}", "chat stand-in-chat", "chat stand-in-chat"]
    assert (root.name, root.kind, root.parent) == ("POST /v1/chat/completions", SpanKind.SERVER, None)
    for span in calls:
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert span.context.trace_id == root.context.trace_id
    assert trace.get_current_span() is trace.INVALID_SPAN  # the request span is no longer current
    assert root.status.status_code is StatusCode.UNSET  # a 400 is the client's doing
    assert dict(root.attributes or {}) == {
        "http.request.method": "POST", "url.path": "/v1/chat/completions", "http.response.status_code": 400,
        "guardrail.request.id": "req-1", "guardrail.route": "main", "guardrail.model": "test-model",
        "guardrail.stream": False, "guardrail.client": "key-0123456789ab", "guardrail.decision": "block",
        "guardrail.action": "block", "guardrail.unchecked": True, "guardrail.policies.violated": ("violence",),
        "guardrail.upstream.called": True, "guardrail.upstream.cancelled": True,
        "guardrail.input.decision": "block", "guardrail.input.checks": 2, "guardrail.input.violated": ("violence",),
        "guardrail.input.labels": ("TV3",), "guardrail.input.failed": ("selfharm",),
        "guardrail.output.decision": "annotate", "guardrail.output.checks": 2,
        "guardrail.output.violated": ("violence",), "guardrail.output.labels": ("TV1",), "guardrail.output.failed": (),
    }
    # Not a word of the conversation, the reasoning or the errors in any span.
    assert not any(SECRET in text for text in texts_in(exporter.get_finished_spans()))


async def test_a_server_error_marks_the_request_span(traced):
    tracing, exporter = traced
    with tracing.request("POST /v1/chat/completions", "POST", "/v1/chat/completions") as request:
        request.finish(audit_record(status=503))
    span = only(exporter)
    assert span.status.status_code is StatusCode.ERROR and span.attributes["error.type"] == "503"


async def test_a_request_span_continues_the_callers_trace(traced):
    tracing, exporter = traced
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with tracing.request("POST /v1/moderations", "POST", "/v1/moderations", {"traceparent": traceparent}):
        pass
    span = only(exporter)
    assert f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"


async def test_a_request_span_may_end_in_another_task(traced, caplog):
    """A streamed reply's end hooks run in Starlette's body task: the span ends there, with no context error."""
    tracing, exporter = traced
    scope = tracing.request("POST /v1/chat/completions", "POST", "/v1/chat/completions")
    scope.__enter__()

    async def body_task() -> None:
        scope.__exit__(None, None, None)

    await asyncio.create_task(body_task())
    assert only(exporter).name == "POST /v1/chat/completions"
    assert "Failed to detach context" not in caplog.text


async def test_apps_keep_their_spans_apart_and_leave_the_global_provider_alone(upstream):
    exporters = [InMemorySpanExporter(), InMemorySpanExporter()]
    tracings = [Tracing.build(TracingConfig(enabled=True), "p.yaml", e) for e in exporters]
    for i, tracing in enumerate(tracings):
        assert tracing is not None
        with tracing.request(f"app {i}", "GET", "/"):
            pass
        await tracing.aclose()
    assert [[s.name for s in e.get_finished_spans()] for e in exporters] == [["app 0"], ["app 1"]]
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"  # never set globally


async def test_unsampled_requests_still_work(safeguard):
    exporter = InMemorySpanExporter()
    tracing = Tracing.build(TracingConfig(enabled=True, sample_ratio=0), "p.yaml", exporter)
    assert tracing is not None
    cfg = classifier_cfg(safeguard[1].url)
    classifier = tracing.classifier(build_classifier(cfg, None), "default", cfg)
    with tracing.request("POST /v1/chat/completions", "POST", "/v1/chat/completions") as request:
        assert (await classifier.classify(VIOLENCE, "hi")).answer.label == "TV0"
        request.finish(audit_record())
    await classifier.aclose()
    await tracing.aclose()
    assert exporter.get_finished_spans() == ()


def test_build_returns_none_when_tracing_is_off():
    assert Tracing.build(TracingConfig(), "proxy.yaml") is None
    assert Tracing.build(TracingConfig(enabled=False, endpoint="http://collector:4318/v1/traces"), "p") is None


def run_python(code: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_tracing_off_imports_no_opentelemetry():
    found = run_python("""
        import json, sys
        from guardrail_proxy.config import TracingConfig
        from guardrail_proxy.tracing import Tracing
        tracing = Tracing.build(TracingConfig(), "proxy.yaml")
        print(json.dumps({"tracing": repr(tracing),
                          "otel": sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")}))
    """)
    assert found == {"tracing": "None", "otel": []}


def test_tracing_on_without_the_extra_is_a_config_error():
    found = run_python("""
        import json, sys
        from importlib.abc import MetaPathFinder

        class NoOpenTelemetry(MetaPathFinder):  # as if the otel extra were not installed
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "opentelemetry":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, NoOpenTelemetry())
        from guardrail_proxy.config import TracingConfig
        from guardrail_proxy.errors import ConfigError
        from guardrail_proxy.tracing import Tracing
        off = Tracing.build(TracingConfig(), "proxy.yaml")
        try:
            Tracing.build(TracingConfig(enabled=True), "proxy.yaml")
        except ConfigError as exc:
            print(json.dumps({"off": repr(off), "file": exc.file, "field": exc.field, "reason": exc.reason}))
    """)
    assert found["off"] == "None"
    assert (found["file"], found["field"]) == ("proxy.yaml", "tracing.enabled")
    assert "pip install 'guardrail-proxy[otel]'" in found["reason"]



@pytest.mark.parametrize("stream", [False, True])
def test_the_proxy_traces_each_request_with_its_calls_nested(make_proxy, stream):
    """Wired through the app: one SERVER span per request, the classifier and upstream calls under it."""
    exporter = InMemorySpanExporter()
    proxy = make_proxy({"audit_content": "none"}, proxy_extra={"tracing": {"enabled": True}}, span_exporter=exporter,
                       server_cfg={"client_keys_env": "KEYS"}, env={"KEYS": "k-secret"})
    proxy.classifier.rules = [Rule("forbidden words", 2)]
    client = proxy.client.with_options(api_key="k-secret")
    answer = client.chat.completions.create(model="test-model", messages=user("hello there"), stream=stream)
    if stream:
        list(answer)
    with pytest.raises(Exception):  # noqa: B017 - blocked: the SDK raises, the trace says why
        client.chat.completions.create(model="test-model", messages=user("forbidden words"))
    proxy.wait_audit(2)
    deadline = time.monotonic() + 5
    while len([s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]) < 2 \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    spans = exporter.get_finished_spans()
    servers = sorted((s for s in spans if s.kind is SpanKind.SERVER), key=lambda s: s.start_time)
    assert [s.attributes["guardrail.decision"] for s in servers] == ["allow", "block"]
    allowed, blocked = servers
    assert allowed.name == "POST chat" and allowed.attributes["guardrail.route"] == "main"
    assert allowed.attributes["guardrail.client"].startswith("key-")
    children = [s for s in spans if s.parent is not None and s.parent.span_id == allowed.context.span_id]
    kinds = sorted(s.attributes.get("guardrail.classifier.name", "upstream") for s in children)
    assert kinds == ["default", "default", "upstream"]  # input check, output check, the model call
    assert all(s.context.trace_id == allowed.context.trace_id for s in children)
    assert blocked.attributes["guardrail.policies.violated"] == ("violence",)
    for span in spans:
        for value in span.attributes.values():
            assert "hello there" not in str(value) and "k-secret" not in str(value)


def test_spans_reach_an_otlp_http_collector(make_proxy):
    """No test exporter: the proxy's own OTLP/HTTP exporter posts protobuf to a collector on 127.0.0.1; the
    batch still queued is sent when the app closes."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from guardrail_proxy.standins.server import ServerThread

    received: list[ExportTraceServiceRequest] = []

    async def traces(request: Request) -> Response:
        received.append(ExportTraceServiceRequest.FromString(await request.body()))
        return Response(b"", media_type="application/x-protobuf")

    with ServerThread(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])) as collector:
        proxy = make_proxy(proxy_extra={"tracing": {"enabled": True, "endpoint": f"{collector.url}/v1/traces",
                                                    "service_name": "proxy-under-test"}})
        proxy.client.chat.completions.create(model="test-model", messages=user("hello"))
        proxy.server.stop()  # the lifespan closes the tracer, which flushes the batch
        spans = [s for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
        services = {a.value.string_value for r in received for rs in r.resource_spans
                    for a in rs.resource.attributes if a.key == "service.name"}
    assert services == {"proxy-under-test"}
    assert sorted(s.name for s in spans) == ["POST chat", "chat openai/gpt-oss-safeguard-20b",
                                            "chat openai/gpt-oss-safeguard-20b", "chat stand-in-chat"]
