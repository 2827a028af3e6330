"""The `exchange` stage of a flow (flow.py): check input (with the model already running in speculative
mode), get the completion or the stream, check output, apply each phase's decision.

No HTTP parsing here (flow.py's earlier stages do that) and no business rules (decisions.py and
responses.py do those): this module only sequences the steps and records them in the audit record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .audit import AuditRecord
from .completion_text import choice_messages, completion_subjects
from .config import RouteConfig, UpstreamConfig
from .decisions import Decision, Outcome
from .pipeline import Checker
from .protocol import ChatRequest
from .responses import (
    block_error,
    guardrail_headers,
    guardrail_object,
    is_visible,
    refusal_completion,
    rewrite_choices,
    strip_logprobs,
    strongest,
    unavailable,
)
from .rewriting import rewrite_input
from .streaming import ChunkFeed, StreamRelay, refusal_stream
from .subjects import input_subjects, request_fields_subject
from .upstream import Upstream


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamReply:
    headers: dict[str, str]
    events: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]  # run by the response however it ended: stops work, runs end hooks


Started = asyncio.Task[dict[str, Any]] | ChunkFeed


class Exchange:
    def __init__(self, checker: Checker, upstream: Upstream, upstream_cfg: UpstreamConfig, route: RouteConfig,
                 record: AuditRecord, on_stream_end: Callable[[], None]) -> None:
        self.checker = checker
        self.upstream = upstream
        self.upstream_model = upstream_cfg.model
        self.upstream_timeout_s = upstream_cfg.timeout_s
        self.route = route
        self.record = record
        self.on_stream_end = on_stream_end

    @property
    def decisions(self) -> list[Decision]:
        return self.record.decisions

    async def run(self, chat: ChatRequest) -> Reply | StreamReply:
        # Speculative mode: the model starts now, but nothing it says is relayed before the input verdict.
        started = self.start(chat) if self.route.input.enabled and self.route.input.speculative else None
        try:
            checked, early = await self.check_input(chat)
        except BaseException:
            await self.cancel(started)
            raise
        if early is not None or checked is not chat:
            await self.cancel(started)  # blocked, or the model must see the rewritten request instead
            started = None
        if early is not None:
            return early
        started = started or self.start(checked)
        if isinstance(started, ChunkFeed):
            return await self.stream(started, checked)
        return await self.complete(started, checked)

    def start(self, chat: ChatRequest) -> Started:
        self.record.upstream_called = True
        timing, began = self.record.timing, time.perf_counter()
        body = chat.forwarded(self.upstream_model)
        if chat.stream:
            return ChunkFeed(self.upstream.stream(body))
        task = asyncio.create_task(self.upstream.complete(body))

        def ended(_task: asyncio.Task[dict[str, Any]]) -> None:
            # Timed when it ends, not when awaited: with a speculative start it may end during the input check.
            timing.upstream_s = time.perf_counter() - began

        task.add_done_callback(ended)
        return task

    async def cancel(self, started: Started | None) -> None:
        if started is None:
            return
        self.record.upstream_cancelled = True
        if isinstance(started, ChunkFeed):
            await started.close()
        else:
            started.cancel()
            await asyncio.gather(started, return_exceptions=True)

    async def check_input(self, chat: ChatRequest) -> tuple[ChatRequest, Reply | StreamReply | None]:
        if not self.route.input.enabled:
            return chat, None
        subjects = input_subjects(chat.messages, self.route.input)
        # The forwarded body's fields beyond messages, model, n and stream are the request's extras as sent:
        # read them there rather than dump the whole request (messages included) a second time.
        fields = request_fields_subject(chat.model_extra or {})
        decision = await self.checker.check("input", [*subjects, *([fields] if fields else [])], self.route,
                                             request_id=self.record.request_id)
        self.decisions.append(decision)
        if decision.outcome is Outcome.UNAVAILABLE:
            raise unavailable(decision)
        if decision.blocks:  # a tool definition or a schema cannot be rewritten like a message
            return chat, self.blocked(decision, chat)
        if decision.outcome is Outcome.REWRITE:
            return rewrite_input(chat, decision, self.route.rewrite_input), None
        return chat, None

    async def complete(self, task: asyncio.Task[dict[str, Any]], chat: ChatRequest) -> Reply:
        # The upstream's JSON object itself: what is checked is read from the very body that is relayed, and an
        # off-spec value (say, content as a list of parts) is relayed as sent.
        body = await task
        if self.route.output.enabled:
            choices = choice_messages(body)
            decision = await self.checker.check("output", completion_subjects(body, chat, self.route, choices),
                                                self.route, request_id=self.record.request_id)
            self.decisions.append(decision)
            if decision.outcome is Outcome.UNAVAILABLE:
                raise unavailable(decision)
            if decision.blocks:  # text outside the choices cannot be rewritten choice by choice
                return self.blocked_reply(decision, chat)
            if decision.outcome is Outcome.REWRITE:
                rewrite_choices(body, decision)
            else:  # relayed as the model wrote it: when it comes back as history, it need not be judged again
                self.checker.relayed_clean(self.route, [message for _, message in choices], [decision])
        if self.route.output.logprobs == "strip" or not self.route.output.enabled:
            strip_logprobs(body)
        return self.finish(Reply(200, body))

    async def stream(self, feed: ChunkFeed, chat: ChatRequest) -> StreamReply:
        try:
            await feed.opened(self.upstream_timeout_s)  # a stream that fails to start gets a proper HTTP error
        except BaseException:
            await feed.close()
            raise
        if feed.first_at is not None:
            self.record.timing.upstream_first_s = feed.first_at - self.record.timing.arrived
        relay = StreamRelay(feed, self.checker, self.route, chat, self.record, self.on_stream_end)
        self.record.stream = True
        return StreamReply(guardrail_headers(self.record.request_id, self.decisions), relay.events(), relay.close)

    def blocked(self, decision: Decision, chat: ChatRequest) -> Reply | StreamReply:
        """A refused input: streaming clients with the completion style get the refusal as a stream."""
        if not chat.stream or self.route.block_style == "error":
            return self.blocked_reply(decision, chat)
        rid = self.record.request_id
        extra = {"guardrail": guardrail_object(rid, self.route.name, self.decisions, self.route.reveal_reasoning)}
        events = refusal_stream(strongest(decision).refusal, rid, chat.model, chat.n or 1, extra)
        self.record.stream = True
        return StreamReply(guardrail_headers(rid, self.decisions), iterate(events, self.on_stream_end),
                           self.end_stream)

    async def end_stream(self) -> None:
        self.on_stream_end()

    def blocked_reply(self, decision: Decision, chat: ChatRequest) -> Reply:
        trigger = strongest(decision)
        rid = self.record.request_id
        if self.route.block_style == "error":
            self.record.status = 400
            return self.finish(Reply(400, block_error(trigger, rid)))
        return self.finish(Reply(200, refusal_completion(trigger.refusal, chat.model, rid, chat.n or 1)))

    def finish(self, reply: Reply) -> Reply:
        """The proxy's headers, and its `guardrail` object when the verdicts are shown. A `guardrail` key the
        upstream put in its completion is dropped either way: the client must never take it for the proxy's."""
        rid = self.record.request_id
        reply.headers.update(guardrail_headers(rid, self.decisions))
        reply.body.pop("guardrail", None)
        if is_visible(self.decisions) and "choices" in reply.body:
            reply.body["guardrail"] = guardrail_object(rid, self.route.name, self.decisions,
                                                       self.route.reveal_reasoning)
        return reply


async def iterate(events: list[bytes], on_end: Callable[[], None]) -> AsyncIterator[bytes]:
    try:
        for event in events:
            yield event
    finally:
        on_end()
