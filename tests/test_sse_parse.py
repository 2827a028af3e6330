"""Reading an upstream's server-sent events (sse_parse.py): lines from a body in arbitrary pieces, then chunks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from guardrail_proxy import sse_parse
from guardrail_proxy.errors import UpstreamError
from guardrail_proxy.sse_parse import chunks_from_lines, parse_chunk, sse_lines


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def lines(*parts: bytes) -> list[str]:
    return [line async for line in sse_lines(pieces(*parts))]


@pytest.mark.parametrize(("parts", "expected"), [
    ((b"data: a\n\ndata: b\n\n",), ["data: a", "", "data: b", ""]),
    ((b"da", b"ta: a", b"\n", b"\n"), ["data: a", ""]),
    ((b"data: a\r\n\r\n",), ["data: a", ""]),
    ((b"data: a\r", b"\n\r\n"), ["data: a", ""]),      # a CRLF cut in two is one line end
    ((b"data: a\r\rdata: b\r",), ["data: a", "", "data: b"]),  # bare CR ends a line too
    ((b"data: a",), ["data: a"]),                      # no line end at the very end
    ((b"data: \xc3", b"\xa9\n"), ["data: é"]),         # a character cut in two
    ((b"data: " + b"x" * 200_000 + b"\n",), ["data: " + "x" * 200_000]),  # longer than aiohttp's line reader takes
    ((), []),
])
async def test_sse_lines(parts, expected):
    assert await lines(*parts) == expected


async def test_a_line_without_end_is_cut_off():
    piece = b"x" * (1024 * 1024)
    with pytest.raises(UpstreamError):
        await lines(*[piece] * (sse_parse.MAX_LINE_BYTES // len(piece) + 1))


async def test_bytes_that_are_not_utf8_fail():
    with pytest.raises(UnicodeDecodeError):
        await lines(b"data: \xff\n")


async def test_chunks_from_pieces_stop_at_done():
    body = (b'data: {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", '
            b'"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n', b"data: [DONE]\n\n", b"data: {junk\n\n")
    chunks = [c async for c in chunks_from_lines(sse_lines(pieces(*body)))]
    assert chunks == [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": 0, "delta": {"content": "hi"}}]}]  # the upstream's object, as sent


async def test_an_event_that_is_not_strict_json_is_an_error():
    body = b'data: {"choices": [{"index": 0, "delta": {}}], "x": NaN}\n\n'
    with pytest.raises(UpstreamError):
        [c async for c in chunks_from_lines(sse_lines(pieces(body)))]


@pytest.mark.parametrize("data", [
    '{"choices": [{"index": 0, "delta": {"content": "hi"}}]}',
    '{"id": null, "choices": [{"index": 0, "delta": {"content": "hi"}}]}',
])
def test_missing_envelope_fields_are_filled_in(data):
    chunk = parse_chunk(None, data)
    assert (chunk["id"], chunk["object"], chunk["created"], chunk["model"]) == ("", "chat.completion.chunk", 0, "")
    assert chunk["choices"] == [{"index": 0, "delta": {"content": "hi"}}]


@pytest.mark.parametrize("data", [
    '{"choices": [], "usage": {"prompt_tokens": 1}}',        # a usage chunk
    '{"choices": [{"index": 1}]}',                           # no delta
    '{"choices": [{"index": 0, "delta": null, "finish_reason": "stop"}]}',
    '{"choices": [{"index": 0, "delta": {"content": ["a list"]}, "odd": {"x": 1}}], "vendor": "text"}',
])
def test_the_shape_the_proxy_relies_on_and_nothing_more(data):
    """Only the object, its choices list and each choice's integer index and object delta are checked: odd
    values inside are relayed and read as text by the window reader (test_windows.py)."""
    assert parse_chunk(None, data)["choices"] == json.loads(data)["choices"]


@pytest.mark.parametrize(("data", "message"), [
    ('["not", "an", "object"]', "not a chat.completion.chunk"),
    ('{"id": "c"}', "not a chat.completion.chunk"),
    ('{"choices": {"index": 0}}', "not a chat.completion.chunk"),
    ('{"choices": ["text"]}', "not a chat.completion.chunk"),
    ('{"choices": [{"delta": {"content": "hi"}}]}', "not a chat.completion.chunk"),   # no index
    ('{"choices": [{"index": "0", "delta": {}}]}', "not a chat.completion.chunk"),
    ('{"choices": [{"index": true, "delta": {}}]}', "not a chat.completion.chunk"),
    ('{"choices": [{"index": -1, "delta": {"content": "hi"}}]}', "not a chat.completion.chunk"),
    ('{"choices": [{"index": 0, "delta": "hi"}]}', "not a chat.completion.chunk"),
    ('{"choices": [], "error": {"message": "overloaded"}}', "failed mid-stream"),
    ('{"choices": [', "not JSON"),
])
def test_a_malformed_event_is_an_upstream_error(data, message):
    with pytest.raises(UpstreamError) as info:
        parse_chunk(None, data)
    assert message in info.value.message and info.value.status_code == 502


def test_an_error_event_by_name_is_an_upstream_error():
    with pytest.raises(UpstreamError):
        parse_chunk("error", '{"choices": []}')
