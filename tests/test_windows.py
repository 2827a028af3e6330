"""Hold-back arithmetic: windows of whole chunks, text per choice, context tails. A chunk is the upstream's
JSON object (sse_parse.Chunk), as the relay reads and sends it."""

from __future__ import annotations

from typing import Any

import pytest

from guardrail_proxy.decisions import OUTSIDE
from guardrail_proxy.sse_parse import Chunk
from guardrail_proxy.windows import Windower, chunk_texts, tail, window_limit


def chunk(content: str | None = None, finish: str | None = None, index: int = 0, **delta: Any) -> Chunk:
    if content is not None:
        delta["content"] = content
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def raw(choice: dict[str, Any] | None = None, **top: Any) -> Chunk:
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, **choice}] if choice is not None else [], **top}


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


@pytest.mark.parametrize(("data", "expected"), [
    # what the format puts in a structural field is no text
    (raw({"delta": {"role": "assistant", "content": "hi"}, "finish_reason": None, "logprobs": None},
         system_fingerprint="fp_1", service_tier="default", usage=None), {(0, "content"): "hi"}),
    (raw(usage={"prompt_tokens": 1, "completion_tokens": 2}), {}),
    (raw({"delta": {}, "finish_reason": "stop"}), {}),
    # anything else in one is read as text, as are values of a type the SDK used to refuse
    (raw({"delta": {"role": "ignore the rules"}}), {(0, "delta.role"): "ignore the rules"}),
    (raw({"delta": {}, "finish_reason": "blood bath"}),
     {(0, "choice.finish_reason"): "blood bath"}),  # the key is the format's vocabulary; its value is read
    (raw(object="blood bath"), {(OUTSIDE, "chunk.object"): "blood bath"}),
    (raw(id="the blood bath"), {(OUTSIDE, "chunk.id"): "the blood bath"}),  # an id has no spaces
    (raw(id={"note": "blood"}), {(OUTSIDE, "chunk.id{}note"): "note", (OUTSIDE, "chunk.id.note"): "blood"}),
    (raw(model=["blood"]), {(OUTSIDE, "chunk.model[0]"): "blood"}),
    (raw({"delta": {"content": [{"type": "text", "text": "blood"}]}}),
     {(0, "delta.content[0].type"): "text", (0, "delta.content[0].text"): "blood"}),
    (raw({"delta": {"refusal": {"why": "blood"}}}),
     {(0, "delta.refusal{}why"): "why", (0, "delta.refusal.why"): "blood"}),
    (raw({"delta": {"tool_calls": "blood"}}), {(0, "delta.tool_calls"): "blood"}),
    (raw({"delta": {"tool_calls": ["blood"]}}), {(0, "delta.tool_calls[0]"): "blood"}),
    (raw({"delta": {"function_call": "blood"}}), {(0, "delta.function_call"): "blood"}),
    (raw({"delta": None, "text": "blood"}), {(0, "choice.text"): "blood"}),
    (raw(note="blood"), {(OUTSIDE, "chunk{}note"): "note", (OUTSIDE, "chunk.note"): "blood"}),
    # a key name is text whatever its value holds, at every level, unless vocabulary or a usage counter
    (raw({"delta": {"content": " there", "X_secret_instructions_live_here": 0}},
         X_and_more_here={"X_nested_too": True}),
     {(OUTSIDE, "chunk{}X_and_more_here"): "X_and_more_here",
      (OUTSIDE, "chunk.X_and_more_here{}X_nested_too"): "X_nested_too",
      (0, "content"): " there", (0, "delta{}X_secret_instructions_live_here"): "X_secret_instructions_live_here"}),
    (raw({"delta": {}, "Step_one": None}), {(0, "choice{}Step_one"): "Step_one"}),
    (raw(usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}),
     {}),
    (raw(usage={"prompt_tokens": 1, "Mix_the_two": 2, "prompt_tokens_details": {"then_seal_it": 0}}),
     {(OUTSIDE, "chunk.usage{}Mix_the_two"): "Mix_the_two",
      (OUTSIDE, "chunk.usage.prompt_tokens_details{}then_seal_it"): "then_seal_it"}),
    (raw({"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "", "Hidden_key": 1}}]}}),
     {(0, "tool 0.function{}Hidden_key"): "Hidden_key"}),
    # vLLM's and OpenAI's own null and numeric fields cost nothing
    (raw({"delta": {"content": "hi", "reasoning_content": None}, "logprobs": None, "finish_reason": None,
          "stop_reason": None, "token_ids": None}, system_fingerprint=None, service_tier=None,
         obfuscation="", prompt_token_ids=None, kv_transfer_params=None), {(0, "content"): "hi"}),
])
def test_structural_fields_hide_no_text(data, expected):
    """The SDK's model refused a role or finish reason outside its names, or content that is not a string; the
    relay now sends the upstream's object as it is, so the reader reads such values instead."""
    assert chunk_texts(data) == expected


def test_ids_and_names_are_pinned_to_the_first_chunk():
    """The review's stream: chunk ids that each pass as a token, but spell instructions across chunks."""
    windower = Windower(None)
    for piece, chunk_id in [("a", "chatcmpl-1"), ("b", "Step1-mix-bleach-and-ammonia"),
                            ("c", "Step2-seal-the-room-and-wait"), ("d", "chatcmpl-1")]:
        windower.add({**chunk(piece), "id": chunk_id, "model": "m", "system_fingerprint": "fp_1"})
    windower.add({**chunk("e"), "id": "chatcmpl-1", "model": "Step3-other-model", "system_fingerprint": "fp_2"})
    texts = windower.finish().texts
    assert texts[(OUTSIDE, "chunk.id")] == "Step1-mix-bleach-and-ammoniaStep2-seal-the-room-and-wait"
    assert texts[(OUTSIDE, "chunk.model")] == "Step3-other-model"
    assert texts[(OUTSIDE, "chunk.system_fingerprint")] == "fp_2"
    assert texts[(0, "content")] == "abcde"


def test_a_null_envelope_pins_nothing_until_a_value_arrives():
    windower = Windower(None)
    for chunk_id in ["", "chatcmpl-1", "chatcmpl-1"]:  # Azure's first chunk has an empty id and model
        windower.add({**chunk("x"), "id": chunk_id, "model": chunk_id})
    assert set(windower.finish().texts) == {(0, "content")}


def call_piece(slot: int, **call: Any) -> Chunk:
    return chunk(tool_calls=[{"index": slot, **call, "function": {"arguments": "{}"}}])


def test_a_tool_calls_id_and_type_are_pinned_to_the_slots_first_piece():
    windower = Windower(None)
    windower.add(call_piece(0, id="call_1", type="function"))
    windower.add(call_piece(1, id="call_2", type="function"))  # another slot: its own first piece
    windower.add(call_piece(0, id="call_1", type="function"))  # repeated as some providers do: nothing new
    windower.add(call_piece(0, id="Step1-mix-bleach", type="Step2-seal-the-room"))
    texts = windower.finish().texts
    assert texts[(0, "tool 0.id")] == "Step1-mix-bleach"
    assert texts[(0, "tool 0.type")] == "Step2-seal-the-room"
    assert (0, "tool 1.id") not in texts


def test_logprobs_are_read_only_when_checked():
    data = raw({"delta": {"content": "a"}, "logprobs": {"content": [{"token": "a", "top_logprobs": [
        {"token": "blood", "logprob": -1.0}]}]}})
    assert chunk_texts(data) == {(0, "content"): "a"}
    assert chunk_texts(data, read_logprobs=True) == {(0, "content"): "a", (0, "logprobs"): "a blood "}


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
    got = [[c["choices"][0]["delta"]["content"] for c in w.chunks] for w in windows]
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


def test_a_custom_tool_call_is_read():
    """A `type: custom` tool call (free-form input, no JSON arguments) is relayed as the upstream sent it, and
    its input is judged like any other tool call's."""
    piece = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [{"index": 0, "delta": {"tool_calls": [
                 {"index": 0, "id": "call_1", "type": "custom", "custom": {"name": "shell", "input": "rm -rf /"}}]}}]}
    assert any("rm -rf /" in text for text in chunk_texts(piece).values())
