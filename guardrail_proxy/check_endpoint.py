"""`POST /v1/guardrail/check`: the guardrail alone, for another gateway that calls the model itself. Pure.

    {"route": "teen", "phase": "input", "messages": [...]}          judge a conversation as its input
    {"route": "teen", "phase": "input", "texts": ["...", "..."]}    judge texts, each as a user message
    {"route": "teen", "phase": "output", "texts": ["reply"], "messages": [...]}   judge replies, with context

The route comes from routing.select_route, with the body's `route` ranked with the header (or the only route).
The answer is always 200 with the decision (allow, log, annotate, rewrite, block, or unavailable when a
check could not run and the route fails closed), `flagged`, each verdict with its label and action
(reasoning only where the route reveals it), the checks that could not run, and for `texts` which of them
were flagged. The caller enforces the decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .auth import Client
from .config import RouteConfig
from .decisions import Decision, Phase, Verdict
from .errors import RequestError
from .protocol import Message
from .responses import guardrail_object
from .routing import select_route
from .subjects import Subject, Turn, input_subjects, output_subject


@dataclass(frozen=True)
class CheckRequest:
    phase: Phase
    messages: tuple[Message, ...]
    texts: tuple[str, ...] | None
    route: str | None
    model: str | None


def parse_check(body: dict[str, Any], header_route: str | None) -> CheckRequest:
    phase = body.get("phase", "input")
    if phase not in ("input", "output"):
        raise RequestError("phase must be 'input' or 'output'", param="phase")
    try:
        messages = tuple(Message.model_validate(m) for m in body.get("messages") or ())
    except ValidationError as exc:
        raise RequestError(f"messages: {exc.errors()[0]['msg']}", param="messages") from None
    texts = body.get("texts")
    if texts is not None and (not isinstance(texts, list) or not texts or
                              not all(isinstance(t, str) for t in texts)):
        raise RequestError("texts must be a non-empty list of strings", param="texts")
    if phase == "output" and texts is None:
        raise RequestError("an output check needs texts (the replies), with messages as their context", param="texts")
    if phase == "input" and not messages and texts is None:
        raise RequestError("an input check needs messages or texts", param="messages")
    route, model = body.get("route") or header_route, body.get("model")
    for name, value in (("route", route), ("model", model)):
        if value is not None and not isinstance(value, str):
            raise RequestError(f"{name} must be a string", param=name)
    return CheckRequest(phase, messages, tuple(texts) if texts is not None else None, route, model)


def pick_check_route(routes: tuple[RouteConfig, ...], request: CheckRequest, path_route: str | None = None,
                     client: Client | None = None) -> RouteConfig:
    """routing.select_route with `route` (the body's, else the header's) as the named route; with nothing to
    go by, the only route, if there is one."""
    route = select_route(routes, request.model, path_route=path_route, named=request.route, client=client,
                         named_where="`route` (or the x-guardrail-route header)")
    if route is not None:
        return route
    if len(routes) == 1:
        return routes[0]
    raise RequestError("name a route: `route`, the x-guardrail-route header, or `model`", param="route")


def check_subjects(request: CheckRequest, route: RouteConfig) -> list[Subject]:
    if request.phase == "output":
        assert request.texts is not None
        return [output_subject(text, request.messages, route.output, i) for i, text in enumerate(request.texts)]
    if request.texts is not None:
        return [Subject(Turn("user", text), index=i) for i, text in enumerate(request.texts) if text.strip()]
    return input_subjects(request.messages, route.input)


def check_body(request_id: str, route: RouteConfig, request: CheckRequest, decision: Decision) -> dict[str, Any]:
    body = guardrail_object(request_id, route.name, [decision], route.reveal_reasoning)
    body["phase"] = request.phase
    body["flagged"] = bool(decision.triggered)
    if request.texts is not None:
        found = {o.subject for o in decision.outcomes if isinstance(o, Verdict) and o.violation}
        body["texts"] = [{"index": i, "flagged": i in found} for i in range(len(request.texts))]
    return body
