"""create_app(config): the Starlette app, its endpoints, and the one place errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .auth import check_client
from .errors import GuardrailProxyError, error_body
from .flow import CHAT_COMPLETIONS, GUARDRAIL_CHECK, MODERATIONS, Flow, Stage, run
from .guard import Reply, StreamReply
from .loader import LoadedConfig
from .routing import exposed_models
from .runtime import Runtime
from .settings import Settings
from .sse_response import EventStreamResponse

log = logging.getLogger("guardrail_proxy")


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def chat_completions(request: Request) -> Response:
    flow = Flow.start(request, runtime_of(request))
    reply = await run(flow, CHAT_COMPLETIONS)
    if isinstance(reply, StreamReply):
        # The relay runs the flow's end hooks when the stream ends, however it ends; under sync durability
        # the last event waits for the record's commit.
        return EventStreamResponse(flow.last_after_commit(reply.events),
                                   headers={"cache-control": "no-cache", **reply.headers}, on_close=reply.close)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def json_endpoint(request: Request, stages: tuple[Stage, ...]) -> Response:
    reply = await run(Flow.start(request, runtime_of(request)), stages)
    assert isinstance(reply, Reply)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def moderations(request: Request) -> Response:
    return await json_endpoint(request, MODERATIONS)


async def guardrail_check(request: Request) -> Response:
    return await json_endpoint(request, GUARDRAIL_CHECK)


async def list_models(request: Request) -> Response:
    runtime = runtime_of(request)
    check_client(request.headers.get("authorization"), runtime.client_keys)
    data = [{"id": model, "object": "model", "created": 0, "owned_by": f"guardrail-proxy:{route}"}
            for model, route in exposed_models(runtime.config.routes)]
    return JSONResponse({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    ready, report = await runtime_of(request).readiness()
    return JSONResponse(report, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    return PlainTextResponse(runtime_of(request).metrics.render(),
                             media_type="text/plain; version=0.0.4")


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


def create_app(config: LoadedConfig, settings: Settings | None = None) -> Starlette:
    """Build the app. Clients and pools are created in the lifespan, once, and closed at shutdown."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = Runtime.build(config, settings)
        await runtime.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.close()

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/moderations", moderations, methods=["POST"]),
        Route("/moderations", moderations, methods=["POST"]),
        Route("/v1/guardrail/check", guardrail_check, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    handlers = {GuardrailProxyError: on_proxy_error, HTTPException: on_http_error, Exception: on_unexpected}
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
