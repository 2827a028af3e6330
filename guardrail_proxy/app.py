"""create_app(config): the Starlette app, its endpoints, and the one place errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .auth import check_route, identify
from .console.routes import Console
from .errors import GuardrailProxyError, GuardrailUnavailable, error_body
from .flow import CHAT_COMPLETIONS, GUARDRAIL_CHECK, MODERATIONS, Flow, Stage, run
from .guard import Reply, StreamReply
from .litellm_guardrail import LITELLM_GUARDRAIL
from .loader import LoadedConfig
from .ops import check_ops
from .routing import exposed_models, named_route
from .runtime import Runtime
from .settings import Settings
from .sse_response import EventStreamResponse
from .wire_json import FastJSONResponse

log = logging.getLogger("guardrail_proxy")

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from .fleet import Fleet


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:  # the ops listener can take a request before the app has started, or after it closed
        raise GuardrailUnavailable("the proxy is starting or stopping")
    return runtime


async def chat_completions(request: Request) -> Response:
    flow = Flow.start(request, runtime_of(request), "chat")
    reply = await run(flow, CHAT_COMPLETIONS)
    if isinstance(reply, StreamReply):
        # The relay runs the flow's end hooks when the stream ends, however it ends; under sync durability
        # the last event waits for the record's commit.
        return EventStreamResponse(flow.last_after_commit(reply.events),
                                   headers={"cache-control": "no-cache", **reply.headers}, on_close=reply.close)
    return FastJSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def json_endpoint(request: Request, stages: tuple[Stage, ...], endpoint: str) -> Response:
    reply = await run(Flow.start(request, runtime_of(request), endpoint), stages)
    assert isinstance(reply, Reply)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def moderations(request: Request) -> Response:
    return await json_endpoint(request, MODERATIONS, "moderations")


async def guardrail_check(request: Request) -> Response:
    return await json_endpoint(request, GUARDRAIL_CHECK, "check")


async def litellm_guardrail_endpoint(request: Request) -> Response:
    """LiteLLM's generic guardrail API (litellm_guardrail.py); LiteLLM's api_base is this proxy's root URL."""
    return await json_endpoint(request, LITELLM_GUARDRAIL, "litellm")


async def list_models(request: Request) -> Response:
    served = runtime_of(request).served
    client = identify(request.headers.get("authorization"), served.clients)
    only = request.path_params.get("route")
    if only is not None:
        named_route(served.config.routes, only, "the path (/r/<route>/v1/...)")
        check_route(client, only)
    data = [{"id": model, "object": "model", "created": 0, "owned_by": f"guardrail-proxy:{route}"}
            for model, route in exposed_models(served.config.routes, client, only)]
    return JSONResponse({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def ops_only(request: Request, *, admin: bool = False) -> Runtime:
    runtime = runtime_of(request)
    check_ops(request.scope, runtime.config.proxy.server, runtime.ops_key, request.headers.get("authorization"),
              admin=admin)
    return runtime


async def readyz(request: Request) -> Response:
    ready, report = await ops_only(request).readiness()
    return JSONResponse(report, status_code=200 if ready else 503)


def fleet_of(request: Request) -> Fleet | None:
    """The worker's channel to its siblings under `serve --workers N` (fleet.py); None in a single process."""
    fleet: Fleet | None = getattr(request.app.state, "fleet", None)
    return fleet


async def metrics(request: Request) -> Response:
    runtime, fleet = ops_only(request), fleet_of(request)
    text = runtime.metrics.render() if fleet is None else await fleet.scrape(runtime)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


async def admin_reload(request: Request) -> Response:
    """Re-read config and policies (as SIGHUP does); 200 when applied, 409 when refused (the old config serves).
    Under `serve --workers N`, every worker reloads and the body lists each one's result."""
    runtime, fleet = ops_only(request, admin=True), fleet_of(request)
    if fleet is not None:
        ok, body = await fleet.reload(runtime)
        return JSONResponse(body, status_code=200 if ok else 409)
    result = await runtime.reload()
    return JSONResponse(result.to_json(), status_code=200 if result.ok else 409)


async def admin_config(request: Request) -> Response:
    runtime = ops_only(request, admin=True)
    config = runtime.config
    body = {"config": str(config.path), "generation": runtime.served.generation,
            "routes": {r.name: {"models": list(r.models), "policies": [p.id for p in r.policies]}
                       for r in config.routes},
            "policies": {p.id: p.digest for p in config.policies.values()},
            "clients": sorted({c.name for c in (runtime.served.clients or {}).values()}),
            "last_reload": runtime.last_reload.to_json() if runtime.last_reload else None}
    return JSONResponse(body)


def with_request_id(request: Request, headers: dict[str, str] | None = None) -> dict[str, str]:
    out = dict(headers or {})
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        out["x-guardrail-request-id"] = request_id
    return out


async def on_proxy_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GuardrailProxyError)
    if exc.status_code >= 500:
        log.warning("%s %s -> %s: %s", request.method, request.url.path, exc.status_code, exc.logged)
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=with_request_id(request, exc.headers()))


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else None
    body = error_body(f"{request.method} {request.url.path}: {exc.detail}", "invalid_request_error", code)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    body = error_body("the guardrail proxy hit an internal error; see its log", "server_error", "internal_error")
    return JSONResponse(body, status_code=500, headers=with_request_id(request))


def create_app(config: LoadedConfig, settings: Settings | None = None,
               span_exporter: SpanExporter | None = None) -> Starlette:
    """Build the app. Clients and pools are created in the lifespan, once, and closed at shutdown.
    `span_exporter` (tests) receives the traces when the config turns tracing on."""
    settings = settings or Settings()
    console = Console.build(config, settings)  # the review console (console/); it opens nothing until asked

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = Runtime.build(config, settings, span_exporter)
        await runtime.start()
        runtime.draining = bool(getattr(app.state, "draining", False))  # SIGTERM during start-up (serving.py)
        app.state.runtime = runtime
        try:
            yield
        finally:
            app.state.runtime = None
            await runtime.close()
            await console.close()

    api = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/moderations", moderations, methods=["POST"]),
        Route("/v1/guardrail/check", guardrail_check, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/beta/litellm_basic_guardrail_api", litellm_guardrail_endpoint, methods=["POST"]),
    ]
    routes = [
        *api,
        # The same endpoints under a route's own base URL: /r/<route>/v1/... (routing.py's first rule).
        *(Route("/r/{route}" + r.path, r.endpoint, methods=r.methods) for r in api),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/moderations", moderations, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/reload", admin_reload, methods=["POST"]),
        Route("/admin/config", admin_config, methods=["GET"]),
        *console.routes(),  # /console: the ops port or the ops key only (console/access.py)
    ]
    handlers = {GuardrailProxyError: on_proxy_error, HTTPException: on_http_error, Exception: on_unexpected}
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
