"""Property: in window mode the client never receives a character that no allow verdict covered.

The relay runs for real (ChunkFeed, StreamRelay, Checker, decisions); only the classifier is an in-process
stand-in, so hypothesis can try hundreds of chunkings and violation positions quickly. It flags any
window whose text to classify contains "X".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail_proxy.answers import Answer
from guardrail_proxy.audit import AuditRecord
from guardrail_proxy.classifier import Classification
from guardrail_proxy.config import OutputCheck, PolicyRule, RouteConfig
from guardrail_proxy.pipeline import Checker
from guardrail_proxy.policies import Policy
from guardrail_proxy.protocol import ChatRequest
from guardrail_proxy.sse_parse import Chunk
from guardrail_proxy.streaming import ChunkFeed, StreamRelay
from guardrail_proxy.subjects import TARGET_MARK

POLICY = Policy(id="p", title="p", format="label", label_prefix="TV", labels={f"TV{n}": "" for n in range(4)},
                default_action="block", refusal="REFUSED", safe_text=None, text="policy", digest="d" * 64,
                source="test")


class MarkerClassifier:
    """Flags a window when its target text contains X; remembers every target it allowed."""

    def __init__(self) -> None:
        self.allowed: list[str] = []

    async def classify(self, policy: Policy, content: str) -> Classification:
        await asyncio.sleep(0)
        target = content.split(TARGET_MARK, 1)[-1].split("\n", 1)[-1] if TARGET_MARK in content else content
        if "X" in target:
            return Classification(Answer(True, 2, "TV2"), None, "TV2", 0.0)
        self.allowed.append(target)
        return Classification(Answer(False, 0, "TV0"), None, "TV0", 0.0)

    def knows(self, policy: Policy, content: str) -> bool:
        return False

    async def ping(self) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


def make_chunk(content: str | None, finish: str | None = None) -> Chunk:
    delta = {} if content is None else {"content": content}
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def source(pieces: list[str]) -> AsyncIterator[Chunk]:
    yield make_chunk("")
    for piece in pieces:
        await asyncio.sleep(0)
        yield make_chunk(piece)
    yield make_chunk(None, "stop")


def covered(text: str, allowed: list[str]) -> bool:
    """Can `text` be cut into pieces that each end an allowed target? (A target is the overlap with the
    previous window followed by the window's own text, so the released part of it is a suffix.)"""
    suffixes = {t[i:] for t in allowed for i in range(len(t))}
    reachable = [True] + [False] * len(text)
    for i in range(len(text)):
        if reachable[i]:
            for piece in suffixes:
                if text.startswith(piece, i):
                    reachable[i + len(piece)] = True
    return reachable[len(text)]


async def relay(pieces: list[str], window: int, context: int, first: int | None = None,
                growth: int = 1) -> tuple[str, list[str], str | None]:
    classifier = MarkerClassifier()
    route = RouteConfig(name="r", models=("m",), upstream="u", block_style="completion",
                        policies=(PolicyRule(id="p"),),
                        output=OutputCheck(window_chars=window, window_context_chars=context,
                                           first_window_chars=min(first or window, window),
                                           window_growth=growth))
    chat = ChatRequest.model_validate({"model": "m", "stream": True, "messages": [{"role": "user", "content": "q"}]})
    record = AuditRecord("rid", "r", "m", stream=True)
    checker = Checker({"default": classifier}, {"p": POLICY})
    stream = StreamRelay(ChunkFeed(source(pieces)), checker, route, chat, record, lambda: None)
    released, finish = [], None
    async for piece in stream.events():  # one write may carry several events (a burst, a window)
        for event in piece.split(b"\n\n"):
            if event.startswith(b"data: {"):
                choice = json.loads(event[6:])["choices"][0]
                if choice["finish_reason"] == "content_filter":
                    finish = choice["delta"]["content"]
                else:
                    released.append(choice["delta"].get("content") or "")
    return "".join(released), classifier.allowed, finish


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet="ab X", min_size=1, max_size=120),
       cuts=st.lists(st.integers(min_value=1, max_value=119), max_size=40),
       window=st.integers(min_value=1, max_value=40), context=st.integers(min_value=0, max_value=20),
       first=st.integers(min_value=1, max_value=40), growth=st.integers(min_value=1, max_value=5))
def test_no_unreviewed_character_reaches_the_client(text, cuts, window, context, first, growth):
    """Fixed or growing windows (a first window from 1 character up to the cap), any chunking."""
    bounds = sorted({c for c in cuts if c < len(text)})
    pieces = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]
    released, allowed, refusal = asyncio.run(relay(pieces, window, context, first, growth))
    assert text.startswith(released)
    assert "X" not in released
    assert covered(released, allowed)
    if "X" in text:
        assert refusal == "REFUSED"
    else:
        assert released == text and refusal is None
