"""What gets classified in a non-streamed completion, read from its JSON object (extract.py): the very dict
that is relayed to the client, as the upstream sent it. Pure.

Each choice is one text: its message (message_text), every other string of the choice, and its logprobs
when the route checks them. Strings outside the choices (a provider's top-level extras) are one more text,
under the subject index decisions.OUTSIDE: they belong to no choice, so a violation there blocks the reply
rather than rewrite a choice.

Every key is read unless it is the reply's vocabulary or a usage counter (extract.key_is_text, `reply`), so a
key name with a number under it (`{"Step_one": 0}`) is judged like a string. The structural fields listed
here (ids, the model name, the finish reason, a message's role) are skipped only while their values have the
wire format's shape (extract.structural); a sentence in `model`, a role no chat format has, a finish reason
nobody defined is read like any other text, since the client receives it all.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .config import RouteConfig
from .decisions import OUTSIDE
from .extract import text_of
from .protocol import ChatRequest, Message
from .subjects import MESSAGE_STRUCTURE, Subject, Turn, message_text, output_subject
from .windows import logprob_text

# Per level, the fields not read as plain text here (tests/test_bypass_matrix.py pins these lists). Of them, the
# ones read apart (the message; logprobs, checked or stripped by route config; the choices) are skipped
# whatever they hold; the others only while they hold what the format puts there (extract.structural).
CHOICE_STRUCTURE = frozenset({"index", "message", "finish_reason", "logprobs"})
CHOICE_READ_APART = frozenset({"message", "logprobs"})
COMPLETION_STRUCTURE = frozenset({"id", "object", "created", "model", "system_fingerprint", "service_tier",
                                  "choices"})
COMPLETION_READ_APART = frozenset({"choices"})


def choice_messages(completion: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Each choice's JSON and its message's text (message_text: what a client sends back as history), read
    once for both the output check and the relayed-reply memory (relayed.py). `completion` has the shape
    upstream_http.chat_completion checked: `choices` is a list of objects."""
    return [(choice, choice_text(choice.get("message") or {})) for choice in completion["choices"]]


def choice_text(message: dict[str, Any]) -> str:
    """A reply message's text as message_text reads it. A message that is not one a client could send back
    (an unknown role, content of the wrong type) is read whole, every string included; its role is skipped
    only when it is a real role, so that nothing in it escapes the check."""
    try:
        read = message_text(Message.model_validate({"role": "assistant", **drop_none(message)}), reply=True)
        # The model drops null fields, but a key with null under it is a name the client receives all the same.
        nulls = text_of({k: v for k, v in message.items() if v is None}, reply=True)
        return "\n".join(t for t in (read, nulls) if t)
    except ValidationError:
        return text_of(message, structure=MESSAGE_STRUCTURE, reply=True)


def drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def completion_subjects(completion: dict[str, Any], chat: ChatRequest, route: RouteConfig,
                        choices: list[tuple[dict[str, Any], str]] | None = None) -> list[Subject]:
    subjects = []
    for data, message in choice_messages(completion) if choices is None else choices:
        logprobs = logprob_text(data["logprobs"]) if route.output.logprobs == "check" and data.get("logprobs") else ""
        rest = text_of(data, skip=CHOICE_READ_APART, structure=CHOICE_STRUCTURE, reply=True)
        text = "\n".join(t for t in (message, rest, logprobs) if t.strip())
        if text.strip():
            subjects.append(output_subject(text, chat.messages, route.output, data.get("index", 0)))
    top = text_of(completion, skip=COMPLETION_READ_APART, structure=COMPLETION_STRUCTURE, reply=True)
    if top:
        subjects.append(Subject(Turn("assistant", top), index=OUTSIDE))
    return subjects
