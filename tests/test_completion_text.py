"""What gets classified in a non-streamed completion (completion_text.py): every string the client receives,
structural fields skipped only while they hold what the wire format puts there."""

from __future__ import annotations

from typing import Any

import pytest

from guardrail_proxy.completion_text import choice_text, completion_subjects
from guardrail_proxy.config import OutputCheck, PolicyRule, RouteConfig
from guardrail_proxy.decisions import OUTSIDE
from guardrail_proxy.protocol import ChatRequest

ROUTE = RouteConfig(name="r", models=("m",), upstream="u", policies=(PolicyRule(id="p"),),
                    output=OutputCheck(context_turns=0))
CHAT = ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hello"}]})


def completion(message: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    choice = {"index": 0, "message": message or {"role": "assistant", "content": "hi"}, "finish_reason": "stop",
              "logprobs": None, **fields.pop("choice", {})}
    return {"id": "chatcmpl-9f2c41e0b5d84c1f8e7a2b3c4d5e6f70", "object": "chat.completion", "created": 1700000000,
            "model": "meta-llama/Llama-3.1-8B-Instruct", "system_fingerprint": "fp_44709d6fcb",
            "service_tier": "default", "choices": [choice],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}, **fields}


def texts(body: dict[str, Any]) -> dict[int, str]:
    return {s.index: s.target.text for s in completion_subjects(body, CHAT, ROUTE)}


def test_a_plain_completion_is_its_message_text_only():
    assert texts(completion()) == {0: "hi"}


@pytest.mark.parametrize(("body", "expected"), [
    # The finding: each of these reached the client with a 200 while the classifier saw only "hi".
    (completion({"role": "UNSAFE-ROLE-TEXT", "content": "hi"}), {0: "UNSAFE-ROLE-TEXT\nhi"}),
    (completion(choice={"finish_reason": "UNSAFE-FINISH"}), {0: "hi\nUNSAFE-FINISH"}),
    (completion(model="UNSAFE MODEL TEXT"), {0: "hi", OUTSIDE: "UNSAFE MODEL TEXT"}),
    (completion(id="UNSAFE ID TEXT"), {0: "hi", OUTSIDE: "UNSAFE ID TEXT"}),
    (completion(object="UNSAFE-OBJECT"), {0: "hi", OUTSIDE: "UNSAFE-OBJECT"}),
    (completion(created="UNSAFE CREATED"), {0: "hi", OUTSIDE: "UNSAFE CREATED"}),
    (completion(system_fingerprint="UNSAFE FINGERPRINT"), {0: "hi", OUTSIDE: "UNSAFE FINGERPRINT"}),
    (completion(service_tier="UNSAFE-TIER"), {0: "hi", OUTSIDE: "UNSAFE-TIER"}),
    (completion(model={"name": "UNSAFE IN AN OBJECT"}), {0: "hi", OUTSIDE: "UNSAFE IN AN OBJECT"}),
    (completion(model="x" * 65), {0: "hi", OUTSIDE: "x" * 65}),  # past the token bound
    (completion(choice={"index": 0, "finish_reason": ["UNSAFE", "LIST"]}), {0: "hi\nUNSAFE\nLIST"}),
    # A message's own structural field: the tool call id of a tool message sent back as a reply.
    (completion({"role": "tool", "tool_call_id": "UNSAFE TOOL CALL ID", "content": "hi"}),
     {0: "hi\nUNSAFE TOOL CALL ID"}),
    # A tool call's id and type.
    (completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "UNSAFE CALL ID", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
     {0: "[tool call f] {}\nUNSAFE CALL ID"}),
])
def test_every_string_the_client_gets_is_read(body, expected):
    assert texts(body) == expected


def test_the_wire_formats_own_null_and_numeric_fields_cost_nothing():
    """OpenAI's and vLLM's replies as sent, nulls and usage details included: the one text is the message."""
    openai = completion({"role": "assistant", "content": "hi", "refusal": None, "annotations": [], "audio": None,
                         "function_call": None, "tool_calls": None},
                        usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2,
                               "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                               "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                             "accepted_prediction_tokens": 0,
                                                             "rejected_prediction_tokens": 0}})
    vllm = completion({"role": "assistant", "content": "hi", "reasoning_content": None, "tool_calls": []},
                      choice={"stop_reason": None, "token_ids": None}, system_fingerprint=None, service_tier=None,
                      prompt_logprobs=None, prompt_token_ids=None, kv_transfer_params=None,
                      usage={"prompt_tokens": 1, "total_tokens": 2, "completion_tokens": 1,
                             "prompt_tokens_details": None})
    assert texts(openai) == texts(vllm) == {0: "hi"}


@pytest.mark.parametrize(("body", "expected"), [
    # A key name is text whatever its value holds: a number, a boolean, null, or an object of such.
    (completion({"role": "assistant", "content": "hi", "X_secret_instructions_live_here": 0}),
     {0: "hi\nX_secret_instructions_live_here"}),
    (completion({"role": "assistant", "content": "hi", "X_null": None}), {0: "hi\nX_null"}),
    (completion(X_and_more_here={"X_nested_too": True}), {0: "hi", OUTSIDE: "X_and_more_here\nX_nested_too"}),
    (completion(choice={"Step_one": 1}), {0: "hi\nStep_one"}),
    (completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}", "Inner_key": None},
         "Outer_key": 0}]}), {0: "[tool call f] {}\nOuter_key\nInner_key"}),
    # A usage counter is skipped only under its own key; any other key there is read.
    (completion(usage={"prompt_tokens": 1, "Mix_the_two": 2, "completion_tokens_details": {"then_wait": 0}}),
     {0: "hi", OUTSIDE: "Mix_the_two\nthen_wait"}),
    (completion(meta={"prompt_tokens": 1}), {0: "hi", OUTSIDE: "meta\nprompt_tokens"}),
])
def test_every_key_the_client_gets_is_read(body, expected):
    assert texts(body) == expected


@pytest.mark.parametrize(("message", "expected"), [
    # Validates as a message a client could send back: read as message_text reads it.
    ({"role": "assistant", "content": "hi", "tool_call_id": "call_1"}, "hi"),
    ({"content": "no role at all"}, "no role at all"),
    # Does not validate (an unknown role, content of the wrong type): read whole, the role only when it is real.
    ({"role": "UNSAFE-ROLE-TEXT", "content": "hi"}, "UNSAFE-ROLE-TEXT\nhi"),
    ({"role": "assistant", "content": {"text": "content as an object"}}, "content as an object"),
    ({"role": "assistant", "content": 5, "note": "a note"}, "note\na note"),
    ({"role": "assistant", "content": 5, "tool_call_id": "UNSAFE ID"}, "UNSAFE ID"),
])
def test_choice_text(message, expected):
    assert choice_text(message) == expected
