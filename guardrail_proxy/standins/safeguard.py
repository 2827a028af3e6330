"""STAND-IN for a vLLM-served gpt-oss-safeguard. Not a classifier: it answers by keyword rules.

Wire format as vLLM's /v1/chat/completions: the verdict in `message.content`, the chain of thought in
`message.reasoning` (or `reasoning_content`, as older vLLM). The answer format follows the policy in the
system message: its label prefix (e.g. `GV` -> `GV0`/`GV2`), a JSON verdict when the policy asks for
`"violation"`, else `0`/`1`; several policies in one prompt (bundles.py) get one `<id>: <answer>` line
each. Only the part of the user message after "[classify this: ...]" is matched, so conversation context
does not trigger rules.

Faults for tests: `mode` = "ok" | "garbage" | "empty" | "error" (HTTP 500),
`delay_s` before answering, `fail_first` answers HTTP 503 that many times before behaving.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOKEN_COUNTERS = ("prompt_tokens", "cached_tokens", "completion_tokens")
PREFIX = re.compile(r"\b([A-Z]{1,6})0\b")
TARGET = re.compile(r"\[classify this: [a-z]+\]\n", re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    """When `trigger` (case-insensitive) is in the content and `policy` (if set) is in the policy text,
    answer `level` (a label level, or 1 for binary/JSON policies), or the literal `answer` when set."""

    trigger: str
    level: int = 2
    policy: str | None = None
    answer: str | None = None


@dataclass
class SafeguardBehaviour:
    rules: list[Rule] = field(default_factory=list)
    mode: str = "ok"
    delay_s: float = 0.0
    fail_first: int = 0
    reasoning_field: str = "reasoning"
    requests: list[dict[str, Any]] = field(default_factory=list)
    injected: str | None = None  # answer this literal content (tests of the parser through HTTP)
    raw_body: str | None = None  # send this verbatim as the 200 response body (malformed servers)
    max_content_chars: int | None = None  # longer content gets vLLM's HTTP 400 for an over-long prompt
    served_models: tuple[str, ...] = ()  # when set, another model name gets vLLM's HTTP 404
    # usage: "fixed" reports 100 prompt + 20 completion tokens; "chars" estimates them as characters / 4, with
    # `reasoning_tokens` words of reasoning per policy judged (a real model reasons for hundreds of tokens), and
    # reports a system message seen before as cached prompt tokens, as vLLM's prefix cache would serve it.
    usage: str = "fixed"
    reasoning_tokens: int = 0
    seen_prefixes: set[str] = field(default_factory=set)
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_COUNTERS, 0))  # since the last reset


def target_text(content: str) -> str:
    parts = TARGET.split(content)
    return parts[-1]


BUNDLE_SECTION = re.compile(r"^=== POLICY (\S+) ===\n(.*?)\n=== END POLICY \1 ===$", re.DOTALL | re.MULTILINE)


def answer_any(policy_text: str, content: str, rules: list[Rule]) -> tuple[str, str, int]:
    """(content, reasoning, policies judged): several policies in one prompt (bundles.py) get one
    `<id>: <answer>` line each."""
    sections = BUNDLE_SECTION.findall(policy_text)
    if not sections:
        return (*answer_for(policy_text, content, rules), 1)
    answers = [(policy_id, *answer_for(text, content, rules)) for policy_id, text in sections]
    return ("\n".join(f"{policy_id}: {answer}" for policy_id, answer, _ in answers),
            " ".join(reasoning for _, _, reasoning in answers), len(answers))


def usage_for(behaviour: SafeguardBehaviour, messages: list[Any], answer: str, reasoning: str) -> dict[str, Any]:
    if behaviour.usage != "chars":
        return {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    system = str(messages[0].get("content", "")) if messages else ""
    prompt = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 4 * len(messages)
    completion = (len(answer) + len(reasoning)) // 4
    cached = len(system) // 4 if system in behaviour.seen_prefixes else 0
    behaviour.seen_prefixes.add(system)
    for name, value in (("prompt_tokens", prompt), ("cached_tokens", cached), ("completion_tokens", completion)):
        behaviour.tokens[name] += value
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def answer_for(policy_text: str, content: str, rules: list[Rule]) -> tuple[str, str]:
    """(content, reasoning) for one request."""
    target = target_text(content).lower()
    hit = next((r for r in rules if r.trigger.lower() in target and (r.policy is None or r.policy in policy_text)),
               None)
    level = hit.level if hit else 0
    reasoning = (f"Stand-in: the text contains '{hit.trigger}', which the test rules map to level {level}."
                 if hit else "Stand-in: no rule matched, so the text is allowed.")
    if hit and hit.answer is not None:
        return hit.answer, reasoning
    prefix = PREFIX.search(policy_text)
    if prefix:
        return f"{prefix.group(1)}{level}", reasoning
    if '"violation"' in policy_text:
        category = "stand-in-rule" if level else None
        return json.dumps({"violation": int(bool(level)), "policy_category": category,
                           "rationale": reasoning}), reasoning
    return str(int(bool(level))), reasoning


def build_safeguard_app(behaviour: SafeguardBehaviour) -> Starlette:
    async def chat(request: Request) -> Response:
        body = json.loads(await request.body())
        behaviour.requests.append(body)
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.fail_first > 0:
            behaviour.fail_first -= 1
            return JSONResponse({"error": {"message": "stand-in overloaded", "type": "server_error"}}, 503)
        if behaviour.served_models and body.get("model") not in behaviour.served_models:
            return JSONResponse({"object": "error", "type": "NotFoundError", "code": 404, "param": None,
                                 "message": f"The model `{body.get('model')}` does not exist."}, 404)
        if behaviour.raw_body is not None:
            return Response(behaviour.raw_body, 200, media_type="application/json")
        if behaviour.mode == "error":
            return JSONResponse({"error": {"message": "stand-in failure", "type": "server_error"}}, 500)
        messages = body.get("messages") or [{}, {}]
        if behaviour.max_content_chars is not None and len(str(messages[-1].get("content", ""))) > \
                behaviour.max_content_chars:
            return JSONResponse({"object": "error", "type": "BadRequestError", "code": 400, "param": None,
                                 "message": "This model's maximum context length is 8192 tokens. However, you "
                                            "requested more tokens in the messages."}, 400)
        content, reasoning, judged = answer_any(str(messages[0].get("content", "")),
                                                str(messages[-1].get("content", "")), behaviour.rules)
        if behaviour.reasoning_tokens:
            reasoning += " thinking" * (behaviour.reasoning_tokens * judged)
        if behaviour.mode == "garbage":
            content = "Not sure. It might be fine, or not."
        elif behaviour.mode == "empty":
            content = ""
        if behaviour.injected is not None:
            content = behaviour.injected
        message = {"role": "assistant", "content": content}
        if behaviour.reasoning_field:  # empty: a server that drops the reasoning, or a model without any
            message[behaviour.reasoning_field] = reasoning
        return JSONResponse({
            "id": f"chatcmpl-standin-{len(behaviour.requests)}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", "stand-in"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage_for(behaviour, messages, content, reasoning),
        })

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": "openai/gpt-oss-safeguard-20b", "object": "model", "created": 0, "owned_by": "stand-in"}]})

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ])
