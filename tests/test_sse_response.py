"""The streaming response runs its close callback however the stream ends, even when its body never
started (closing a never-started async generator skips its `finally`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from guardrail_proxy.sse_response import EventStreamResponse


async def test_close_runs_when_the_client_left_before_the_body_started():
    started, closed = [], []

    async def body() -> AsyncIterator[bytes]:
        started.append(True)
        yield b"data: x\n\n"

    async def on_close() -> None:
        closed.append(True)

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        await asyncio.sleep(1)  # the headers never get out before the disconnect is seen

    response = EventStreamResponse(body(), headers={}, on_close=on_close)
    await asyncio.wait_for(response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send), 5)
    assert started == [] and closed == [True]


async def test_close_runs_after_a_complete_stream():
    closed = []
    sent: list[dict] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"data: x\n\n"

    async def on_close() -> None:
        closed.append(True)

    async def receive() -> dict:
        await asyncio.sleep(10)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    response = EventStreamResponse(body(), headers={}, on_close=on_close)
    await asyncio.wait_for(response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send), 5)
    assert closed == [True] and any(m.get("body") == b"data: x\n\n" for m in sent)
