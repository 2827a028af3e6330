"""One worker process of `serve --workers N` (workers.py forks it): serving.Serving on the sockets the supervisor
bound, taking its signals from the supervisor, with a channel to its siblings (fleet.py).

The supervisor passes each SIGTERM, SIGINT and SIGHUP on as one byte on a pipe of this worker's own (`COMMANDS`),
and the worker acts on it exactly as a single process acts on the signal. The same signals sent to the worker
directly are ignored and logged: whoever signals every process at once (systemd's default stop, `pkill -f`, a
terminal's Ctrl-C) would otherwise make each worker count two signals and skip its drain. When the pipe reaches
its end, the supervisor is gone (killed outright): the worker drains and exits by itself.

A worker serves the config as the file holds it when it starts (`worker_config`), not the supervisor's copy:
a replacement must serve what its siblings applied on `POST /admin/reload`, which the supervisor never sees.
When the file no longer loads, or changes a field that needs a restart (which its siblings refused too), the
worker serves the supervisor's copy, the last config the supervisor checked, and logs a warning saying so.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from collections.abc import Callable

from starlette.applications import Starlette

from .errors import ConfigError
from .fleet import Fleet
from .loader import LoadedConfig, load_config
from .reload import needs_restart
from .serving import Serving, Sockets

log = logging.getLogger("guardrail_proxy")

COMMANDS = {signal.SIGTERM: b"T", signal.SIGINT: b"T", signal.SIGHUP: b"H"}  # supervisor -> worker, one byte each


def worker_config(checked: LoadedConfig, slot: int) -> LoadedConfig:
    """The config a starting worker serves: `checked` (the supervisor's copy) re-read from its file, or
    `checked` itself when the file does not load or changes a restart-only field."""
    try:
        config = load_config(checked.path)
    except ConfigError as exc:
        log.warning("worker %d: the config does not load now (%s); serving the copy the supervisor last checked",
                    slot, exc.message)
        return checked
    refused = needs_restart(checked.proxy, config.proxy)
    if refused:
        log.warning("worker %d: the config file changes %s, which takes effect only after a restart; serving the "
                    "copy the supervisor last checked", slot, ", ".join(refused))
        return checked
    return config


class WorkerServing(Serving):
    """One worker: Serving on the shared sockets, taking its signals from the supervisor's pipe, plus the channel
    to its siblings (fleet.py) and a word to the supervisor once it serves."""

    def __init__(self, app: Starlette, config: LoadedConfig, host: str, port: int, sockets: Sockets, fleet: Fleet,
                 ready_fd: int, control_fd: int, supervisor: int) -> None:
        super().__init__(app, config.proxy.server, host, port, sockets)
        self.fleet, self.ready_fd, self.control_fd, self.supervisor = fleet, ready_fd, control_fd, supervisor

    def signal_handlers(self) -> dict[signal.Signals, Callable[[], None]]:
        return {sig: functools.partial(self.direct, sig) for sig in COMMANDS}

    def direct(self, sig: signal.Signals) -> None:
        log.info("worker %d: %s sent to the worker itself is ignored; the supervisor (pid %d) passes signals on",
                 self.fleet.slot, sig.name, self.supervisor)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        channel = await self.fleet.listen(self.app)
        announce = asyncio.create_task(self.announce())
        os.set_blocking(self.control_fd, False)
        loop.add_reader(self.control_fd, self.on_command)
        try:
            await super().serve()
        finally:
            loop.remove_reader(self.control_fd)
            announce.cancel()
            channel.close()

    def on_command(self) -> None:
        try:
            commands = os.read(self.control_fd, 64)
        except BlockingIOError:
            return
        if not commands:  # every write end is closed: the supervisor is gone
            asyncio.get_running_loop().remove_reader(self.control_fd)
            if self.terms == 0:
                log.warning("worker %d: the supervisor (pid %d) is gone; shutting down", self.fleet.slot,
                            self.supervisor)
                self.on_term()
            return
        for command in commands:
            if command == COMMANDS[signal.SIGHUP][0]:
                self.on_hup()
            else:
                self.on_term()

    async def announce(self) -> None:
        while not (self.main.started and (self.ops is None or self.ops.started)):
            await asyncio.sleep(0.02)
        os.write(self.ready_fd, b"1")
        os.close(self.ready_fd)
