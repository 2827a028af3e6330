"""The input side of the rewrite action. Pure.

The violating message is replaced by the policy's safe text, or dropped (route `rewrite_input: drop`);
the rest of the conversation is forwarded untouched. A drop that would leave nothing to send falls back
to replacing.
"""

from __future__ import annotations

from .config import Action
from .decisions import Decision
from .protocol import ChatRequest, Message


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
            messages.append(Message(role=message.role, content=replacements[i]))
    if not messages:
        messages = [Message(role=chat.messages[i].role, content=text) for i, text in replacements.items()]
    return chat.model_copy(update={"messages": messages})
