"""What gets classified in a non-streamed completion, read from its JSON (extract.py). Pure.

Each choice is one text: its message (message_text), every other string of the choice, and its logprobs
when the route checks them. Strings outside the choices (a provider's top-level extras) are one more text,
under the subject index decisions.OUTSIDE: they belong to no choice, so a violation there blocks the reply
rather than rewrite a choice.
"""

from __future__ import annotations

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


def completion_subjects(completion: ChatCompletion, chat: ChatRequest, route: RouteConfig) -> list[Subject]:
    subjects = []
    for choice in completion.choices:
        data = choice.model_dump(mode="json", exclude_none=True, warnings=False)
        message = message_text(Message.model_validate(data.get("message") or {"role": "assistant"}))
        logprobs = logprob_text(data["logprobs"]) if route.output.logprobs == "check" and data.get("logprobs") else ""
        text = "\n".join(t for t in (message, text_of(data, skip=CHOICE_STRUCTURE), logprobs) if t.strip())
        if text.strip():
            subjects.append(output_subject(text, chat.messages, route.output, choice.index))
    top = text_of(completion.model_dump(mode="json", exclude_none=True, warnings=False), skip=COMPLETION_STRUCTURE)
    if top:
        subjects.append(Subject(Turn("assistant", top), index=OUTSIDE))
    return subjects


def reply_texts(completion: ChatCompletion) -> list[str]:
    """Each choice's message as a client sends it back as history (message_text), for relayed.py."""
    return [message_text(Message.model_validate(choice.model_dump(mode="json", exclude_none=True,
                                                                  warnings=False).get("message") or
                                                {"role": "assistant"}))
            for choice in completion.choices]
