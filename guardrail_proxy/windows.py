"""Hold-back arithmetic for streamed output. Pure.

Chunks are grouped into windows of whole chunks: a window closes once the text it adds reaches
`size` characters (None: one window for the whole stream, i.e. buffer mode). A window's chunks are
released only after a verdict covered all of their text, so the unreviewed text held back at any moment
is at most one window plus the chunks read while its check runs. Chunks without text (the role chunk,
the finish chunk, the usage chunk) travel with the window they arrive in, so the finish chunk and
[DONE] are never sent before the last window was checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openai.types.chat import ChatCompletionChunk

from .extract import text_of


def call_parts(name: str | None, arguments: str | None) -> list[str]:
    """A streamed call: the name arrives once, then the arguments in pieces."""
    return [f"\n[tool call {name}] " if name else "", arguments or ""]


DELTA_STRUCTURE = frozenset({"role", "content", "refusal", "tool_calls", "function_call"})
CHOICE_STRUCTURE = frozenset({"index", "delta", "finish_reason", "logprobs"})
CALL_STRUCTURE = frozenset({"index", "id", "type", "function", "custom"})


def streamed_call_parts(call: dict[str, Any]) -> list[str]:
    parts: list[str] = []
    for kind, payload_key in (("function", "arguments"), ("custom", "input")):
        body = call.get(kind)
        if isinstance(body, dict):
            parts += call_parts(body.get("name"), body.get(payload_key))
            parts.append(text_of(body, skip={"name", payload_key}))
    parts.append(text_of(call, skip=CALL_STRUCTURE))
    return parts


def chunk_texts(chunk: ChatCompletionChunk) -> dict[int, str]:
    """Per choice index: the checkable text this chunk adds, read from the chunk's JSON: content, refusal,
    tool and function calls, and every other string of the delta and the choice (a provider's reasoning,
    an audio transcript, fields no SDK declares), so text is checked rather than passed unread."""
    texts: dict[int, str] = {}
    for choice in chunk.choices:
        data = choice.model_dump(mode="json", exclude_none=True, warnings=False)
        delta = data.get("delta") or {}
        parts = [delta.get("content") or "", delta.get("refusal") or ""]
        for call in delta.get("tool_calls") or ():
            parts += streamed_call_parts(call)
        function_call = delta.get("function_call")
        if isinstance(function_call, dict):
            parts += call_parts(function_call.get("name"), function_call.get("arguments"))
        # Separated from the streamed content so a word cannot be glued across two fields.
        extra = [text_of(delta, skip=DELTA_STRUCTURE), text_of(data, skip=CHOICE_STRUCTURE)]
        parts += [f"\n{e}" for e in extra if e]
        text = "".join(p for p in parts if isinstance(p, str))
        if text:
            texts[choice.index] = texts.get(choice.index, "") + text
    return texts


@dataclass
class Window:
    chunks: list[ChatCompletionChunk] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)
    before: dict[int, str] = field(default_factory=dict)  # all text of earlier windows, per choice

    @property
    def size(self) -> int:
        return sum(len(t) for t in self.texts.values())


class Windower:
    def __init__(self, size: int | None) -> None:
        self.limit = size
        self.current = Window()
        self.seen: dict[int, str] = {}

    def add(self, chunk: ChatCompletionChunk) -> Window | None:
        """Add a chunk; return the window it closed, if any."""
        self.current.chunks.append(chunk)
        for index, text in chunk_texts(chunk).items():
            self.current.texts[index] = self.current.texts.get(index, "") + text
        if self.limit is not None and self.current.size >= self.limit:
            return self.close()
        return None

    def finish(self) -> Window:
        """The last window (possibly without text, e.g. only the finish and usage chunks)."""
        return self.close()

    def close(self) -> Window:
        window = self.current
        window.before = dict(self.seen)
        for index, text in window.texts.items():
            self.seen[index] = self.seen.get(index, "") + text
        self.current = Window()
        return window


def tail(text: str, chars: int) -> str:
    """The last `chars` characters, cut at a word boundary when one is near."""
    if chars <= 0:
        return ""
    if len(text) <= chars:
        return text
    cut = text[-chars:]
    space = cut.find(" ")
    return cut[space + 1:] if 0 <= space < chars // 4 else cut
