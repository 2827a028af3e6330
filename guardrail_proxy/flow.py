"""One request, top to bottom: a `Flow` object and the ordered list of stages that fill it in.

    CHAT_COMPLETIONS = audit_room -> authenticate -> read_body -> parse -> pick_route -> admit -> exchange
    MODERATIONS      = audit_room -> authenticate -> read_body -> parse_moderation -> pick_route
                       -> admit_moderation -> moderate
    GUARDRAIL_CHECK  = audit_room -> authenticate -> read_body -> parse_guardrail_check -> check

Each stage is a small async function of the flow; it either fills in the next part of the flow or raises a
GuardrailProxyError (a refusal), which app.py turns into OpenAI error JSON. `exchange` (guard.py) runs the
input checks, the upstream call and the output checks, and applies each phase's decision in one place
(responses.py). Policy violations are values (decisions.py), never exceptions.

The end hooks (the audit record, the request counter) run exactly once per request, however it ends: a
refusal before routing, a block, an upstream fault, a finished or abandoned stream. Under `sync` audit
durability the reply (a stream's last event) waits for its record's commit (`settle`). An endpoint is a
tuple of stages; adding one means composing stages, not copying them.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from starlette.requests import Request

from .audit import AuditRecord
from .audit_content import conversation_content
from .audit_rows import is_flagged
from .auth import Client, check_route, identify
from .check_endpoint import CheckRequest, check_body, check_subjects, parse_check, pick_check_route
from .config import RouteConfig
from .decisions import Outcome
from .errors import AuditUnavailable, BodyTooLarge, GuardrailProxyError, RequestError, UnsupportedContent
from .guard import Exchange, Reply, StreamReply
from .moderation import ModerationInput, input_policies, moderation_body, moderation_subjects
from .moderation import parse_moderation as parse_moderation_body
from .protocol import ChatRequest, parse_chat_request, parse_json_body
from .responses import unavailable
from .routing import ROUTE_HEADER, select_route
from .runtime import Runtime
from .served import Served
from .streaming import sse
from .subjects import unreadable_parts
from .tracing import RequestSpan

PROMPT_TEMPLATE_FIELDS = ("chat_template", "chat_template_kwargs")
MODERATION_MODEL = "omni-moderation-latest"  # what OpenAI's SDK users send, and the default when none is sent


@dataclass
class Flow:
    """One request's state. Stages fill it in order; the end hooks read it once it is finished."""

    http: Request
    runtime: Runtime
    served: Served  # the config generation this request started on, kept to its end
    record: AuditRecord
    endpoint: str
    client: Client | None = None
    raw: bytes = b""
    chat: ChatRequest | None = None
    route: RouteConfig | None = None
    reply: Reply | StreamReply | None = None
    moderation: ModerationInput | None = None
    check_request: CheckRequest | None = None
    hooks_ran: bool = field(default=False, repr=False)
    committed: asyncio.Future[None] | None = field(default=None, repr=False)
    unrecorded: bool = field(default=False, repr=False)  # refused for a full audit backlog: counted, not queued
    trace: AbstractContextManager[RequestSpan] | None = field(default=None, repr=False)  # tracing.py, when on
    span: RequestSpan | None = field(default=None, repr=False)

    @classmethod
    def start(cls, http: Request, runtime: Runtime, endpoint: str) -> Flow:
        # The record exists from the first stage, so a request refused before routing (401, 413, 400, 404)
        # is audited and counted like any other; route and model are filled in as they become known.
        trace = span = None
        if runtime.tracing is not None:
            # The request's span is current from here to the end hooks (a stream's end), so the classifier and
            # upstream calls nest in it. Opened first: nothing after `enter` may fail before the end hooks.
            trace = runtime.tracing.request(f"{http.method} {endpoint}", http.method, http.url.path, http.headers)
            span = trace.__enter__()
        flow = cls(http, runtime, runtime.enter(), AuditRecord(secrets.token_hex(8), route="", model=""), endpoint,
                   trace=trace, span=span)
        http.state.request_id = flow.request_id  # the error handlers echo it in x-guardrail-request-id
        return flow

    @property
    def request_id(self) -> str:
        return self.record.request_id

    def fail(self, status: int, error: str) -> None:
        self.record.status, self.record.error = status, error

    def finish(self) -> None:
        """The end hooks: exactly once, whichever way the request ended."""
        if self.hooks_ran:
            return
        self.hooks_ran = True
        record = self.record
        record.timing.total_s = record.timing.since_arrival()
        self.runtime.leave(self.served)
        self.runtime.metrics.record_request(self.endpoint, record, self.served.config.policies)
        if self.trace is not None and self.span is not None:
            self.span.finish(record)
            self.trace.__exit__(None, None, None)
        if self.unrecorded:
            return
        stored = record.to_json()
        mode = self.route.audit_content if self.route else "none"
        if mode == "all" or (mode == "flagged" and is_flagged(stored)):
            streamed = "".join(record.released) or None
            stored["content"] = record.content = conversation_content(self.chat, self.reply, streamed)
        self.committed = self.runtime.audit.submit(stored)

    async def settle(self) -> None:
        """Under sync durability, wait for this request's record to be committed (AuditUnavailable if not)."""
        if self.committed is not None and self.runtime.audit.config.durability == "sync":
            await self.committed

    async def last_after_commit(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """A stream's writes as the relay makes them. Under sync durability a client that saw the end of its
        stream can count on its record, so the stream's last event waits for the commit: every write goes out
        at once but for its last event, which is held until the next write comes (the relay's writes end at an
        event's end, and an event never holds a blank line: `data: ` and one line of JSON); the final one goes
        out after the commit, or an error event instead when the commit failed. Other durabilities wait for
        nothing, so nothing is held."""
        timing = self.record.timing
        if self.runtime.audit.config.durability != "sync":
            async for write in events:
                if timing.first_event_s is None:
                    timing.first_event_s = timing.since_arrival()
                yield write
            return
        held = b""
        async for write in events:
            if timing.first_event_s is None:
                timing.first_event_s = timing.since_arrival()
            cut = last_event_at(write)
            if held or cut:
                yield held + write[:cut]
            held = write[cut:]
        try:
            await self.settle()
        except AuditUnavailable as exc:
            yield sse({"error": exc.to_body()["error"]})
            return
        if held:
            yield held


def last_event_at(write: bytes) -> int:
    """Where the last event of a write of whole SSE events starts (0 for a write of one event)."""
    end = write.rfind(b"\n\n", 0, len(write) - 2)
    return end + 2 if end >= 0 else 0


Stage = Callable[[Flow], Awaitable[None]]


async def audit_room(flow: Flow) -> None:
    """Hold (or refuse) a request while the audit backlog is full, before any work is done for it. A refusal is
    counted (guardrail_audit_backpressure_total) but adds no record: that would grow the very backlog."""
    try:
        await flow.runtime.audit.room()
    except AuditUnavailable:
        flow.unrecorded = True
        raise


async def authenticate(flow: Flow) -> None:
    """Who is asking (by the key's name, never the key), and whether their key is over its rate limit."""
    flow.client = identify(flow.http.headers.get("authorization"), flow.served.clients)
    flow.record.client = flow.client.name if flow.client else None
    flow.runtime.limiter.admit(flow.client)


async def read_body(flow: Flow) -> None:
    limit = flow.served.config.proxy.server.max_body_bytes
    declared = flow.http.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body is larger than this proxy's limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in flow.http.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the request body is larger than this proxy's limit of {limit} bytes")
        chunks.append(chunk)
    flow.raw = b"".join(chunks)


async def parse(flow: Flow) -> None:
    flow.chat = parse_chat_request(parse_json_body(flow.raw))
    flow.record.model, flow.record.stream = flow.chat.model, bool(flow.chat.stream)


async def pick_route(flow: Flow) -> None:
    """routing.select_route: the /r/<route> path, the header, the key's default route, the model; then a key
    may only use a route it was given."""
    route = select_route(flow.served.config.routes, flow.record.model, path_route=flow.http.path_params.get("route"),
                         named=flow.http.headers.get(ROUTE_HEADER), client=flow.client)
    assert route is not None, "a model name always picks a route or raises"
    check_route(flow.client, route.name)
    flow.route, flow.record.route = route, route.name


def refuse_unread_media(route: RouteConfig, types: Sequence[str], param: str) -> None:
    """Media the classifier cannot read is refused, unless the route forwards it unchecked on purpose."""
    if types and not route.allow_unchecked_media:
        raise UnsupportedContent(f"route '{route.name}' cannot check content parts of type {', '.join(types)}; "
                                 "send text, or set allow_unchecked_media on the route", param=param)


async def admit(flow: Flow) -> None:
    """Refuse what the guardrail cannot check before anything is sent anywhere: media parts the classifier
    cannot read, and a client-supplied chat template, which would replace the prompt the model reads."""
    assert flow.chat is not None and flow.route is not None
    route = flow.route
    refuse_unread_media(route, unreadable_parts(flow.chat.messages), "messages")
    extra = flow.chat.model_extra or {}
    sent = [name for name in PROMPT_TEMPLATE_FIELDS if name in extra]
    if sent and not route.allow_prompt_template:
        raise UnsupportedContent(
            f"route '{route.name}' does not accept {sent[0]}: it would replace the prompt template the model "
            "reads; set allow_prompt_template on the route to forward it", param=sent[0])


async def exchange(flow: Flow) -> None:
    assert flow.chat is not None and flow.route is not None
    served, route = flow.served, flow.route
    guarded = Exchange(served.checker, served.upstreams[route.upstream],
                       served.config.proxy.upstreams[
        route.upstream], route, flow.record, on_stream_end=flow.finish)
    flow.reply = await guarded.run(flow.chat)


async def parse_moderation(flow: Flow) -> None:
    body = parse_json_body(flow.raw)
    model = body.get("model", MODERATION_MODEL)
    if not isinstance(model, str):
        raise RequestError("model must be a string", param="model")
    flow.moderation, flow.record.model = parse_moderation_body(body), model


async def admit_moderation(flow: Flow) -> None:
    assert flow.moderation is not None and flow.route is not None
    refuse_unread_media(flow.route, flow.moderation.media, "input")


async def moderate(flow: Flow) -> None:
    """Every item against every policy the route applies to input, in one checked phase (so the route's
    max_checks, fair share and fail mode apply as for chat)."""
    assert flow.moderation is not None and flow.route is not None
    served, route, texts = flow.served, flow.route, flow.moderation.texts
    decision = await served.checker.check("input", moderation_subjects(texts), route, request_id=flow.request_id)
    flow.record.decisions.append(decision)
    if decision.outcome is Outcome.UNAVAILABLE:
        raise unavailable(decision)
    applied = input_policies(route, served.config.policies)
    flow.reply = Reply(200, moderation_body(flow.request_id, flow.record.model, texts, decision, applied),
                       {"x-guardrail-request-id": flow.request_id})


async def parse_guardrail_check(flow: Flow) -> None:
    request = parse_check(parse_json_body(flow.raw), flow.http.headers.get(ROUTE_HEADER))
    flow.route = pick_check_route(flow.served.config.routes, request, flow.http.path_params.get("route"), flow.client)
    check_route(flow.client, flow.route.name)
    flow.check_request, flow.record.route = request, flow.route.name
    flow.record.model = request.model or ""
    refuse_unread_media(flow.route, unreadable_parts(request.messages), "messages")


async def check(flow: Flow) -> None:
    """One checked phase, as the proxy would run it; the decision is the answer, whatever it is."""
    assert flow.check_request is not None and flow.route is not None
    request, route = flow.check_request, flow.route
    decision = await flow.served.checker.check(request.phase, check_subjects(request, route), route,
                                               request_id=flow.request_id)
    flow.record.decisions.append(decision)
    flow.reply = Reply(200, check_body(flow.request_id, route, request, decision),
                       {"x-guardrail-request-id": flow.request_id})


CHAT_COMPLETIONS: tuple[Stage, ...] = (audit_room, authenticate, read_body, parse, pick_route, admit, exchange)
MODERATIONS: tuple[Stage, ...] = (audit_room, authenticate, read_body, parse_moderation, pick_route,
                                  admit_moderation, moderate)
GUARDRAIL_CHECK: tuple[Stage, ...] = (audit_room, authenticate, read_body, parse_guardrail_check, check)


async def run(flow: Flow, stages: Sequence[Stage]) -> Reply | StreamReply:
    """Run the stages in order. A refusal or a fault is recorded and re-raised for app.py to answer; a
    stream's end hooks run when the stream ends, everything else's here."""
    try:
        for stage in stages:
            await stage(flow)
    except GuardrailProxyError as exc:
        flow.fail(exc.status_code, exc.logged)
        flow.finish()
        await flow.settle()
        raise
    except Exception as exc:
        flow.fail(500, f"internal error: {type(exc).__name__}")
        flow.finish()
        await flow.settle()
        raise
    except BaseException:
        flow.fail(499, "cancelled before a reply")
        flow.finish()
        raise
    assert flow.reply is not None, "the last stage leaves a reply"
    if isinstance(flow.reply, Reply):
        flow.finish()
        await flow.settle()
    return flow.reply
