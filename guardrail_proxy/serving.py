"""`guardrail-proxy serve`: the listeners and the process signals.

- SIGHUP re-reads the config and policies (Runtime.reload): applied whole, or refused whole with the old
  config still serving. A SIGHUP that comes while the app is still starting is remembered, and the reload runs
  once it has started: the file may have changed after it was read for the start.
- SIGTERM (or SIGINT) drains: /readyz answers 503 at once while requests are still served for
  `server.drain_s`, so load balancers stop sending; then the listeners close and requests and streams in
  flight get `server.shutdown_timeout_s` to finish; then the app closes, which commits every audit record
  still queued. A second SIGTERM skips the rest of the drain; a third stops without waiting.
- With `server.ops_port`, a second listener serves the operator endpoints (ops.py). It closes last, so the
  503 stays visible to probes until the main listener is gone.
- Under `serve --workers N` (workers.py) each worker process runs one Serving on `Sockets` the supervisor bound
  once, and takes its signals from the supervisor, which passes each one on: every worker drains and reloads
  exactly as described above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from .config import ServerConfig
from .errors import ConfigError
from .ops import OpsListener
from .runtime import Runtime

log = logging.getLogger("guardrail_proxy")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop `serve` runs on: uvloop (libuv; a fraction of asyncio's own loop's CPU per request) where
    it is installed and wanted, else asyncio's default. uvicorn picks httptools, its C HTTP parser, by itself."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("proxy.yaml", "server.event_loop", "uvloop is not installed here") from None
        return None
    return uvloop.new_event_loop


class Listener(uvicorn.Server):
    """A uvicorn server that leaves the process signals to `Serving`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class Sockets:
    """Listening sockets bound before the worker processes were forked, shared by all of them."""

    main: socket.socket
    ops: socket.socket | None = None


class Serving:
    def __init__(self, app: Starlette, server: ServerConfig, host: str, port: int,
                 sockets: Sockets | None = None) -> None:
        self.app, self.server, self.sockets = app, server, sockets
        self.main = Listener(uvicorn.Config(app, host=host, port=port, lifespan="on", log_level=server.log_level,
                                            access_log=False,
                                            timeout_graceful_shutdown=math.ceil(server.shutdown_timeout_s)))
        self.ops = None if server.ops_port is None else Listener(uvicorn.Config(
            OpsListener(app), host=server.ops_host or host, port=server.ops_port, lifespan="off",
            log_level=server.log_level, access_log=False))
        self.terms = 0
        self.hup_pending = False  # a SIGHUP came while the app was starting: reload once it has started
        self.drain: asyncio.Task[None] | None = None
        self.reloads: set[asyncio.Task[object]] = set()

    def run(self) -> int:
        with asyncio.Runner(loop_factory=loop_factory(self.server.event_loop)) as runner:
            runner.run(self.serve())
        return 0

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, handler in self.signal_handlers().items():
            loop.add_signal_handler(sig, handler)
        try:
            shared = self.sockets
            main = asyncio.create_task(self.main.serve(sockets=[shared.main] if shared else None))
            later: asyncio.Task[object] = asyncio.create_task(self.reload_when_started(main))
            self.reloads.add(later)
            later.add_done_callback(self.reloads.discard)
            if self.ops is not None:
                while not self.main.started and not main.done():
                    await asyncio.sleep(0.05)
                ops = asyncio.create_task(self.ops.serve(sockets=[shared.ops] if shared and shared.ops else None))
                await main
                self.ops.should_exit = True
                await ops
            else:
                await main
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def signal_handlers(self) -> dict[signal.Signals, Callable[[], None]]:
        return {signal.SIGTERM: self.on_term, signal.SIGINT: self.on_term, signal.SIGHUP: self.on_hup}

    def runtime(self) -> Runtime | None:
        runtime: Runtime | None = getattr(self.app.state, "runtime", None)
        return runtime

    def on_term(self) -> None:
        self.terms += 1
        runtime = self.runtime()
        if self.terms == 1:
            self.app.state.draining = True  # the lifespan reads it too, for a signal that beats the start-up
            if runtime is not None:
                runtime.draining = True
            log.info("shutting down: /readyz answers 503; serving for %.1fs more, then finishing requests in flight "
                     "(up to %.0fs)", self.server.drain_s, self.server.shutdown_timeout_s)
            self.drain = asyncio.get_running_loop().create_task(self.stop_after(self.server.drain_s))
        elif self.terms == 2:
            log.info("second signal: closing the listeners now")
            self.main.should_exit = True
        else:
            log.warning("third signal: stopping without waiting for requests in flight")
            self.main.should_exit = self.main.force_exit = True
            if self.ops is not None:
                self.ops.should_exit = self.ops.force_exit = True

    async def stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.main.should_exit = True

    async def reload_when_started(self, main: asyncio.Task[None]) -> None:
        while not self.main.started and not main.done():
            await asyncio.sleep(0.05)
        if self.hup_pending and self.main.started and self.terms == 0:
            self.on_hup()

    def on_hup(self) -> None:
        runtime = self.runtime()
        if runtime is None:
            if self.main.started:
                log.warning("SIGHUP while the proxy is stopping: ignored")
            elif not self.hup_pending:
                log.info("SIGHUP while the proxy is starting: it reloads once it has started")
                self.hup_pending = True
            return
        self.hup_pending = False
        log.info("SIGHUP: reloading %s", runtime.config.path)
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(runtime.reload())
        self.reloads.add(task)
        task.add_done_callback(self.reloads.discard)
