"""Reading an upstream's server-sent events into chat.completion.chunk values. Pure, apart from
iterating the lines it is given.

Per the SSE format an event's data may span several `data:` lines (joined with newlines) and ends at a
blank line; `:` lines are comments. Chunks are validated with pydantic's JSON parser, which costs a few
microseconds where the SDK's generic constructor cost ~70 here. Error events become UpstreamError,
whether sent as `event: error`, as `{"error": ...}`, or inside an otherwise chunk-shaped object. The client
gets a fixed text; what the upstream sent (unchecked text) goes to the error's detail: log and audit only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from openai.types.chat import ChatCompletionChunk
from pydantic import ValidationError

from .errors import UpstreamError

ENVELOPE = {"id": "", "object": "chat.completion.chunk", "created": 0, "model": ""}


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    """(event name, data) for each event that carries data."""
    event: str | None = None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
    if data:
        yield event, "\n".join(data)


def error_of(event: Any) -> UpstreamError | None:
    error = event.get("error") if isinstance(event, dict) else None
    if not error:
        return None
    message = error.get("message") if isinstance(error, dict) else str(error)
    return UpstreamError("the upstream model failed mid-stream", detail=str(message)[:500])


def parse_chunk(event_name: str | None, data: str) -> ChatCompletionChunk:
    try:
        chunk = ChatCompletionChunk.model_validate_json(data)
    except ValidationError:
        chunk = None
    if chunk is not None:
        failure = error_of(chunk.model_extra)
        if failure or event_name == "error":
            raise failure or UpstreamError("the upstream sent an error event", detail=data[:500])
        return chunk
    try:
        event = json.loads(data)
    except ValueError:
        raise UpstreamError("the upstream sent an event that is not JSON", detail=data[:500]) from None
    failure = error_of(event)
    if failure or event_name == "error":
        raise failure or UpstreamError("the upstream sent an error event", detail=data[:500])
    if isinstance(event, dict) and isinstance(event.get("choices"), list):
        # Some OpenAI-compatible servers leave out envelope fields; the choices are what matters.
        try:
            return ChatCompletionChunk.model_validate({**ENVELOPE, **{k: v for k, v in event.items() if v is not None}})
        except ValidationError:
            pass
    raise UpstreamError("the upstream sent an event that is not a chat.completion.chunk", detail=data[:500])


async def chunks_from_lines(lines: AsyncIterator[str]) -> AsyncIterator[ChatCompletionChunk]:
    async for event_name, data in sse_events(lines):
        if data.strip() == "[DONE]":
            return
        if not data.strip():
            continue  # a keep-alive with empty data
        yield parse_chunk(event_name, data)
