"""`POST /beta/litellm_basic_guardrail_api`: a route's checks in the wire shape of LiteLLM's generic guardrail API.

LiteLLM's proxy runs this as `guardrail: generic_guardrail_api` with `api_base` set to this proxy's root URL; it
appends the path itself (unless api_base already ends with it). Verified against litellm 1.110.2, the version in
requirements/dev.lock:

- client: litellm/proxy/guardrails/guardrail_hooks/generic_guardrail_api/generic_guardrail_api.py
  (`GenericGuardrailAPI.apply_guardrail`); wire models: litellm/types/proxy/guardrails/guardrail_hooks/
  generic_guardrail_api.py (`GenericGuardrailAPIRequest`, `GenericGuardrailAPIResponse.from_dict`);
- what the texts are: litellm/llms/openai/chat/guardrail_translation/handler.py (`process_input_messages`,
  `process_output_response`; the Anthropic and Responses handlers next to it fill the same fields).

It sends, as JSON (`GenericGuardrailAPIRequest.model_dump(mode="json")`), with the config's `headers` (and
`x-api-key` when `api_key` is set) as HTTP headers:

    input_type             "request" (pre_call / during_call) or "response" (post_call)
    texts                  request: each message's string content and each text part's text, in message order,
                           for the roles in scope; response: each choice's content (or text parts)
    structured_messages    request only: the in-scope messages as OpenAI chat rows; keys the OpenAI types do not
                           declare (a user message's `name`, say) are removed unless `forward_messages_as_sent`
    images                 image_url URLs found in the messages or choices
    tools                  request: the tool definitions;  tool_calls: the messages' (or choices') tool calls
    model                  request: the model the client asked for; response: the model that answered
    additional_provider_specific_params   the guardrail config's, merged with a request's dynamic `extra_body`
    request_data           user_api_key_* metadata;  request_headers  the client's headers, most values masked
    litellm_call_id, litellm_trace_id, litellm_version

and reads back `action`: "BLOCKED" raises GuardrailRaisedException(blocked_reason), so the client gets an
error; any other action (NONE, GUARDRAIL_INTERVENED) continues, with `texts` (same length and order as sent)
or `structured_messages` (a changed list replaces the scoped messages) written back when present. An HTTP
error or unreadable answer is a guardrail fault, which LiteLLM passes through when the config says
`fail_on_error: false`, or `unreachable_fallback: fail_open` for a 502/503/504.

Here: `additional_provider_specific_params.route`, else the x-guardrail-route header, else `model` picks the
route, as for `/v1/guardrail/check`. The request's messages are judged with the route's input scope, texts
outside them, tools, tool calls and unknown fields as text outside any message; a response's texts as replies.
block, or a check that could not run under fail-closed: BLOCKED, with a reason naming the policies (reasoning
only where the route reveals it). rewrite: GUARDRAIL_INTERVENED with the rewritten `structured_messages`
(replace or drop, rewriting.py) or `texts` (each violating text replaced by its policy's safe text).
allow, log, annotate, fail-open: NONE. Media the classifier cannot read answers BLOCKED rather than an HTTP
error: an error would let LiteLLM pass the media unchecked under `fail_on_error: false`. Malformed bodies get
OpenAI error JSON (errors.py), which LiteLLM treats as a fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .auth import check_route
from .check_endpoint import CheckRequest, check_body, check_subjects, pick_check_route
from .config import Action, RouteConfig
from .decisions import OUTSIDE, Decision, Outcome, Phase
from .errors import RequestError, UnsupportedContent
from .extract import strings, text_of
from .flow import Flow, Stage, audit_room, authenticate, read_body, refuse_unread_media
from .guard import Reply
from .protocol import ChatRequest, Message, parse_json_body
from .responses import strongest, unavailable
from .rewriting import rewrite_input
from .routing import ROUTE_HEADER
from .subjects import Subject, Turn, call_text, output_subject, unreadable_parts

PATH = "/beta/litellm_basic_guardrail_api"
PHASES: dict[str, Phase] = {"request": "input", "response": "output"}
# LiteLLM's bookkeeping: never sent to the model, so never judged. Every other field with text in it (tools, a
# field a later LiteLLM adds) is judged as text outside the messages.
METADATA = frozenset({"input_type", "litellm_call_id", "litellm_trace_id", "request_data", "request_headers",
                      "litellm_version", "additional_provider_specific_params", "model"})
READ_APART = frozenset({"texts", "structured_messages", "images", "tool_calls"})


@dataclass(frozen=True)
class LiteLLMCheck(CheckRequest):
    """The CheckRequest the check endpoint would build (messages = structured_messages), and the rest."""

    rows: tuple[dict[str, Any], ...]  # structured_messages as sent: unchanged ones go back as they came
    outside: tuple[str, ...]  # texts in no message, tool calls in no message, tools, unknown fields
    media: tuple[str, ...]  # part types the classifier cannot read


def items(body: dict[str, Any], name: str, kind: type) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise RequestError(f"{name} must be a list of {'strings' if kind is str else 'objects'}", param=name)
    return value


def parse_litellm(body: dict[str, Any], header_route: str | None) -> LiteLLMCheck:
    kind = body.get("input_type")
    phase = PHASES.get(kind) if isinstance(kind, str) else None
    if phase is None:
        raise RequestError("input_type must be 'request' or 'response'", param="input_type")
    texts, rows = items(body, "texts", str), items(body, "structured_messages", dict)
    calls, images = items(body, "tool_calls", dict), items(body, "images", str)
    try:
        messages = tuple(Message.model_validate(row) for row in rows)
    except ValidationError as exc:
        raise RequestError(f"structured_messages: {exc.errors()[0]['msg']}", param="structured_messages") from None
    params = body.get("additional_provider_specific_params") or {}
    if not isinstance(params, dict):
        raise RequestError("additional_provider_specific_params must be an object",
                           param="additional_provider_specific_params")
    route, model = params.get("route") or header_route, body.get("model")
    for name, value in (("additional_provider_specific_params.route", route), ("model", model)):
        if value is not None and not isinstance(value, str):
            raise RequestError(f"{name} must be a string", param=name)
    # LiteLLM reads its texts and tool calls out of the messages it sends too: judge apart only what is not in them.
    known = set(strings(rows))
    outside = [call_text(call) for call in calls if not set(strings(call)) <= known]
    outside.append(text_of(body, skip=METADATA | READ_APART))  # tools, and any field LiteLLM adds later
    judged: tuple[str, ...] | None = tuple(texts)
    if phase == "input" and messages:
        judged = None  # the messages are judged, by the route's input scope
        outside = [text for text in texts if text not in known] + outside
    media = sorted({*unreadable_parts(messages), *(["image_url"] if images else [])})
    return LiteLLMCheck(phase, messages, judged, route, model, rows=tuple(rows),
                        outside=tuple(text for text in outside if text.strip()), media=tuple(media))


def litellm_subjects(request: LiteLLMCheck, route: RouteConfig) -> list[Subject]:
    """What the check endpoint would judge, and the text outside any message or text, which cannot be
    rewritten in place (a violation there blocks even where the action is rewrite)."""
    if request.phase == "output":
        extra = [output_subject(text, request.messages, route.output, OUTSIDE) for text in request.outside]
    else:
        extra = [Subject(Turn("request", text), index=OUTSIDE) for text in request.outside]
    return check_subjects(request, route) + extra


def blocked(reason: str) -> dict[str, Any]:
    return {"action": "BLOCKED", "blocked_reason": reason}


def blocked_reason(decision: Decision, reveal_reasoning: bool, request_id: str) -> str:
    """The refusal of the rule that set the outcome, and every policy that blocked, with its label."""
    top = strongest(decision)
    hits = dict.fromkeys(f"'{t.verdict.policy_id}'" + (f" ({t.verdict.label})" if t.verdict.label else "")
                         for t in decision.triggered if t.action in (Action.BLOCK, Action.REWRITE))
    noun = "policy" if len(hits) == 1 else "policies"
    reason = f"{top.refusal} [blocked by {noun} {', '.join(hits)} on {decision.phase}; request {request_id}]"
    if reveal_reasoning and top.verdict.reasoning:
        reason += f" Reasoning: {top.verdict.reasoning}"
    return reason


def safe_texts(texts: tuple[str, ...], decision: Decision) -> list[str]:
    """Each text a rewrite fired on replaced by the safe text of the first rule that fired on it, as
    rewriting.rewrite_input picks it for a message; the others as they came."""
    safe: dict[int, str] = {}
    for trig in decision.triggered:
        if trig.action in (Action.REWRITE, Action.BLOCK):
            safe.setdefault(trig.verdict.subject, trig.safe_text)
    return [safe.get(i, text) for i, text in enumerate(texts)]


def rewritten_rows(request: LiteLLMCheck, route: RouteConfig, decision: Decision) -> list[dict[str, Any]]:
    """structured_messages after the route's input rewrite (rewriting.py): a message a rewrite fired on is
    replaced by its safe text or dropped; the others go back exactly as they came, which LiteLLM reads as
    unchanged."""
    chat = ChatRequest(messages=list(request.messages), model=request.model or "litellm")
    sent = {id(message): row for message, row in zip(chat.messages, request.rows, strict=True)}
    after = rewrite_input(chat, decision, route.rewrite_input).messages
    return [sent[id(m)] if id(m) in sent else m.model_dump(mode="json", exclude_none=True) for m in after]


def answer(request: LiteLLMCheck, route: RouteConfig, decision: Decision, request_id: str) -> dict[str, Any]:
    """LiteLLM's answer for a decision. `guardrail` (what /v1/guardrail/check would answer) is for people
    reading LiteLLM's debug log; LiteLLM itself reads only action, blocked_reason, texts and
    structured_messages."""
    shown = {"guardrail": check_body(request_id, route, request, decision)}
    if decision.outcome is Outcome.UNAVAILABLE:
        return {**blocked(f"{unavailable(decision).message} [request {request_id}]"), **shown}
    if decision.blocks:
        return {**blocked(blocked_reason(decision, route.reveal_reasoning, request_id)), **shown}
    if decision.outcome is Outcome.REWRITE:
        if request.texts is None:
            return {"action": "GUARDRAIL_INTERVENED", "structured_messages": rewritten_rows(request, route, decision),
                    **shown}
        return {"action": "GUARDRAIL_INTERVENED", "texts": safe_texts(request.texts, decision), **shown}
    return {"action": "NONE", **shown}


async def parse_litellm_guardrail(flow: Flow) -> None:
    request = parse_litellm(parse_json_body(flow.raw), flow.http.headers.get(ROUTE_HEADER))
    flow.route = pick_check_route(flow.served.config.routes, request, flow.http.path_params.get("route"),
                                  flow.client)
    check_route(flow.client, flow.route.name)
    flow.check_request, flow.record.route, flow.record.model = request, flow.route.name, request.model or ""


async def litellm_guardrail(flow: Flow) -> None:
    """One checked phase, answered in LiteLLM's terms; media the route cannot read is BLOCKED unread."""
    request, route, headers = flow.check_request, flow.route, {"x-guardrail-request-id": flow.request_id}
    assert isinstance(request, LiteLLMCheck) and route is not None
    try:
        refuse_unread_media(route, request.media, "images")
    except UnsupportedContent as exc:
        flow.record.error = f"{exc.code}: {exc.message}"  # answered BLOCKED: the record says why
        flow.reply = Reply(200, blocked(f"{exc.message} [request {flow.request_id}]"), headers)
        return
    decision = await flow.served.checker.check(request.phase, litellm_subjects(request, route), route,
                                               request_id=flow.request_id)
    flow.record.decisions.append(decision)
    flow.reply = Reply(200, answer(request, route, decision, flow.request_id), headers)


LITELLM_GUARDRAIL: tuple[Stage, ...] = (audit_room, authenticate, read_body, parse_litellm_guardrail,
                                        litellm_guardrail)
