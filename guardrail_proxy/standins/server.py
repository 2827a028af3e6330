"""Run an ASGI app with uvicorn on 127.0.0.1 in a background thread (stand-ins, tests, the demo)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn


class ServerThread:
    def __init__(self, app: Any, port: int = 0, host: str = "127.0.0.1") -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                lifespan="on", timeout_keep_alive=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.host = host
        self.loop: asyncio.AbstractEventLoop | None = None
        self.leftover_tasks: list[str] = []  # tasks still pending when the server had shut down

    def _run(self) -> None:
        # asyncio.Runner closes the loop, its async generators and its default executor on the way out.
        with asyncio.Runner() as runner:
            self.loop = runner.get_loop()
            runner.run(self._serve())

    async def _serve(self) -> None:
        await self.server.serve()
        # By now the lifespan has closed every client; whatever still runs was left behind by someone.
        current = asyncio.current_task()
        self.leftover_tasks = [repr(t) for t in asyncio.all_tasks() if t is not current and not t.done()]

    def start(self, timeout: float = 30.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server thread failed to start")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        sockets = self.server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
