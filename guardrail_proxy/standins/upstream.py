"""STAND-IN for an OpenAI-compatible chat model. Not a model: it answers by rules.

Reply: the first rule whose trigger is in the last user message gives the text; otherwise
"Stand-in reply to: <last user message>". When the request offers `tools` and the last user message
mentions "tool", it answers with a call to the first tool instead, its arguments carrying the message.
Streams as OpenAI SSE when `stream` is true (one word per chunk), with usage when asked.
Every request body is kept in `behaviour.requests` so tests can assert what reached the model.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class UpstreamBehaviour:
    replies: dict[str, str] = field(default_factory=dict)  # trigger -> reply text
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    cancelled: int = 0  # streams whose client went away before the end
    completed: int = 0
    # Tests of odd upstreams: a non-streamed body sent verbatim, or SSE events sent verbatim
    # (a float pauses that many seconds; "DROP" breaks the connection).
    raw_completion: dict[str, Any] | None = None
    raw_events: list[bytes | float | str] | None = None


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def reply_for(body: dict[str, Any], behaviour: UpstreamBehaviour) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, tool_calls) for one request."""
    text = last_user_text(body)
    tools = body.get("tools") or []
    if tools and "tool" in text.lower():
        name = tools[0].get("function", {}).get("name", "tool")
        call = {"id": "call_standin_1", "type": "function",
                "function": {"name": name, "arguments": json.dumps({"query": text})}}
        return None, [call]
    for trigger, reply in behaviour.replies.items():
        if trigger.lower() in text.lower():
            return reply, []
    return f"Stand-in reply to: {text}", []


def build_upstream_app(behaviour: UpstreamBehaviour) -> Starlette:
    async def chat(request: Request) -> Response:
        body = json.loads(await request.body())
        behaviour.requests.append(body)
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.status != 200:
            return JSONResponse({"error": {"message": f"stand-in upstream says {behaviour.status}",
                                           "type": "invalid_request_error", "code": "standin_error"}},
                                behaviour.status)
        if body.get("stream") and behaviour.raw_events is not None:
            return StreamingResponse(raw_sse(behaviour.raw_events), media_type="text/event-stream")
        if behaviour.raw_completion is not None:
            return JSONResponse(behaviour.raw_completion)
        content, calls = reply_for(body, behaviour)
        rid = f"chatcmpl-up-{len(behaviour.requests)}"
        model = body.get("model", "stand-in")
        usage = {"prompt_tokens": 10, "completion_tokens": len((content or "").split()) or 1}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        finish = "tool_calls" if calls else "stop"
        if body.get("stream"):
            return StreamingResponse(sse(rid, model, content, calls, finish, usage, body, behaviour),
                                     media_type="text/event-stream")
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        choices = [{"index": i, "message": message, "finish_reason": finish, "logprobs": None}
                   for i in range(int(body.get("n") or 1))]
        behaviour.completed += 1
        return JSONResponse({"id": rid, "object": "chat.completion", "created": int(time.time()),
                             "model": model, "choices": choices, "usage": usage})

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": "stand-in-chat", "object": "model", "created": 0, "owned_by": "stand-in"}]})

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ])


async def raw_sse(events: list[bytes | float | str]) -> AsyncIterator[bytes]:
    for event in events:
        if isinstance(event, float):
            await asyncio.sleep(event)
        elif event == "DROP":
            raise ConnectionResetError("stand-in drops the connection mid-stream")
        elif isinstance(event, bytes):
            yield event


async def sse(rid: str, model: str, content: str | None, calls: list[dict[str, Any]], finish: str,
              usage: dict[str, int], body: dict[str, Any], behaviour: UpstreamBehaviour) -> AsyncIterator[bytes]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        words = (content or "").split(" ")
        for i, word in enumerate(words if content else []):
            if behaviour.chunk_delay_s:
                await asyncio.sleep(behaviour.chunk_delay_s)
            yield chunk({"content": word if i == 0 else " " + word})
        for i, call in enumerate(calls):
            args = call["function"]["arguments"]
            yield chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                         "function": {"name": call["function"]["name"], "arguments": ""}}]})
            for start in range(0, len(args), 8):
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": args[start:start + 8]}}]})
        yield chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [], "usage": usage}
            yield b"data: " + json.dumps(obj).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
        behaviour.completed += 1
    except (asyncio.CancelledError, GeneratorExit):
        behaviour.cancelled += 1
        raise
