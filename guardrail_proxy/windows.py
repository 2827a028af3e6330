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

from openai.types.chat import ChatCompletionChunk

from .subjects import extra_strings


def call_parts(name: str | None, arguments: str | None) -> list[str]:
    """A streamed call: the name arrives once, then the arguments in pieces."""
    return [f"\n[tool call {name}] " if name else "", arguments or ""]


def chunk_texts(chunk: ChatCompletionChunk) -> dict[int, str]:
    """Per choice index: the checkable text this chunk adds: content, refusal, tool and function calls, and
    the strings of any field the proxy does not model (checked rather than passed unread)."""
    texts: dict[int, str] = {}
    for choice in chunk.choices:
        delta = choice.delta
        parts = [delta.content or "", delta.refusal or ""]
        for call in delta.tool_calls or ():
            if call.function:
                parts += call_parts(call.function.name, call.function.arguments)
            custom = (call.model_extra or {}).get("custom")
            if isinstance(custom, dict):
                parts += call_parts(custom.get("name"), custom.get("input"))
            parts += extra_strings({k: v for k, v in (call.model_extra or {}).items() if k != "custom"})
        if delta.function_call:
            parts += call_parts(delta.function_call.name, delta.function_call.arguments)
        parts += extra_strings(delta.model_extra) + extra_strings(choice.model_extra)
        text = "".join(parts)
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
