"""What of the conversation an audit record keeps, when the route's `audit_content` asks for it. Pure.

The newest user message (the text the input check judged with the default scope), up to two turns before it
as context, and the reply's text (for a stream, the text relayed to the client): enough to re-judge the
request in the policy lab (`audit export` writes them as dataset rows), not a copy of the whole request.
"""

from __future__ import annotations

from typing import Any

from .extract import text_of
from .guard import Reply, StreamReply
from .protocol import ChatRequest
from .subjects import message_text

CONTEXT_TURNS = 2


def reply_text(reply: Reply | StreamReply | None) -> str | None:
    if not isinstance(reply, Reply) or reply.status != 200:
        return None
    texts = [text_of(choice.get("message") or {}, skip={"role"}) for choice in reply.body.get("choices") or ()
             if isinstance(choice, dict)]
    return "\n".join(t for t in texts if t) or None


def conversation_content(chat: ChatRequest | None, reply: Reply | StreamReply | None,
                         streamed: str | None = None) -> dict[str, Any] | None:
    if chat is None:
        return None
    turns = [(m.role, message_text(m)) for m in chat.messages]
    users = [i for i, (role, text) in enumerate(turns) if role == "user" and text.strip()]
    last = users[-1] if users else len(turns) - 1
    if last < 0:
        return None
    earlier = [{"role": role, "content": text} for role, text in turns[:last] if text.strip()][-CONTEXT_TURNS:]
    output = streamed if isinstance(reply, StreamReply) else reply_text(reply)
    return {"input": turns[last][1], "input_role": turns[last][0], "context": earlier, "output": output}
