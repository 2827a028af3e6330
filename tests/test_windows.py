"""Hold-back arithmetic: windows of whole chunks, text per choice, context tails."""

from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletionChunk

from guardrail_proxy.windows import Windower, chunk_texts, tail, window_limit


def chunk(content: str | None = None, finish: str | None = None, index: int = 0, **delta) -> ChatCompletionChunk:
    if content is not None:
        delta["content"] = content
    return ChatCompletionChunk.model_validate({
        "id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}]})


def test_chunk_texts_reads_content_refusal_and_tool_calls():
    assert chunk_texts(chunk("hi")) == {(0, "content"): "hi"}
    assert chunk_texts(chunk(refusal="no")) == {(0, "refusal"): "no"}
    call = chunk(tool_calls=[{"index": 0, "id": "1", "type": "function", "function": {"name": "f", "arguments": "{"}}])
    assert chunk_texts(call) == {(0, "tool 0"): "\n[tool call f] {"}
    assert chunk_texts(chunk(finish="stop")) == {}
    assert chunk_texts(chunk("x", index=2)) == {(2, "content"): "x"}


def test_each_destination_accumulates_on_its_own():
    """Interleaved pieces of two tool calls, and content interrupted by reasoning, are each read whole."""
    windower = Windower(None)
    pieces = [chunk(tool_calls=[{"index": 0, "function": {"name": "a", "arguments": "kill"}}]),
              chunk(tool_calls=[{"index": 1, "function": {"name": "b", "arguments": "harm"}}]),
              chunk(tool_calls=[{"index": 0, "function": {"arguments": "ing spree"}}]),
              chunk("the blo"), chunk(reasoning_content="thinking"), chunk("od bath"),
              chunk(audio={"transcript": "spo"}), chunk(audio={"transcript": "ken"})]
    for piece in pieces:
        windower.add(piece)
    texts = windower.finish().texts
    assert texts[(0, "tool 0")] == "\n[tool call a] killing spree"
    assert texts[(0, "tool 1")] == "\n[tool call b] harm"
    assert texts[(0, "content")] == "the blood bath"
    assert texts[(0, "delta.reasoning_content")] == "thinking"
    assert texts[(0, "delta.audio.transcript")] == "spoken"


@pytest.mark.parametrize(("size", "pieces", "expected"), [
    (5, ["ab", "cd", "ef", "g"], [["ab", "cd", "ef"], ["g"]]),
    (2, ["ab", "c", "d", "e"], [["ab"], ["c", "d"], ["e"]]),
    (None, ["ab", "cd"], [["ab", "cd"]]),
    (1, ["a", "b"], [["a"], ["b"], []]),
])
def test_windows_are_whole_chunks(size, pieces, expected):
    windower = Windower(size)
    windows = [w for p in pieces if (w := windower.add(chunk(p))) is not None]
    windows.append(windower.finish())
    got = [[c.choices[0].delta.content for c in w.chunks] for w in windows]
    if got[-1] == [] and expected[-1] != []:
        got = got[:-1]
    assert got == expected


@pytest.mark.parametrize(("first", "size", "growth", "expected"), [
    (48, 800, 4, [48, 192, 768, 800, 800, 800]),
    (48, 400, 2, [48, 96, 192, 384, 400, 400]),
    (1, 4, 2, [1, 2, 4, 4, 4, 4]),
    (400, 400, 4, [400] * 6),
    (500, 400, 4, [400] * 6),  # a first window larger than the cap: fixed windows
    (48, 400, 1, [48] * 6),    # no growth: fixed windows of the first size
    (3, 10, 2, [3, 6, 10, 10, 10, 10]),
])
def test_windows_grow_from_the_first_to_the_cap(first, size, growth, expected):
    assert [window_limit(i, first, size, growth) for i in range(6)] == expected


def test_window_limit_does_not_overflow_on_very_long_streams():
    assert window_limit(10_000, 48, 400, 16) == 400


def test_growing_windows_close_at_each_limit():
    windower = Windower(8, first=2, growth=2)
    closed = [w for p in "abcdefghijklmnopqrstuvwxyz" if (w := windower.add(chunk(p))) is not None]
    assert ["".join(w.texts[(0, "content")] for _ in [0]) for w in closed] == ["ab", "cdef", "ghijklmn", "opqrstuv"]
    assert windower.finish().texts == {(0, "content"): "wxyz"}


def test_window_knows_the_text_before_it():
    windower = Windower(3)
    first = windower.add(chunk("abc"))
    second = windower.add(chunk("def"))
    assert first is not None and second is not None
    assert first.before == {} and second.before == {(0, "content"): "abc"}


def test_textless_chunks_travel_with_their_window():
    windower = Windower(100)
    windower.add(chunk("", role="assistant"))
    windower.add(chunk("hello"))
    windower.add(chunk(finish="stop"))
    final = windower.finish()
    assert len(final.chunks) == 3 and final.texts == {(0, "content"): "hello"}


@pytest.mark.parametrize(("text", "chars", "expected"), [
    ("hello world", 0, ""), ("hello", 10, "hello"), ("one two three", 9, "two three"), ("abcdefgh", 3, "fgh"),
])
def test_tail(text, chars, expected):
    assert tail(text, chars) == expected
