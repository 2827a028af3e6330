"""What gets classified in a non-streamed completion, read from its JSON (extract.py). Pure.

Each choice is one text: its message (message_text), every other string of the choice, and its logprobs
when the route checks them. Strings outside the choices (a provider's top-level extras) are one more text,
under the subject index decisions.OUTSIDE: they belong to no choice, so a violation there blocks the reply
rather than rewrite a choice.
"""

from __future__ import annotations

from typing import Any

from openai.types.chat import ChatCompletion

from .config import RouteConfig
from .decisions import OUTSIDE
from .extract import text_of
from .protocol import ChatRequest, Message
from .subjects import Subject, Turn, message_text, output_subject
from .windows import logprob_text

CHOICE_STRUCTURE = frozenset({"index", "message", "finish_reason", "logprobs"})
COMPLETION_STRUCTURE = frozenset({"id", "object", "created", "model", "system_fingerprint", "service_tier",
                                  "choices"})


def choice_messages(completion: ChatCompletion) -> list[tuple[dict[str, Any], str]]:
    """Each choice's JSON and its message's text (message_text: what a client sends back as history), read
    once for both the output check and the relayed-reply memory (relayed.py)."""
    found = []
    for choice in completion.choices:
        data = choice.model_dump(mode="json", exclude_none=True, warnings=False)
        found.append((data, message_text(Message.model_validate(data.get("message") or {"role": "assistant"}))))
    return found


def completion_subjects(completion: ChatCompletion, chat: ChatRequest, route: RouteConfig,
                        choices: list[tuple[dict[str, Any], str]] | None = None) -> list[Subject]:
    subjects = []
    read = choice_messages(completion) if choices is None else choices
    for choice, (data, message) in zip(completion.choices, read, strict=True):
        logprobs = logprob_text(data["logprobs"]) if route.output.logprobs == "check" and data.get("logprobs") else ""
        text = "\n".join(t for t in (message, text_of(data, skip=CHOICE_STRUCTURE), logprobs) if t.strip())
        if text.strip():
            subjects.append(output_subject(text, chat.messages, route.output, choice.index))
    top = text_of(completion.model_dump(mode="json", exclude_none=True, warnings=False), skip=COMPLETION_STRUCTURE)
    if top:
        subjects.append(Subject(Turn("assistant", top), index=OUTSIDE))
    return subjects
