"""Turn decisions into what the client sees. Pure: values in, bodies and headers out.

- block (error style): HTTP 400, OpenAI error JSON with code content_policy_violation, policy and label.
- block (completion style): a normal chat.completion whose content is the refusal and whose
  finish_reason is "content_filter".
- rewrite (output): the completion's content replaced by the policy's safe text.
- annotate / fail-open: a `guardrail` object in the body and x-guardrail-* headers.
- log: nothing visible.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from .decisions import ACTION_STRENGTH, CheckFailure, Decision, Outcome, Triggered, Verdict
from .errors import (
    ContentNotCheckable,
    GuardrailOverloaded,
    GuardrailProxyError,
    GuardrailUnavailable,
    TooManyChecks,
    error_body,
)

HEADER_SAFE = " !#$&'()*+,-./:;<=>?@[]^_`{|}~\""
VISIBLE = {Outcome.ANNOTATE, Outcome.REWRITE, Outcome.BLOCK}
OUTCOME_ORDER = [Outcome.ALLOW, Outcome.LOG, Outcome.ANNOTATE, Outcome.REWRITE, Outcome.BLOCK,
                 Outcome.UNAVAILABLE]


def overall(decisions: list[Decision]) -> Outcome:
    return max((d.outcome for d in decisions), key=OUTCOME_ORDER.index, default=Outcome.ALLOW)


def is_visible(decisions: list[Decision]) -> bool:
    return overall(decisions) in VISIBLE or any(d.unchecked for d in decisions)


def shown_decision(decisions: list[Decision]) -> str:
    outcome = overall(decisions)
    if outcome in (Outcome.ALLOW, Outcome.LOG) and any(d.unchecked for d in decisions):
        return "unchecked"
    return outcome.value


def verdict_summary(verdict: Verdict, action: str | None, reveal_reasoning: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "phase": verdict.phase, "policy": verdict.policy_id, "policy_digest": verdict.policy_digest[:12],
        "violation": verdict.violation, "label": verdict.label, "action": action,
    }
    if reveal_reasoning:
        item["reasoning"] = verdict.reasoning
        item["rationale"] = verdict.rationale
    return item


def failure_summary(failure: CheckFailure) -> dict[str, Any]:
    return {"phase": failure.phase, "policy": failure.policy_id, "error": failure.kind}


def guardrail_object(request_id: str, route: str, decisions: list[Decision],
                     reveal_reasoning: bool) -> dict[str, Any]:
    checks = []
    for decision in decisions:
        checks += [verdict_summary(o, decision.action_of(o), reveal_reasoning)
                   for o in decision.outcomes if isinstance(o, Verdict)]
    return {
        "request_id": request_id,
        "route": route,
        "decision": shown_decision(decisions),
        "checks": checks,
        "unchecked": [failure_summary(f) for d in decisions for f in d.failures],
    }


def guardrail_headers(request_id: str, decisions: list[Decision]) -> dict[str, str]:
    headers = {"x-guardrail-request-id": request_id}
    if not is_visible(decisions):
        return headers
    triggered = [t for d in decisions for t in d.triggered]
    headers["x-guardrail-decision"] = shown_decision(decisions)
    headers["x-guardrail-policies"] = ",".join(dict.fromkeys(t.verdict.policy_id for t in triggered))
    headers["x-guardrail-labels"] = ",".join(dict.fromkeys(t.verdict.label or "" for t in triggered))
    unchecked = [f.policy_id for d in decisions for f in d.failures]
    if unchecked:
        headers["x-guardrail-unchecked"] = ",".join(dict.fromkeys(unchecked))
    return {k: header_value(v) for k, v in headers.items() if v}


def header_value(value: str) -> str:
    """Printable ASCII only: a label can come from the classifier's free text (a JSON policy's
    policy_category), and a newline or a non-latin-1 character would break the response."""
    return quote(value, safe=HEADER_SAFE)[:512]


def block_error(trigger: Triggered, request_id: str) -> dict[str, Any]:
    verdict = trigger.verdict
    label = f" ({verdict.label})" if verdict.label else ""
    return error_body(
        f"{trigger.refusal} [blocked by policy '{verdict.policy_id}'{label} on {verdict.phase}]",
        "invalid_request_error", "content_policy_violation", None,
        policy=verdict.policy_id, label=verdict.label, phase=verdict.phase, request_id=request_id,
    )


def refusal_completion(text: str, model: str, request_id: str, choices: int = 1) -> dict[str, Any]:
    """A normal chat.completion carrying the refusal, for chat UIs that show content but not errors."""
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text, "refusal": text},
             "finish_reason": "content_filter", "logprobs": None}
            for i in range(choices)
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def unavailable(decision: Decision) -> GuardrailProxyError:
    """The error for a phase whose checks could not all run. The text is fixed: what the classifier said
    goes to the log and the audit record, never to the client."""
    kinds = {f.kind for f in decision.failures}
    named = sorted({f.policy_id for f in decision.failures if f.policy_id != "*"})
    policies = f" ({', '.join(named)})" if named else ""
    if "too_many" in kinds:
        detail = next(f.message for f in decision.failures if f.kind == "too_many")
        return TooManyChecks(f"this request's {decision.phase} is too large to check ({detail}); send fewer "
                             "or shorter messages, or raise the route's max_checks")
    if "rejected" in kinds:
        return ContentNotCheckable(
            f"the guardrail's classifier refused this request's {decision.phase} text{policies}; it may be "
            "too long for the classifier. The request was not served.")
    if "overload" in kinds:
        return GuardrailOverloaded(
            f"the guardrail is overloaded and could not check this request's {decision.phase}{policies}; "
            "retry shortly.")
    failed = ", ".join(sorted({f"{f.policy_id} ({f.kind})" for f in decision.failures}))
    return GuardrailUnavailable(
        f"the guardrail could not check this request's {decision.phase} ({failed}); "
        "the route fails closed, so the request was not served. Retry later.")


def strongest(decision: Decision) -> Triggered:
    found = decision.strongest
    if found is None:
        raise ValueError("a block or rewrite decision has a triggered rule")
    return found


def rewrite_choices(body: dict[str, Any], decision: Decision) -> None:
    """Replace, in the completion's JSON, each violating choice with the safe text of the strongest rule that
    fired on it."""
    by_choice: dict[int, Triggered] = {}
    for trig in decision.triggered:
        current = by_choice.get(trig.verdict.subject)
        if current is None or ACTION_STRENGTH[trig.action] > ACTION_STRENGTH[current.action]:
            by_choice[trig.verdict.subject] = trig
    choices = body.get("choices", [])
    for position, choice in enumerate(choices):
        index = choice.get("index", 0)
        chosen = by_choice.get(index)
        if chosen is None or chosen.action.value not in ("rewrite", "block"):
            continue
        # A fresh choice from an allow-list: nothing of the violating one (logprobs, audio, annotations,
        # a provider's extra fields) rides along with the safe text.
        choices[position] = {"index": index, "message": {"role": "assistant", "content": chosen.safe_text},
                             "finish_reason": "content_filter", "logprobs": None}


def strip_logprobs(body: dict[str, Any]) -> None:
    """Replace each choice's logprobs with null: an alternative token in top_logprobs can carry any text."""
    for choice in body.get("choices") or ():
        if isinstance(choice, dict) and choice.get("logprobs") is not None:
            choice["logprobs"] = None
