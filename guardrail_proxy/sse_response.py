"""A streaming response that notices a client hanging up, on every ASGI server.

Starlette's StreamingResponse only watches for `http.disconnect` under ASGI spec < 2.4; on newer specs it
relies on `send` raising, which uvicorn does not do after a disconnect, so an abandoned stream would keep
reading the model and calling the classifier until the end. Here the body is always raced against the
disconnect, and the body iterator is closed explicitly so its `finally` blocks cancel upstream work; then
`on_close` runs, which also covers a body that never started.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], *, headers: Mapping[str, str],
                 on_close: Callable[[], Awaitable[None]]) -> None:
        super().__init__(content, headers=headers)
        # Closing an async generator that never started skips its `finally`: a client that left before the
        # first byte would leave the model running and the request unaudited. on_close runs regardless.
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream_then_stop() -> None:
                    with contextlib.suppress(OSError):  # the client went away mid-send
                        await self.stream_response(send)
                    group.cancel_scope.cancel()

                group.start_soon(stream_then_stop)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
            await self.on_close()
