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
    (completion(choice={"finish_reason": "UNSAFE-FINISH"}), {0: "hi\nfinish_reason\nUNSAFE-FINISH"}),
    (completion(model="UNSAFE MODEL TEXT"), {0: "hi", OUTSIDE: "model\nUNSAFE MODEL TEXT"}),
    (completion(id="UNSAFE ID TEXT"), {0: "hi", OUTSIDE: "UNSAFE ID TEXT"}),
    (completion(object="UNSAFE-OBJECT"), {0: "hi", OUTSIDE: "object\nUNSAFE-OBJECT"}),
    (completion(created="UNSAFE CREATED"), {0: "hi", OUTSIDE: "created\nUNSAFE CREATED"}),
    (completion(system_fingerprint="UNSAFE FINGERPRINT"), {0: "hi", OUTSIDE: "system_fingerprint\nUNSAFE FINGERPRINT"}),
    (completion(service_tier="UNSAFE-TIER"), {0: "hi", OUTSIDE: "service_tier\nUNSAFE-TIER"}),
    (completion(model={"name": "UNSAFE IN AN OBJECT"}), {0: "hi", OUTSIDE: "model\nUNSAFE IN AN OBJECT"}),
    (completion(model="x" * 65), {0: "hi", OUTSIDE: f"model\n{'x' * 65}"}),  # past the token bound
    (completion(choice={"index": 0, "finish_reason": ["UNSAFE", "LIST"]}), {0: "hi\nfinish_reason\nUNSAFE\nLIST"}),
    # A message's own structural field: the tool call id of a tool message sent back as a reply.
    (completion({"role": "tool", "tool_call_id": "UNSAFE TOOL CALL ID", "content": "hi"}),
     {0: "hi\ntool_call_id\nUNSAFE TOOL CALL ID"}),
    # A tool call's id and type.
    (completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "UNSAFE CALL ID", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
     {0: "[tool call f] {}\nUNSAFE CALL ID"}),
])
def test_every_string_the_client_gets_is_read(body, expected):
    assert texts(body) == expected


@pytest.mark.parametrize(("message", "expected"), [
    # Validates as a message a client could send back: read as message_text reads it.
    ({"role": "assistant", "content": "hi", "tool_call_id": "call_1"}, "hi"),
    ({"content": "no role at all"}, "no role at all"),
    # Does not validate (an unknown role, content of the wrong type): read whole, the role only when it is real.
    ({"role": "UNSAFE-ROLE-TEXT", "content": "hi"}, "UNSAFE-ROLE-TEXT\nhi"),
    ({"role": "assistant", "content": {"text": "content as an object"}}, "content as an object"),
    ({"role": "assistant", "content": 5, "note": "a note"}, "note\na note"),
    ({"role": "assistant", "content": 5, "tool_call_id": "UNSAFE ID"}, "tool_call_id\nUNSAFE ID"),
])
def test_choice_text(message, expected):
    assert choice_text(message) == expected
