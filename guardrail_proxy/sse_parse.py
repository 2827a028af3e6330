"""Reading an upstream's server-sent events into chunks. Pure, apart from iterating the lines it is given.

A chunk is the upstream's own JSON object (`Chunk`, a dict), parsed once (wire_json.loads, orjson) and never
validated into an SDK model: the proxy relays that very object with its own edits only, and reads the text
it judges from it (windows.chunk_texts). Checked here is only the shape the proxy relies on (`chunk_shaped`):
an object whose `choices` is a list of objects, each with an integer `index` and, where present, an object
`delta`. Everything inside those is the window reader's business, which treats a value of an unexpected type
as text to judge rather than as structure. Envelope fields some OpenAI-compatible servers leave out (`id`,
`object`, `created`, `model`) are filled in, so a client's SDK always gets them.

Per the SSE format an event's data may span several `data:` lines (joined with newlines) and ends at a
blank line; `:` lines are comments. Error events become UpstreamError, whether sent as `event: error`, as
`{"error": ...}`, or inside an otherwise chunk-shaped object. The client gets a fixed text; what the upstream
sent (unchecked text) goes to the error's detail: log and audit only.

`sse_lines` cuts a response body, in whatever pieces the network delivers it, into lines: any of the three
line ends the format allows, lines of any length (an HTTP client's own line reader caps them, at 64 KiB in
aiohttp, and a tool call's arguments or a chunk with logprobs can be longer), and no line longer than
MAX_LINE_BYTES, so an upstream that never ends a line cannot grow the proxy's memory without bound.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .errors import UpstreamError
from .wire_json import JSONReadError, loads

Chunk = dict[str, Any]  # one chat.completion.chunk: the upstream's JSON object, as chunk_shaped checked it
ENVELOPE = (("id", ""), ("object", "chat.completion.chunk"), ("created", 0), ("model", ""))
MAX_LINE_BYTES = 16 * 1024 * 1024


async def sse_lines(pieces: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The lines of a body read in pieces, without their line ends (CRLF, LF or CR). Raises UnicodeDecodeError
    for bytes that are not UTF-8 and UpstreamError for a line over MAX_LINE_BYTES."""
    partial: list[bytes] = []  # the start of a line whose end has not arrived yet
    size = 0
    after_cr = False  # the last piece ended in CR: a LF opening the next one is the same line end
    async for piece in pieces:
        if after_cr and piece.startswith(b"\n"):
            piece = piece[1:]
        after_cr = piece.endswith(b"\r")
        if b"\r" in piece:
            piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in piece:
            partial.append(piece)
            size += len(piece)
            if size > MAX_LINE_BYTES:
                raise UpstreamError("the upstream sent a line longer than the proxy reads",
                                    detail=f"more than {MAX_LINE_BYTES} bytes without a line end")
            continue
        first, *lines, rest = piece.split(b"\n")
        if partial:
            first = b"".join([*partial, first])
        yield first.decode()
        for line in lines:
            yield line.decode()
        partial, size = ([rest], len(rest)) if rest else ([], 0)
    if partial:
        yield b"".join(partial).decode()


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


def valid_index(value: object) -> bool:
    """A choice index: a non-negative integer (a negative one would collide with the relay's marker for text
    outside the choices)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def chunk_shaped(event: object) -> bool:
    """An object whose `choices` is a list of objects, each with an integer `index` and an object `delta` (or
    none): what the relay and the window reader rely on."""
    choices = event.get("choices") if isinstance(event, dict) else None
    return isinstance(choices, list) and all(
        isinstance(c, dict) and valid_index(c.get("index")) and isinstance(c.get("delta") or {}, dict)
        for c in choices)


def as_chunk(event: Any) -> Chunk | None:
    """`event` as a chunk when it is chunk-shaped (else None), with the envelope fields some OpenAI-compatible
    servers leave out filled in: the choices are what matters, and a client's SDK expects the envelope."""
    if not chunk_shaped(event):
        return None
    for key, default in ENVELOPE:
        if event.get(key) is None:
            event[key] = default
    return event  # chunk_shaped: a dict


def parse_chunk(event_name: str | None, data: str) -> Chunk:
    try:
        event = loads(data)
    except JSONReadError:
        raise UpstreamError("the upstream sent an event that is not JSON", detail=data[:500]) from None
    failure = error_of(event)
    if failure or event_name == "error":
        raise failure or UpstreamError("the upstream sent an error event", detail=data[:500])
    chunk = as_chunk(event)
    if chunk is None:
        raise UpstreamError("the upstream sent an event that is not a chat.completion.chunk", detail=data[:500])
    return chunk


async def chunks_from_lines(lines: AsyncIterator[str]) -> AsyncIterator[Chunk]:
    async for event_name, data in sse_events(lines):
        if data.strip() == "[DONE]":
            return
        if not data.strip():
            continue  # a keep-alive with empty data
        yield parse_chunk(event_name, data)
