"""One non-streaming guarded exchange: check input, call the model, check output, apply the decisions.

No HTTP parsing here (chat.py does that) and no business rules (decisions.py and responses.py do those):
this module only sequences the steps and records them in the audit record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openai.types.chat import ChatCompletion

from .audit import AuditRecord
from .config import RouteConfig
from .decisions import Decision, Outcome
from .errors import GuardrailUnavailable, UnsupportedContent
from .pipeline import Checker
from .protocol import ChatRequest, Message
from .responses import (
    block_error,
    guardrail_headers,
    guardrail_object,
    is_visible,
    refusal_completion,
    rewrite_choices,
    strongest,
)
from .rewriting import rewrite_input
from .subjects import Subject, input_subjects, message_text, output_subject, unreadable_parts
from .upstream import Upstream


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def unavailable(decision: Decision) -> GuardrailUnavailable:
    failed = ", ".join(sorted({f"{f.policy_id} ({f.kind})" for f in decision.failures}))
    return GuardrailUnavailable(
        f"the guardrail could not check this request's {decision.phase} ({failed}); "
        "the route fails closed, so the request was not served. Retry later.")


def completion_subjects(completion: ChatCompletion, chat: ChatRequest, route: RouteConfig) -> list[Subject]:
    subjects = []
    for choice in completion.choices:
        text = message_text(Message.model_validate(choice.message.model_dump(exclude_none=True)))
        if text.strip():
            subjects.append(output_subject(text, chat.messages, route.output, choice.index))
    return subjects


def check_media(chat: ChatRequest, route: RouteConfig) -> None:
    unread = unreadable_parts(chat.messages)
    if unread and not route.allow_unchecked_media:
        raise UnsupportedContent(
            f"route '{route.name}' cannot check content parts of type {', '.join(unread)}; "
            "send text, or set allow_unchecked_media on the route", param="messages")


class Exchange:
    def __init__(self, checker: Checker, upstream: Upstream, upstream_model: str, route: RouteConfig,
                 record: AuditRecord) -> None:
        self.checker = checker
        self.upstream = upstream
        self.upstream_model = upstream_model
        self.route = route
        self.record = record

    @property
    def decisions(self) -> list[Decision]:
        return self.record.decisions

    async def run(self, chat: ChatRequest) -> Reply:
        check_media(chat, self.route)
        if self.route.input.enabled:
            decision = await self.checker.check("input", input_subjects(chat.messages, self.route.input),
                                                self.route)
            self.decisions.append(decision)
            if decision.outcome is Outcome.UNAVAILABLE:
                raise unavailable(decision)
            if decision.outcome is Outcome.BLOCK:
                return self.blocked(decision, chat)
            if decision.outcome is Outcome.REWRITE:
                chat = rewrite_input(chat, decision, self.route.rewrite_input)
        self.record.upstream_called = True
        completion = await self.upstream.complete(chat.forwarded(self.upstream_model))
        body = completion.model_dump(mode="json", exclude_unset=True)
        if self.route.output.enabled:
            decision = await self.checker.check("output", completion_subjects(completion, chat, self.route),
                                                self.route)
            self.decisions.append(decision)
            if decision.outcome is Outcome.UNAVAILABLE:
                raise unavailable(decision)
            if decision.outcome is Outcome.BLOCK:
                return self.blocked(decision, chat)
            if decision.outcome is Outcome.REWRITE:
                body = rewrite_choices(completion, decision)
        return self.finish(Reply(200, body))

    def blocked(self, decision: Decision, chat: ChatRequest) -> Reply:
        trigger = strongest(decision)
        if self.route.block_style == "error":
            reply = Reply(400, block_error(trigger, self.record.request_id))
        else:
            reply = Reply(200, refusal_completion(trigger.refusal, chat.model, self.record.request_id,
                                                  chat.n or 1))
        self.record.status = reply.status
        return self.finish(reply)

    def finish(self, reply: Reply) -> Reply:
        rid = self.record.request_id
        reply.headers.update(guardrail_headers(rid, self.decisions))
        if is_visible(self.decisions) and "choices" in reply.body:
            reply.body["guardrail"] = guardrail_object(rid, self.route.name, self.decisions,
                                                       self.route.reveal_reasoning)
        return reply
