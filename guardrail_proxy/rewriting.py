"""The input side of the rewrite action. Pure.

The violating message is replaced by the policy's safe text, or dropped (route `rewrite_input: drop`);
the rest of the conversation is forwarded untouched. A drop that would leave nothing to send falls back
to replacing.
"""

from __future__ import annotations

from .config import Action
from .decisions import Decision
from .protocol import ChatRequest, Message


def replaced(message: Message, text: str) -> Message:
    """A fresh message with the safe text, keeping only what ties it into the conversation: its role and,
    for a tool result, the call it answers (the model rejects a tool message without it)."""
    extra = message.model_extra or {}
    keep = {"tool_call_id": extra["tool_call_id"]} if "tool_call_id" in extra else {}
    return Message.model_validate({"role": message.role, "content": text, **keep})


def rewrite_input(chat: ChatRequest, decision: Decision, mode: str) -> ChatRequest:
    replacements: dict[int, str] = {}
    for trig in decision.triggered:
        if trig.action in (Action.REWRITE, Action.BLOCK):
            replacements.setdefault(trig.verdict.subject, trig.safe_text)
    if not replacements:
        return chat
    messages: list[Message] = []
    for i, message in enumerate(chat.messages):
        if i not in replacements:
            messages.append(message)
        elif mode == "replace":
            messages.append(replaced(message, replacements[i]))
    if not messages:
        messages = [replaced(chat.messages[i], text) for i, text in replacements.items()]
    return chat.model_copy(update={"messages": messages})
