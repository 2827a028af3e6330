"""What a streamed chunk adds to each destination, and the hold-back arithmetic for streamed output. Pure.

A chunk is the upstream's JSON object (sse_parse.Chunk): the text judged is read from the very dict that is
relayed. A structural field (a role, a finish reason, an id) is skipped only while it holds what the wire
format puts there (extract.structural); a value of another type or shape is read as text, so an upstream
cannot hide text in a field the reader would otherwise pass over (the SDK's models used to refuse some of
those values; the relay no longer builds them). Keys are read by the reply's rule (extract.key_is_text).

The token allowance for ids and names is spent once per stream, not once per chunk (`Pins`): a chunk's `id`,
`model` and `system_fingerprint`, and a tool call's `id` and `type`, are skipped only while they repeat the
first value the stream (or that tool call slot) gave them. A value that differs is read as text and relayed
unchanged: rewriting it would hide from the client what the upstream sent, and the only cost of reading it is
classifier text for an upstream that varies its ids.

Chunks are grouped into windows of whole chunks: a window closes once the text it adds, over all its
destinations (each choice's content, refusal, reasoning, each tool call's arguments, ...), reaches its
limit (None: one window for the whole stream, i.e. buffer mode). Limits grow: a small first window, then
each `growth` times the previous, up to `size` (`window_limit`). A window's chunks are
released only after a verdict covered all of their text, so the unreviewed text held back at any moment
is at most one window plus the chunks read while its check runs. Chunks without text (the role chunk,
the finish chunk, the usage chunk) travel with the window they arrive in, so the finish chunk and
[DONE] are never sent before the last window was checked.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .decisions import OUTSIDE
from .extract import leaves, strings, structural
from .sse_parse import Chunk
from .subjects import CALL_STRUCTURE, split_call


def call_parts(name: str | None, arguments: str | None) -> list[str]:
    """A streamed call: the name arrives once, then the arguments in pieces."""
    return [f"\n[tool call {name}] " if name else "", arguments or ""]


# Per level: the fields read apart, and the structural ones, skipped only while they hold what the format puts
# there (extract.structural). A delta's content, refusal, tool calls and function call are read apart when they
# have the format's type (a string; a list; an object), and like any other field when not; its role is structural.
DELTA_STRUCTURE = frozenset({"role", "content", "refusal", "tool_calls", "function_call"})
CHOICE_READ_APART = frozenset({"delta", "logprobs"})
CHOICE_STRUCTURE = frozenset({"index", "finish_reason"})
CHUNK_READ_APART = frozenset({"choices"})
CHUNK_STRUCTURE = frozenset({"id", "object", "created", "model", "system_fingerprint", "service_tier"})

# Where a piece of streamed text goes: (choice index, destination), e.g. (0, "content"), (0, "tool 1"),
# (0, "delta.reasoning_content"), (-1, "chunk.note") for text outside the choices. A client reassembles each
# destination separately, so each is judged as its own contiguous text, whatever order the pieces of
# different destinations arrive in.
Dest = tuple[int, str]

# The token fields pinned to their first value: the chunk's envelope, and each tool call slot's id and type.
PINNED = ("id", "model", "system_fingerprint")
CALL_PINNED = ("id", "type")


@dataclass
class Pins:
    """The first value of each pinned field, for the stream and for each (choice, tool call slot). A field
    is pinned by the first non-blank value it holds; until then a null or an empty string carries nothing to
    read (Azure's first chunk has an empty id and model)."""

    envelope: dict[str, object] = field(default_factory=dict)
    calls: dict[tuple[int, int], dict[str, object]] = field(default_factory=dict)

    def moved(self, values: Mapping[str, object], keys: Collection[str],
              slot: tuple[int, int] | None = None) -> frozenset[str]:
        """The fields among `keys` whose value differs from its pin (they are read as text); fields seen for
        the first time are pinned."""
        pins = self.envelope if slot is None else self.calls.setdefault(slot, {})
        moved = set()
        for key in keys:
            value = values.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if key not in pins:
                pins[key] = value
            elif pins[key] != value:
                moved.add(key)
        return frozenset(moved)


def add_call(texts: dict[Dest, str], dest: Dest, call: dict[str, Any],
             structure: Collection[str] = CALL_STRUCTURE) -> None:
    """A streamed call's payload goes to `dest`, piece after piece as a client joins them; every other text
    of the call to destinations of its own, one per JSON path, so none breaks another's continuity."""
    payloads, rest = split_call(call, structure)
    for tool, payload in payloads:
        add(texts, dest, call_parts(tool, payload))
    add_leaves(texts, dest[0], dest[1], rest)


def add_leaves(texts: dict[Dest, str], index: int, prefix: str, value: object) -> None:
    for path, text in leaves(value, prefix, reply=True):
        add(texts, (index, path), [text])


def add(texts: dict[Dest, str], dest: Dest, parts: list[Any]) -> None:
    text = "".join(p for p in parts if isinstance(p, str))
    if text:
        texts[dest] = texts.get(dest, "") + text


def chunk_texts(chunk: Chunk, read_logprobs: bool = False, pins: Pins | None = None) -> dict[Dest, str]:
    """Per destination: the checkable text this chunk adds, read from the chunk's JSON: content, refusal,
    each tool call's arguments, a legacy function call, and every other string of the delta and the choice
    (a provider's reasoning, an audio transcript, fields no SDK declares), each field its own destination.
    `pins` holds the stream's first ids and names and is updated (None: this chunk is the stream's first).
    `chunk` has the shape sse_parse.chunk_shaped checked."""
    pins = Pins() if pins is None else pins
    texts: dict[Dest, str] = {}
    # Strings outside the choices (a provider's extras, text riding on a `choices: []` chunk) belong to no
    # choice: destination index OUTSIDE (-1), each field on its own.
    structure = CHUNK_STRUCTURE - pins.moved(chunk, PINNED)
    for path, text in leaves(chunk, "chunk", skip=CHUNK_READ_APART, structure=structure, reply=True):
        add(texts, (OUTSIDE, path), [text])
    for choice in chunk["choices"]:
        i = choice["index"]
        for key, value in (choice.get("delta") or {}).items():
            if isinstance(value, str) and key in ("content", "refusal"):
                add(texts, (i, key), [value])
            elif key == "tool_calls" and isinstance(value, list):
                for position, call in enumerate(value):
                    if isinstance(call, dict):
                        slot: int = call["index"] if isinstance(call.get("index"), int) else position
                        add_call(texts, (i, f"tool {slot}"), call,
                                 CALL_STRUCTURE - pins.moved(call, CALL_PINNED, (i, slot)))
                    else:
                        add_leaves(texts, i, f"delta.tool_calls[{position}]", call)
            elif key == "function_call" and isinstance(value, dict):
                add_call(texts, (i, "function_call"), {"function": value})
            elif not (key == "role" and structural(key, value)):
                add_leaves(texts, i, "delta", {key: value})
        for path, text in leaves(choice, "choice", skip=CHOICE_READ_APART, structure=CHOICE_STRUCTURE, reply=True):
            add(texts, (i, path), [text])
        if read_logprobs and choice.get("logprobs"):
            add(texts, (i, "logprobs"), [logprob_text(choice["logprobs"])])
    return texts


def logprob_text(logprobs: object) -> str:
    """Every token string of a logprobs object, the alternatives in top_logprobs included, space-separated
    so that alternatives are not glued into words that were never there."""
    return " ".join(strings(logprobs, reply=True)) + " "


@dataclass
class Window:
    chunks: list[Chunk] = field(default_factory=list)
    texts: dict[Dest, str] = field(default_factory=dict)
    before: dict[Dest, str] = field(default_factory=dict)  # all text of earlier windows, per destination

    @property
    def size(self) -> int:
        return sum(len(t) for t in self.texts.values())


def window_limit(index: int, first: int, size: int, growth: int = 2) -> int:
    """The size of window `index` (0-based): the first window is small, so the first text waits for little
    more than one classifier call; each next one is `growth` times larger, up to `size`, so a long reply
    costs about as many calls as fixed windows. Pure."""
    if first >= size or growth <= 1:
        return min(first, size)
    return min(size, first * growth ** min(index, 64))


class Windower:
    def __init__(self, size: int | None, read_logprobs: bool = False, first: int | None = None,
                 growth: int = 2) -> None:
        self.size = size
        self.first = first if first is not None else size
        self.growth = growth
        self.closed = 0  # windows closed so far
        self.read_logprobs = read_logprobs
        self.current = Window()
        self.seen: dict[Dest, str] = {}
        self.pins = Pins()

    @property
    def limit(self) -> int | None:
        """The characters that close the current window (None: one window for the whole stream)."""
        if self.size is None or self.first is None:
            return self.size
        return window_limit(self.closed, self.first, self.size, self.growth)

    def add(self, chunk: Chunk) -> Window | None:
        """Add a chunk; return the window it closed, if any."""
        self.current.chunks.append(chunk)
        for index, text in chunk_texts(chunk, self.read_logprobs, self.pins).items():
            self.current.texts[index] = self.current.texts.get(index, "") + text
        limit = self.limit
        if limit is not None and self.current.size >= limit:
            return self.close()
        return None

    def finish(self) -> Window:
        """The last window (possibly without text, e.g. only the finish and usage chunks)."""
        return self.close()

    def close(self) -> Window:
        window = self.current
        window.before = dict(self.seen)
        self.closed += 1
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
