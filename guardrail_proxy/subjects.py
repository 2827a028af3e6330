"""What gets classified, and how it is shown to the classifier. Pure.

Input: the newest user message (or every user message, by route config) with a few earlier turns as
context. Output: each choice's assistant text and tool-call arguments, with the latest turns as context.

The classifier's user message is built here. Harmony control tokens in content are neutralised so that
text cannot forge message boundaries in the classifier's chat format (the policy always stays in the
system message; content is never concatenated into it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .config import InputCheck, OutputCheck
from .protocol import Message

METADATA_KEYS = {"id", "type", "index", "object", "created", "expires_at", "data", "b64_json", "file_data"}
HARMONY_TOKEN = re.compile(r"<\|([A-Za-z_]+)\|>")
TARGET_MARK = "[classify this: "  # precedes the judged message when context is shown


@dataclass(frozen=True)
class Turn:
    role: str
    text: str


@dataclass(frozen=True)
class Subject:
    """One text to classify: `target` is judged, `context` only helps the classifier understand it."""

    target: Turn
    context: tuple[Turn, ...] = ()
    index: int = 0  # the message index (input) or the choice index (output)


def neutralise(text: str) -> str:
    return HARMONY_TOKEN.sub(lambda m: f"[{m.group(1)}]", text)


def extra_strings(value: object) -> list[str]:
    """Every string inside fields the proxy does not model (e.g. a provider's `reasoning_content`,
    `audio.transcript`). Text we do not understand is still checked rather than passed unread."""
    if isinstance(value, str):
        # Inline media (data: URLs) is not text to judge; it would only flood the classifier's context.
        return [value] if value.strip() and not value.startswith("data:") else []
    if isinstance(value, dict):
        return [s for key, item in value.items() if key not in METADATA_KEYS for s in extra_strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in extra_strings(item)]
    return []


def message_text(message: Message) -> str:
    """Everything readable in a message: content and text parts, refusal, tool and function calls, and
    the strings of any field the proxy does not model."""
    parts: list[str] = []
    if isinstance(message.content, str):
        parts.append(message.content)
    elif message.content:
        parts += [p.text or p.refusal or "" for p in message.content if p.readable]
    if message.refusal:
        parts.append(message.refusal)
    for call in message.tool_calls or ():
        if call.function:
            parts.append(tool_call_text(call.function.name, call.function.arguments))
        if call.custom:
            parts.append(tool_call_text(call.custom.name, call.custom.input))
        parts += extra_strings(call.model_extra)
    if message.function_call:
        parts.append(tool_call_text(message.function_call.name, message.function_call.arguments))
    parts += extra_strings(message.model_extra)
    return "\n".join(p for p in parts if p)


def tool_call_text(name: str | None, arguments: str | None) -> str:
    return f"[tool call {name or 'unnamed'}] {arguments or ''}".rstrip()


def unreadable_parts(messages: Sequence[Message]) -> list[str]:
    """Types of content parts the classifier cannot read (images, audio, files)."""
    found = []
    for message in messages:
        if isinstance(message.content, list):
            found += [p.type for p in message.content if not p.readable]
    return sorted(set(found))


def turns(messages: Sequence[Message]) -> list[Turn]:
    return [Turn(m.role, message_text(m)) for m in messages]


def input_subjects(messages: Sequence[Message], check: InputCheck) -> list[Subject]:
    all_turns = turns(messages)
    roles = None if check.scope == "all" else ("user",)
    user_indexes = [i for i, t in enumerate(all_turns) if (roles is None or t.role in roles) and t.text.strip()]
    if not user_indexes:
        # No user text: judge the last message that has text, so nothing passes unread.
        user_indexes = [i for i, t in enumerate(all_turns) if t.text.strip()][-1:]
    if check.scope == "latest":
        user_indexes = user_indexes[-1:]
    return [
        Subject(all_turns[i], context_before(all_turns, i, check.context_turns), index=i)
        for i in user_indexes
    ]


def context_before(all_turns: list[Turn], index: int, count: int) -> tuple[Turn, ...]:
    if count == 0:
        return ()
    earlier = [t for t in all_turns[:index] if t.role in ("user", "assistant") and t.text.strip()]
    return tuple(earlier[-count:])


def output_subject(text: str, messages: Sequence[Message], check: OutputCheck, choice: int) -> Subject:
    all_turns = turns(messages)
    return Subject(Turn("assistant", text), context_before(all_turns, len(all_turns), check.context_turns),
                   index=choice)


def render(subject: Subject) -> str:
    """The classifier's user message. A lone message is sent as it is; with context, as a labelled excerpt."""
    target = neutralise(subject.target.text)
    if not subject.context:
        return target
    lines = ["Conversation excerpt. Classify only the final message; earlier turns are context.", ""]
    for turn in subject.context:
        lines += [f"[context: {turn.role}]", neutralise(turn.text), ""]
    lines += [f"{TARGET_MARK}{subject.target.role}]", target]
    return "\n".join(lines)
